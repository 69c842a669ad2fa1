//! USB fingerprint reader drivers talking raw USB through [`UsbTransport`].
//!
//! Each driver is tested against recorded traffic of the real device through
//! [`replay::ReplayTransport`].
#![warn(missing_docs)]

pub mod driver;
pub mod egis0570;
pub mod nb1010;
pub mod provider;
pub mod recording;
pub mod replay;
pub mod transport;
pub mod udev;
pub mod umockdev;
pub mod upektc_img;
pub mod uru4000;

pub use transport::{RusbTransport, Setup, UsbError, UsbTransport};
