//! Simulated capture devices.
//!
//! A simulated device is a directory of **real** sample files replayed through the same
//! [`CaptureDevice`] interface as hardware: fingerprint images, camera stills, WAV/FLAC
//! utterances and IMU CSV recordings. It is how the demo, the tests and a technician's dry run
//! work without hardware. It never invents data: each capture decodes one file.
//!
//! Files are replayed in name order, round robin. An operator or a test can choose the next
//! file with [`Presenter::present`] ("this person now puts finger `101_5.tif` on the reader").
//! Faults can be injected ([`SimFault`]) to rehearse unplugged or wedged devices.
#![warn(missing_docs)]

mod decode;
mod device;

pub use decode::{decode_bytes, decode_file, DecodeError, SUPPORTED_EXTENSIONS};
pub use device::{Presenter, SimFault, SimProvider, SimSpec};
