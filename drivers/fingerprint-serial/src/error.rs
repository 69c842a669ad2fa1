//! Errors of module calls: which port, what was being done, what went wrong, what to do.

use std::time::Duration;

use apg_device::{CaptureError, FaultKind};

use crate::protocol::{Confirmation, FrameError};

/// What went wrong in a module call.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The module sent nothing within the response timeout.
    #[error("the module did not answer within {waited:?}: check power, wiring (module TX to host RX), baud rate and module address")]
    Timeout {
        /// How long the driver waited for the packet.
        waited: Duration,
    },
    /// The bytes received could not be framed into a valid packet.
    #[error("{0}")]
    Frame(FrameError),
    /// The module went silent after sending its power-on byte 0x55: it restarted.
    #[error("the module restarted (it sent its power-on byte 0x55) and stopped answering; check its power supply. The next call resynchronises")]
    Reset,
    /// The port reported end of stream or an I/O error that means the line is gone.
    #[error("the serial line closed: the USB-serial bridge was unplugged or the emulator stopped")]
    Closed,
    /// Reading or writing the port failed.
    #[error("serial I/O failed: {0}")]
    Io(#[source] std::io::Error),
    /// The module refused the configured password (confirmation code 0x13).
    #[error("the module refused the configured password (code 0x13): set `password` in this module's entry of the agent configuration to the module's password")]
    WrongPassword,
    /// The module answered with a confirmation code other than success.
    #[error("the module refused: {0}")]
    Rejected(Confirmation),
    /// The module sent a well-formed packet that the protocol does not allow here.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// The caller cancelled.
    #[error("cancelled")]
    Cancelled,
    /// No finger was placed within the capture timeout.
    #[error("no finger within {waited:?}")]
    NoFinger {
        /// How long the driver polled.
        waited: Duration,
    },
    /// The caller asked for something the module cannot do.
    #[error("{0}")]
    InvalidArgument(String),
}

/// An error of one module call, naming the port and what was being done.
#[derive(Debug, thiserror::Error)]
#[error("serial fingerprint module on {port}: {during}: {kind}")]
pub struct ModuleError {
    /// Port path.
    pub port: String,
    /// What the driver was doing, e.g. `uploading the image`.
    pub during: String,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl ModuleError {
    /// The confirmation code, when the module refused.
    pub fn confirmation(&self) -> Option<Confirmation> {
        match self.kind {
            ErrorKind::Rejected(c) => Some(c),
            ErrorKind::WrongPassword => Some(Confirmation::WrongPassword),
            _ => None,
        }
    }

    /// True when the error leaves the byte stream in an unknown state, so that the next call
    /// must drain the line and handshake again.
    pub fn desynchronises(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Timeout { .. }
                | ErrorKind::Frame(_)
                | ErrorKind::Reset
                | ErrorKind::Closed
                | ErrorKind::Io(_)
                | ErrorKind::Unexpected(_)
        )
    }

    /// The agent's error for device `id`.
    pub fn into_capture(self, id: &str) -> CaptureError {
        let kind = match &self.kind {
            ErrorKind::Cancelled => {
                return CaptureError::Cancelled { device: id.into() };
            }
            ErrorKind::NoFinger { waited } => {
                return CaptureError::Timeout {
                    device: id.into(),
                    waited: *waited,
                };
            }
            ErrorKind::Closed => FaultKind::Disconnected,
            ErrorKind::Frame(_) => FaultKind::InvalidData,
            ErrorKind::Rejected(_) | ErrorKind::Unexpected(_) | ErrorKind::WrongPassword => {
                FaultKind::Protocol
            }
            ErrorKind::InvalidArgument(_) => FaultKind::Unsupported,
            ErrorKind::Timeout { .. } | ErrorKind::Reset | ErrorKind::Io(_) => FaultKind::Io,
        };
        CaptureError::fault(id, kind, self.to_string())
    }
}
