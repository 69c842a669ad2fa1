//! What every USB reader driver offers the provider: one capture, and release.

use std::time::Duration;

use apg_device::{CancelToken, CaptureError, FingerprintImage};

use crate::transport::UsbTransport;

/// A driver bound to one claimed reader.
pub trait ReaderDriver: Send {
    /// Runs one full capture (wake, wait for a finger, image, wait for removal, power down)
    /// within `timeout`, honouring `cancel`.
    fn capture_image(
        &mut self,
        cancel: &CancelToken,
        timeout: Duration,
    ) -> Result<FingerprintImage, CaptureError>;

    /// Powers the sensor down where the protocol allows it and releases the interface.
    fn release(&mut self) -> Result<(), CaptureError>;
}

/// Binds a driver to a claimed transport; `id` names the device in errors.
pub type StartDriver = fn(id: &str, usb: Box<dyn UsbTransport>) -> Box<dyn ReaderDriver>;
