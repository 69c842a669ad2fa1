//! The USB transport seen by the drivers: four synchronous transfer kinds and clean errors.

use std::time::Duration;

use apg_device::{CaptureError, FaultKind};

/// Why a transfer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsbError {
    /// The endpoint answered with a STALL handshake.
    #[error("endpoint {0:#04x} stalled")]
    Stall(u8),
    /// Nothing arrived before the timeout.
    #[error("endpoint {0:#04x} timed out")]
    Timeout(u8),
    /// The device sent more data than requested (babble / overflow).
    #[error("endpoint {0:#04x} overflowed (babble)")]
    Babble(u8),
    /// The device is gone.
    #[error("device disconnected")]
    Disconnected,
    /// A replayed transfer differs from the recording.
    #[error("transfer differs from the recording: {0}")]
    Mismatch(String),
    /// Any other libusb failure.
    #[error("{0}")]
    Other(String),
}

impl UsbError {
    /// Converts into the agent's error vocabulary for device `id`.
    pub fn into_capture(self, id: &str, during: &str) -> CaptureError {
        let kind = match self {
            Self::Disconnected => FaultKind::Disconnected,
            Self::Timeout(_) => FaultKind::Io,
            Self::Mismatch(_) => FaultKind::Protocol,
            _ => FaultKind::Io,
        };
        let hint = match self {
            Self::Disconnected => "; plug the reader back in, it is reopened automatically",
            Self::Stall(_) | Self::Babble(_) => "; the reader was reset, retry the capture",
            _ => "",
        };
        CaptureError::fault(id, kind, format!("{during}: {self}{hint}"))
    }
}

/// A vendor control request's setup packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// bmRequestType (bit 7 set for device-to-host).
    pub request_type: u8,
    /// bRequest.
    pub request: u8,
    /// wValue.
    pub value: u16,
    /// wIndex.
    pub index: u16,
}

/// Synchronous access to one claimed USB device.
pub trait UsbTransport: Send {
    /// Control transfer device-to-host, returning at most `len` bytes.
    fn control_in(
        &mut self,
        setup: Setup,
        len: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, UsbError>;
    /// Control transfer host-to-device.
    fn control_out(&mut self, setup: Setup, data: &[u8], timeout: Duration)
        -> Result<(), UsbError>;
    /// Bulk IN on `endpoint` of at most `len` bytes.
    fn bulk_in(&mut self, endpoint: u8, len: usize, timeout: Duration)
        -> Result<Vec<u8>, UsbError>;
    /// Bulk OUT on `endpoint`.
    fn bulk_out(&mut self, endpoint: u8, data: &[u8], timeout: Duration) -> Result<(), UsbError>;
    /// Interrupt IN on `endpoint` of at most `len` bytes.
    fn interrupt_in(
        &mut self,
        endpoint: u8,
        len: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, UsbError>;
    /// Releases the interface; later transfers fail with [`UsbError::Disconnected`].
    fn release(&mut self) -> Result<(), UsbError>;
    /// A host nonce to use instead of a random one. Hardware returns `None`; a replay returns
    /// the nonce of the recorded session so that the driver sends the same bytes again.
    fn replay_nonce(&self) -> Option<u32> {
        None
    }
}

fn map_rusb(e: rusb::Error, ep: u8) -> UsbError {
    match e {
        rusb::Error::Pipe => UsbError::Stall(ep),
        rusb::Error::Timeout => UsbError::Timeout(ep),
        rusb::Error::Overflow => UsbError::Babble(ep),
        rusb::Error::NoDevice => UsbError::Disconnected,
        other => UsbError::Other(other.to_string()),
    }
}

/// A real device opened through libusb.
pub struct RusbTransport {
    handle: Option<rusb::DeviceHandle<rusb::Context>>,
    interface: u8,
}

impl RusbTransport {
    /// Opens `device`, detaches a kernel driver if needed and claims `interface`.
    pub fn open(device: &rusb::Device<rusb::Context>, interface: u8) -> Result<Self, UsbError> {
        let handle = device.open().map_err(|e| match e {
            rusb::Error::Access => UsbError::Other(
                "permission denied opening the reader: install udev/60-apg-biometric.rules and add the service user to group apg-biometric".into(),
            ),
            other => map_rusb(other, 0),
        })?;
        let _ = handle.set_auto_detach_kernel_driver(true);
        handle
            .claim_interface(interface)
            .map_err(|e| map_rusb(e, 0))?;
        Ok(Self {
            handle: Some(handle),
            interface,
        })
    }

    fn h(&self) -> Result<&rusb::DeviceHandle<rusb::Context>, UsbError> {
        self.handle.as_ref().ok_or(UsbError::Disconnected)
    }
}

impl UsbTransport for RusbTransport {
    fn control_in(&mut self, s: Setup, len: usize, timeout: Duration) -> Result<Vec<u8>, UsbError> {
        let mut buf = vec![0; len];
        let n = self
            .h()?
            .read_control(
                s.request_type,
                s.request,
                s.value,
                s.index,
                &mut buf,
                timeout,
            )
            .map_err(|e| map_rusb(e, 0x80))?;
        buf.truncate(n);
        Ok(buf)
    }
    fn control_out(&mut self, s: Setup, data: &[u8], timeout: Duration) -> Result<(), UsbError> {
        self.h()?
            .write_control(s.request_type, s.request, s.value, s.index, data, timeout)
            .map_err(|e| map_rusb(e, 0))?;
        Ok(())
    }
    fn bulk_in(&mut self, ep: u8, len: usize, timeout: Duration) -> Result<Vec<u8>, UsbError> {
        let mut buf = vec![0; len];
        let n = self
            .h()?
            .read_bulk(ep, &mut buf, timeout)
            .map_err(|e| map_rusb(e, ep))?;
        buf.truncate(n);
        Ok(buf)
    }
    fn bulk_out(&mut self, ep: u8, data: &[u8], timeout: Duration) -> Result<(), UsbError> {
        self.h()?
            .write_bulk(ep, data, timeout)
            .map_err(|e| map_rusb(e, ep))?;
        Ok(())
    }
    fn interrupt_in(&mut self, ep: u8, len: usize, timeout: Duration) -> Result<Vec<u8>, UsbError> {
        let mut buf = vec![0; len];
        let n = self
            .h()?
            .read_interrupt(ep, &mut buf, timeout)
            .map_err(|e| map_rusb(e, ep))?;
        buf.truncate(n);
        Ok(buf)
    }
    fn release(&mut self) -> Result<(), UsbError> {
        if let Some(h) = self.handle.take() {
            h.release_interface(self.interface)
                .map_err(|e| map_rusb(e, 0))?;
        }
        Ok(())
    }
}

impl Drop for RusbTransport {
    fn drop(&mut self) {
        let _ = self.release();
    }
}
