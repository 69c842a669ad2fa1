use std::time::Duration;

/// What went wrong with a capture.
///
/// Every variant names the device id so that a message reaching an operator says which reader
/// to look at. Messages never contain sample bytes.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The person can fix this by presenting again; the device itself is fine.
    #[error("device {device}: {reason}; please try again")]
    Retry {
        /// Device id.
        device: String,
        /// What the person should do differently.
        reason: RetryReason,
    },
    /// No presentation arrived in time.
    #[error("device {device}: no presentation within {waited:?}")]
    Timeout {
        /// Device id.
        device: String,
        /// How long the driver waited.
        waited: Duration,
    },
    /// The capture was cancelled by the agent (shutdown, request abort).
    #[error("device {device}: capture cancelled")]
    Cancelled {
        /// Device id.
        device: String,
    },
    /// The device, its transport or its data failed.
    #[error("device {device}: {kind}: {detail}")]
    Fault {
        /// Device id.
        device: String,
        /// Class of the fault, for metrics and for deciding whether to reopen.
        kind: FaultKind,
        /// Human explanation, including what to do where known.
        detail: String,
    },
}

impl CaptureError {
    /// Builds a [`CaptureError::Fault`].
    pub fn fault(device: impl Into<String>, kind: FaultKind, detail: impl Into<String>) -> Self {
        Self::Fault {
            device: device.into(),
            kind,
            detail: detail.into(),
        }
    }

    /// The device id the error is about.
    pub fn device(&self) -> &str {
        match self {
            Self::Retry { device, .. }
            | Self::Timeout { device, .. }
            | Self::Cancelled { device }
            | Self::Fault { device, .. } => device,
        }
    }

    /// True when the device is gone and must be reopened after it comes back.
    pub fn is_disconnect(&self) -> bool {
        matches!(
            self,
            Self::Fault {
                kind: FaultKind::Disconnected,
                ..
            }
        )
    }

    /// Short machine-readable label (`retry`, `timeout`, `cancelled`, or the fault kind).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Retry { .. } => "retry",
            Self::Timeout { .. } => "timeout",
            Self::Cancelled { .. } => "cancelled",
            Self::Fault { kind, .. } => kind.label(),
        }
    }
}

/// Classes of device faults, in the spirit of nusb's error kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The device was unplugged or reset.
    Disconnected,
    /// Another process holds the device.
    Busy,
    /// The service account may not open the device (see the udev rules).
    PermissionDenied,
    /// No device with that id exists.
    NotFound,
    /// The device answered something the protocol does not allow.
    Protocol,
    /// The device sent data that cannot be turned into a sample (corrupt frame, bad checksum).
    InvalidData,
    /// The transport failed (stall, babble, overflow, I/O error).
    Io,
    /// The device or driver does not support the requested operation.
    Unsupported,
}

impl FaultKind {
    /// Short machine-readable label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Disconnected => "disconnected",
            Self::Busy => "busy",
            Self::PermissionDenied => "permission_denied",
            Self::NotFound => "not_found",
            Self::Protocol => "protocol",
            Self::InvalidData => "invalid_data",
            Self::Io => "io",
            Self::Unsupported => "unsupported",
        }
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label().replace('_', " "))
    }
}

/// Things the person can fix at the reader (libfprint's "retry" outcomes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryReason {
    /// The finger was lifted too early or the swipe was too short.
    TooShort,
    /// The finger was not centred on the sensor.
    CenterFinger,
    /// The finger must be lifted and placed again.
    RemoveFinger,
    /// Swipe too fast or too slow, or the face moved too much.
    BadMotion,
}

impl std::fmt::Display for RetryReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TooShort => "presentation too short, keep the finger on the sensor longer",
            Self::CenterFinger => "centre the finger on the sensor",
            Self::RemoveFinger => "lift the finger and place it again",
            Self::BadMotion => "move more steadily",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_message_names_the_device() {
        let errors = [
            CaptureError::Retry {
                device: "usb-1-2".into(),
                reason: RetryReason::CenterFinger,
            },
            CaptureError::Timeout {
                device: "usb-1-2".into(),
                waited: Duration::from_secs(5),
            },
            CaptureError::Cancelled {
                device: "usb-1-2".into(),
            },
            CaptureError::fault("usb-1-2", FaultKind::Disconnected, "unplugged"),
        ];
        for e in errors {
            assert!(e.to_string().contains("usb-1-2"), "{e}");
            assert_eq!(e.device(), "usb-1-2");
        }
    }

    #[test]
    fn only_disconnect_faults_ask_for_reopen() {
        assert!(CaptureError::fault("d", FaultKind::Disconnected, "").is_disconnect());
        assert!(!CaptureError::fault("d", FaultKind::Io, "").is_disconnect());
    }
}
