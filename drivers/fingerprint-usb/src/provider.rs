//! The driver table, the `CaptureDevice` wrapper and a hotplug-aware provider.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apg_device::{
    CancelToken, Capabilities, CaptureDevice, CaptureError, DeviceInfo, DeviceKind, DeviceProvider,
    DeviceState, FaultKind, HotplugEvent, Sample, Transport,
};

use crate::driver::{ReaderDriver, StartDriver};
use crate::transport::UsbTransport;

/// One supported reader model.
#[derive(Clone, Copy)]
pub struct DriverEntry {
    /// Driver name.
    pub driver: &'static str,
    /// USB vendor id.
    pub vendor_id: u16,
    /// USB product id.
    pub product_id: u16,
    /// Marketing name.
    pub model: &'static str,
    /// Interface to claim.
    pub interface: u8,
    /// Binds the driver to a claimed transport.
    pub start: StartDriver,
}

impl std::fmt::Debug for DriverEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverEntry")
            .field("driver", &self.driver)
            .field("vendor_id", &format_args!("{:04x}", self.vendor_id))
            .field("product_id", &format_args!("{:04x}", self.product_id))
            .field("model", &self.model)
            .field("interface", &self.interface)
            .finish()
    }
}

/// Every USB reader this crate drives. The udev rules are generated from this table.
pub const DRIVERS: &[DriverEntry] = &[
    DriverEntry {
        driver: "uru4000",
        vendor_id: crate::uru4000::URU4500.vendor_id,
        product_id: crate::uru4000::URU4500.product_id,
        model: crate::uru4000::URU4500.model,
        interface: 0,
        start: crate::uru4000::start,
    },
    DriverEntry {
        driver: "uru4000",
        vendor_id: crate::uru4000::MSV2.vendor_id,
        product_id: crate::uru4000::MSV2.product_id,
        model: crate::uru4000::MSV2.model,
        interface: 0,
        start: crate::uru4000::start_msv2,
    },
    DriverEntry {
        driver: "egis0570",
        vendor_id: 0x1c7a,
        product_id: 0x0570,
        model: "EgisTec (LighTuning) ES603 Touch Fingerprint Sensor",
        interface: 0,
        start: crate::egis0570::start,
    },
    DriverEntry {
        driver: "upektc_img",
        vendor_id: 0x147e,
        product_id: 0x2016,
        model: "UPEK TouchChip / Eikon Touch fingerprint coprocessor",
        interface: 0,
        start: crate::upektc_img::start,
    },
    DriverEntry {
        driver: "nb1010",
        vendor_id: 0x298d,
        product_id: 0x1010,
        model: "NEXT Biometrics NB-1010-U",
        interface: 0,
        start: crate::nb1010::start,
    },
];

/// Looks up the table entry of a vendor/product pair.
pub fn lookup(vendor_id: u16, product_id: u16) -> Option<&'static DriverEntry> {
    DRIVERS
        .iter()
        .find(|d| d.vendor_id == vendor_id && d.product_id == product_id)
}

/// Where a USB device sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbLocation {
    /// Bus number.
    pub bus: u8,
    /// Port path, e.g. `1.4`.
    pub port_path: String,
    /// Vendor id.
    pub vendor_id: u16,
    /// Product id.
    pub product_id: u16,
}

/// A raw plug or unplug notification, as libusb's hotplug callback (or a test) delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsbEvent {
    /// A device appeared.
    Plugged(UsbLocation),
    /// A device went away.
    Unplugged(UsbLocation),
}

fn device_id(e: &DriverEntry, l: &UsbLocation) -> String {
    format!("{}-{}-{}", e.driver, l.bus, l.port_path)
}

fn info_for(e: &DriverEntry, l: &UsbLocation) -> DeviceInfo {
    DeviceInfo {
        id: device_id(e, l),
        driver: e.driver.to_string(),
        kind: DeviceKind::FingerprintReader,
        model: e.model.to_string(),
        transport: Transport::Usb {
            bus: l.bus,
            port_path: l.port_path.clone(),
            vendor_id: l.vendor_id,
            product_id: l.product_id,
        },
        state: DeviceState::Ready,
        capabilities: Capabilities {
            image: true,
            ..Capabilities::default()
        },
    }
}

/// Opens a transport to the device at a location (rusb for hardware, replay in tests).
pub type Opener =
    dyn Fn(&UsbLocation, &DriverEntry) -> Result<Box<dyn UsbTransport>, CaptureError> + Send + Sync;

/// Provider of USB fingerprint readers whose device list follows plug events.
pub struct UsbProvider {
    present: Arc<Mutex<BTreeMap<String, (DriverEntry, UsbLocation)>>>,
    opener: Arc<Opener>,
    sinks: Arc<Mutex<Vec<Sender<HotplugEvent>>>>,
}

impl UsbProvider {
    /// A provider with no devices yet, opening devices through `opener`.
    pub fn new(opener: Arc<Opener>) -> Self {
        Self {
            present: Arc::default(),
            opener,
            sinks: Arc::default(),
        }
    }

    /// Applies one plug event: supported devices are added or removed and watchers told.
    pub fn handle(&self, ev: UsbEvent) {
        let (loc, arrived) = match ev {
            UsbEvent::Plugged(l) => (l, true),
            UsbEvent::Unplugged(l) => (l, false),
        };
        let Some(entry) = lookup(loc.vendor_id, loc.product_id) else {
            return;
        };
        let id = device_id(entry, &loc);
        let msg = {
            let mut p = self.present.lock().unwrap_or_else(|e| e.into_inner());
            if arrived {
                let info = info_for(entry, &loc);
                p.insert(id, (*entry, loc));
                HotplugEvent::Arrived(info)
            } else {
                if p.remove(&id).is_none() {
                    return;
                }
                HotplugEvent::Left { id }
            }
        };
        self.sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| s.send(msg.clone()).is_ok());
    }

    /// Runs a thread that applies every event from `source` (the libusb callback thread or a
    /// fake source in tests) until the source closes.
    pub fn follow(self: &Arc<Self>, source: Receiver<UsbEvent>) -> std::thread::JoinHandle<()> {
        let me = Arc::clone(self);
        std::thread::spawn(move || {
            for ev in source {
                me.handle(ev);
            }
        })
    }
}

impl DeviceProvider for UsbProvider {
    fn name(&self) -> &'static str {
        "usb-fingerprint"
    }

    fn list(&self) -> Vec<DeviceInfo> {
        let p = self.present.lock().unwrap_or_else(|e| e.into_inner());
        p.values().map(|(e, l)| info_for(e, l)).collect()
    }

    fn open(&self, id: &str) -> Result<Box<dyn CaptureDevice>, CaptureError> {
        let (entry, loc) = {
            let p = self.present.lock().unwrap_or_else(|e| e.into_inner());
            p.get(id).cloned().ok_or_else(|| {
                CaptureError::fault(
                    id,
                    FaultKind::NotFound,
                    "no such USB reader is plugged in; run `apg-biometric devices`",
                )
            })?
        };
        let usb = (self.opener)(&loc, &entry)?;
        Ok(Box::new(UsbReader {
            info: info_for(&entry, &loc),
            driver: (entry.start)(id, usb),
        }))
    }

    /// Registers `sink` and immediately reports the devices already present, so that a device
    /// plugged in between [`DeviceProvider::list`] and this call is not missed.
    fn watch(&self, sink: Sender<HotplugEvent>) -> Result<(), CaptureError> {
        let present = self.present.lock().unwrap_or_else(|e| e.into_inner());
        for (e, l) in present.values() {
            let _ = sink.send(HotplugEvent::Arrived(info_for(e, l)));
        }
        self.sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sink);
        Ok(())
    }
}

/// An opened reader.
pub struct UsbReader {
    info: DeviceInfo,
    driver: Box<dyn ReaderDriver>,
}

impl CaptureDevice for UsbReader {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn capture(&mut self, cancel: &CancelToken, timeout: Duration) -> Result<Sample, CaptureError> {
        self.driver
            .capture_image(cancel, timeout)
            .map(Sample::Fingerprint)
    }

    fn close(&mut self) -> Result<(), CaptureError> {
        self.driver.release()
    }
}

impl UsbTransport for Box<dyn UsbTransport> {
    fn control_in(
        &mut self,
        s: crate::Setup,
        len: usize,
        t: Duration,
    ) -> Result<Vec<u8>, crate::UsbError> {
        (**self).control_in(s, len, t)
    }
    fn control_out(
        &mut self,
        s: crate::Setup,
        d: &[u8],
        t: Duration,
    ) -> Result<(), crate::UsbError> {
        (**self).control_out(s, d, t)
    }
    fn bulk_in(&mut self, ep: u8, len: usize, t: Duration) -> Result<Vec<u8>, crate::UsbError> {
        (**self).bulk_in(ep, len, t)
    }
    fn bulk_out(&mut self, ep: u8, d: &[u8], t: Duration) -> Result<(), crate::UsbError> {
        (**self).bulk_out(ep, d, t)
    }
    fn interrupt_in(
        &mut self,
        ep: u8,
        len: usize,
        t: Duration,
    ) -> Result<Vec<u8>, crate::UsbError> {
        (**self).interrupt_in(ep, len, t)
    }
    fn release(&mut self) -> Result<(), crate::UsbError> {
        (**self).release()
    }
    fn replay_nonce(&self) -> Option<u32> {
        (**self).replay_nonce()
    }
}

/// Location of a libusb device.
pub fn location_of<C: rusb::UsbContext>(d: &rusb::Device<C>) -> Option<UsbLocation> {
    let desc = d.device_descriptor().ok()?;
    let ports = d.port_numbers().ok()?;
    let port_path = ports
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(".");
    Some(UsbLocation {
        bus: d.bus_number(),
        port_path,
        vendor_id: desc.vendor_id(),
        product_id: desc.product_id(),
    })
}

struct Forward(Sender<UsbEvent>);

impl<C: rusb::UsbContext> rusb::Hotplug<C> for Forward {
    fn device_arrived(&mut self, d: rusb::Device<C>) {
        if let Some(l) = location_of(&d) {
            let _ = self.0.send(UsbEvent::Plugged(l));
        }
    }
    fn device_left(&mut self, d: rusb::Device<C>) {
        if let Some(l) = location_of(&d) {
            let _ = self.0.send(UsbEvent::Unplugged(l));
        }
    }
}

/// Starts libusb hotplug delivery: registers a callback (which also reports devices already
/// present) and runs the libusb event loop on its own thread. Events arrive on the receiver.
pub fn libusb_hotplug(ctx: rusb::Context) -> Result<Receiver<UsbEvent>, CaptureError> {
    if !rusb::has_hotplug() {
        return Err(CaptureError::fault(
            "usb",
            FaultKind::Unsupported,
            "this libusb has no hotplug support",
        ));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let reg: rusb::Registration<rusb::Context> = rusb::HotplugBuilder::new()
        .enumerate(true)
        .register(&ctx, Box::new(Forward(tx)))
        .map_err(|e| {
            CaptureError::fault(
                "usb",
                FaultKind::Io,
                format!("registering the libusb hotplug callback: {e}"),
            )
        })?;
    std::thread::spawn(move || {
        let _keep = reg;
        loop {
            if rusb::UsbContext::handle_events(&ctx, Some(Duration::from_secs(1))).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

/// Opener for real hardware: finds the device at the location and claims it through libusb.
pub fn rusb_opener(ctx: rusb::Context) -> Arc<Opener> {
    Arc::new(move |loc: &UsbLocation, entry: &DriverEntry| {
        let id = device_id(entry, loc);
        let list = rusb::UsbContext::devices(&ctx).map_err(|e| {
            CaptureError::fault(&id, FaultKind::Io, format!("listing USB devices: {e}"))
        })?;
        let dev = list
            .iter()
            .find(|d| location_of(d).as_ref() == Some(loc))
            .ok_or_else(|| {
                CaptureError::fault(
                    &id,
                    FaultKind::Disconnected,
                    "the reader is no longer plugged in",
                )
            })?;
        let t = crate::transport::RusbTransport::open(&dev, entry.interface)
            .map_err(|e| e.into_capture(&id, "opening"))?;
        Ok(Box::new(t) as Box<dyn UsbTransport>)
    })
}
