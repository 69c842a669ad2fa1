//! Serial fingerprint modules of the ZhianTec/Synochip family (R30x, R307, R503, AS608,
//! ZFM-20): packet codec, module driver, `CaptureDevice`/`DeviceProvider` for configured
//! ports, and an emulator that speaks the protocol over a pseudo-terminal.
//!
//! See PROTOCOL.md in this crate for the protocol and for running the emulator.
#![warn(missing_docs)]

pub mod device;
pub mod emulator;
pub mod error;
pub mod image;
pub mod module;
pub mod port;
pub mod protocol;

pub use device::{SerialModuleConfig, SerialProvider, SerialReader};
pub use error::{ErrorKind, ModuleError};
pub use module::{LedColor, LedMode, ModuleSettings, SearchHit, SystemParameters, ZhiantecModule};
pub use port::{Port, SerialLine};
