//! The biometric modalities the agent knows about.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A biometric modality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// Fingerprint images.
    Fingerprint,
    /// Face images.
    Face,
    /// Iris images.
    Iris,
    /// Palm images.
    Palm,
    /// Speaker recognition.
    Voice,
    /// Gait from foot-worn IMUs.
    Gait,
}

impl Modality {
    /// Every modality, in configuration order.
    pub const ALL: [Modality; 6] = [
        Self::Fingerprint,
        Self::Face,
        Self::Iris,
        Self::Palm,
        Self::Voice,
        Self::Gait,
    ];

    /// Lower-case name used in config keys, URLs, metrics and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fingerprint => "fingerprint",
            Self::Face => "face",
            Self::Iris => "iris",
            Self::Palm => "palm",
            Self::Voice => "voice",
            Self::Gait => "gait",
        }
    }

    /// The device family that captures this modality.
    pub fn device_kind(self) -> apg_device::DeviceKind {
        use apg_device::DeviceKind;
        match self {
            Self::Fingerprint => DeviceKind::FingerprintReader,
            Self::Face | Self::Iris | Self::Palm => DeviceKind::Camera,
            Self::Voice => DeviceKind::Microphone,
            Self::Gait => DeviceKind::Imu,
        }
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Modality {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!("unknown modality {s:?}; use fingerprint, face, iris, palm, voice or gait")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Modality::ALL {
            assert_eq!(m.as_str().parse::<Modality>().unwrap(), m);
        }
        assert!("retina".parse::<Modality>().is_err());
    }
}
