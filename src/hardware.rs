//! Real capture hardware: the USB fingerprint readers of `apg-fp-usb`, followed through libusb
//! hotplug so that readers plugged in or out at run time are added and removed, the serial
//! fingerprint modules of `apg-fp-serial` listed in `devices.serial`, UVC cameras (followed
//! by re-enumeration) and the file and RTSP cameras listed in `devices.streams`.

use std::sync::Arc;

use apg_camera::uvc::{UvcProvider, Wanted};
use apg_camera::StreamProvider;
use apg_device::DeviceProvider;
use apg_fp_serial::SerialProvider;
use apg_fp_usb::provider::{libusb_hotplug, rusb_opener, UsbProvider};

use crate::config::Devices;

/// Providers of the real capture hardware: USB readers found on this machine and the
/// configured serial modules. Configuration validation has already refused duplicate ids.
pub fn providers(devices: &Devices) -> Vec<Arc<dyn DeviceProvider>> {
    let mut providers = usb_providers();
    if !devices.serial.is_empty() {
        match SerialProvider::new(devices.serial.clone()) {
            Ok(p) => providers.push(Arc::new(p)),
            Err(e) => {
                tracing::error!(error = %e, "Serial fingerprint modules are disabled: fix devices.serial.")
            }
        }
    }
    if devices.uvc.enabled {
        let uvc = &devices.uvc;
        let wanted = Wanted {
            width: uvc.width,
            height: uvc.height,
            fps: uvc.fps,
            infrared: uvc.prefer_infrared,
        };
        providers.push(Arc::new(UvcProvider::with_dev_dir(&uvc.device_dir, wanted)));
    }
    if !devices.streams.is_empty() {
        let specs = devices.streams.iter().map(|s| s.spec()).collect();
        providers.push(Arc::new(StreamProvider::new(specs)));
    }
    providers
}

/// The USB reader provider. A machine without USB access (no libusb context, no hotplug
/// support) gets none, with a warning saying why.
fn usb_providers() -> Vec<Arc<dyn DeviceProvider>> {
    let ctx = match rusb::Context::new() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "USB is not available; USB fingerprint readers are disabled.");
            return Vec::new();
        }
    };
    let provider = Arc::new(UsbProvider::new(rusb_opener(ctx.clone())));
    match libusb_hotplug(ctx) {
        Ok(events) => {
            // The follower thread lives as long as the libusb event thread.
            let _follower = provider.follow(events);
        }
        Err(e) => {
            tracing::warn!(error = %e, "USB hotplug is not available; USB fingerprint readers are disabled.")
        }
    }
    vec![provider as Arc<dyn DeviceProvider>]
}
