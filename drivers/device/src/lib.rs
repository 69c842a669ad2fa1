//! Shared vocabulary of the capture drivers.
//!
//! Every driver crate in `drivers/` produces [`Sample`]s through the [`CaptureDevice`] trait and
//! lists its hardware through a [`DeviceProvider`]. Drivers know their hardware and nothing else:
//! no engines, no storage, no network. The agent core wires providers to engines.
//!
//! Errors follow libfprint's split: a [`CaptureError::Retry`] is something the person in front of
//! the reader can fix (centre the finger, press longer); every other variant is a fault of the
//! device, its transport or its data.
#![warn(missing_docs)]

mod cancel;
mod error;
mod info;
mod sample;

pub use cancel::CancelToken;
pub use error::{CaptureError, FaultKind, RetryReason};
pub use info::{Capabilities, DeviceInfo, DeviceKind, DeviceState, HotplugEvent, Transport};
pub use sample::{
    AudioChunk, FingerprintImage, ImuReading, ImuRecording, PixelFormat, Sample, SensorLiveness,
    VideoFrame,
};

use std::time::Duration;

/// One opened capture device.
///
/// Calls block: the agent runs each device on its own blocking thread. A capture must return
/// within `timeout` (with [`CaptureError::Timeout`]) and must poll `cancel` often enough to stop
/// within a few hundred milliseconds of it being cancelled, leaving the device powered down and
/// ready for the next capture.
pub trait CaptureDevice: Send {
    /// Static description of the device, as listed by its provider.
    fn info(&self) -> &DeviceInfo;

    /// Waits for a presentation (finger, face, utterance, walk) and returns one sample.
    fn capture(&mut self, cancel: &CancelToken, timeout: Duration) -> Result<Sample, CaptureError>;

    /// Powers the device down and releases it. Called before drop on clean shutdown; drivers
    /// must also release on drop, so this only exists to report errors from the release.
    fn close(&mut self) -> Result<(), CaptureError> {
        Ok(())
    }
}

/// A source of devices of one driver family: lists what is attached and opens it.
///
/// Enumeration is injectable so that tests and the simulated devices list their own devices
/// through the same interface as real hardware.
pub trait DeviceProvider: Send + Sync {
    /// Short stable name of the driver family, e.g. `uru4000` or `simulated`.
    fn name(&self) -> &'static str;

    /// Lists the devices present now. A device that exists but cannot be opened (permissions,
    /// busy) is listed with that state, never hidden.
    fn list(&self) -> Vec<DeviceInfo>;

    /// Opens the device with the given id (as listed by [`DeviceProvider::list`]).
    fn open(&self, id: &str) -> Result<Box<dyn CaptureDevice>, CaptureError>;

    /// Starts watching for plug and unplug events, delivered to `sink`. Providers without
    /// hotplug (simulated devices, serial ports) keep the default, which reports nothing.
    fn watch(&self, sink: std::sync::mpsc::Sender<HotplugEvent>) -> Result<(), CaptureError> {
        let _ = sink;
        Ok(())
    }
}
