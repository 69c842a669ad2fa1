use serde::{Deserialize, Serialize};

/// The family of a capture device, which decides the kind of [`crate::Sample`] it produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// Produces [`crate::FingerprintImage`]s (or, for match-on-chip readers, verdicts).
    FingerprintReader,
    /// Produces [`crate::VideoFrame`]s (face, iris, palm).
    Camera,
    /// Produces [`crate::AudioChunk`]s.
    Microphone,
    /// Produces [`crate::ImuRecording`]s.
    Imu,
}

impl DeviceKind {
    /// Short machine-readable label.
    pub fn label(self) -> &'static str {
        match self {
            Self::FingerprintReader => "fingerprint_reader",
            Self::Camera => "camera",
            Self::Microphone => "microphone",
            Self::Imu => "imu",
        }
    }
}

/// How the device is attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Transport {
    /// USB device at a bus and port path, with its vendor and product id.
    Usb {
        /// Bus number.
        bus: u8,
        /// Port path, e.g. `1.4`.
        port_path: String,
        /// Vendor id.
        vendor_id: u16,
        /// Product id.
        product_id: u16,
    },
    /// Serial port (a module wired to a UART or a USB-serial bridge).
    Serial {
        /// Device node, e.g. `/dev/ttyUSB0`.
        path: String,
        /// Baud rate.
        baud: u32,
    },
    /// Video4Linux node, video file or network stream.
    Video {
        /// Node path, file path or stream URL (without credentials).
        location: String,
    },
    /// ALSA device.
    Audio {
        /// ALSA device name.
        name: String,
    },
    /// Simulated device replaying files from a directory.
    Simulated {
        /// Directory the samples come from.
        directory: String,
    },
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Usb {
                bus,
                port_path,
                vendor_id,
                product_id,
            } => {
                write!(f, "usb {bus}-{port_path} {vendor_id:04x}:{product_id:04x}")
            }
            Self::Serial { path, baud } => write!(f, "serial {path} @{baud}"),
            Self::Video { location } => write!(f, "video {location}"),
            Self::Audio { name } => write!(f, "audio {name}"),
            Self::Simulated { directory } => write!(f, "simulated {directory}"),
        }
    }
}

/// What the device can do beyond plain capture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Delivers an image the agent's own engine can process.
    pub image: bool,
    /// Swipe sensor: the image is stitched from strips.
    pub swipe: bool,
    /// Stores and matches templates on the device itself.
    pub match_on_chip: bool,
    /// Reports its own liveness verdict with each sample.
    pub sensor_liveness: bool,
    /// Has a controllable LED (ring or backlight).
    pub led: bool,
    /// Near-infrared imaging (IR cameras).
    pub infrared: bool,
}

/// Whether the device can be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// Present and can be opened.
    Ready,
    /// Opened and capturing.
    Busy,
    /// Present, but the service account may not open it (see the udev rules).
    PermissionDenied,
    /// Was present and has been unplugged; comes back when plugged in again.
    Disconnected,
    /// Present but failing (last error in the agent's device list).
    Faulty,
}

impl DeviceState {
    /// Short machine-readable label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Busy => "busy",
            Self::PermissionDenied => "permission_denied",
            Self::Disconnected => "disconnected",
            Self::Faulty => "faulty",
        }
    }
}

/// Description of one device as a provider lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Stable id, unique in the agent, e.g. `uru4000-1-4` or `sim-fingerprint`.
    pub id: String,
    /// Driver name, e.g. `uru4000`.
    pub driver: String,
    /// Device family.
    pub kind: DeviceKind,
    /// Marketing name, e.g. `DigitalPersona U.are.U 4500`.
    pub model: String,
    /// How it is attached.
    pub transport: Transport,
    /// Current state.
    pub state: DeviceState,
    /// What it can do.
    pub capabilities: Capabilities,
}

/// A device appeared or went away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HotplugEvent {
    /// A supported device was plugged in.
    Arrived(DeviceInfo),
    /// The device with this id was unplugged.
    Left {
        /// Id of the device that left.
        id: String,
    },
}
