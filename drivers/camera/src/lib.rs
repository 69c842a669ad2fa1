//! Camera drivers: UVC cameras through nokhwa's V4L2 backend (feature `uvc`), and video
//! files and RTSP streams through an FFmpeg child process.
//!
//! Every camera delivers frames into a one-frame [`slot::Slot`]: a slow pipeline gets the
//! newest frame and older ones are dropped and counted, never queued. A stream that breaks
//! or a camera that is unplugged is reported as [`apg_device::FaultKind::Disconnected`] and
//! reopened in the background; captures succeed again once it is back. See PROTOCOL.md.
#![warn(missing_docs)]

#[cfg(all(feature = "uvc", feature = "emulator"))]
pub mod emulator;
pub mod slot;
pub mod stream;
#[cfg(feature = "uvc")]
pub mod uvc;

pub use slot::Link;
pub use stream::{StreamCamera, StreamProvider, StreamSpec};
