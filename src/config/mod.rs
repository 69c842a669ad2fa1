//! The agent's configuration: one YAML file plus `APG_BIOMETRIC_*` environment overrides.
//!
//! [`load`] reads, overrides, checks and returns a [`Config`]; every problem it finds is
//! reported with its key path, the offending value and what is allowed, all at once, so that a
//! technician fixes the file in one pass.

mod env;
mod load;
mod schema;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::modality::Modality;

pub use load::{load, load_str, ConfigError, Problem};

/// Default location of the configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/apg-biometric/agent.yaml";

/// Deployment profile, chosen with `APG_BIOMETRIC_ENV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Local work on a developer machine: relaxed checks, loud warnings.
    Development,
    /// Automated tests: like development.
    Testing,
    /// A real kiosk or door: every safety check is enforced.
    Production,
}

impl Profile {
    /// Reads `APG_BIOMETRIC_ENV`; production when unset, so a forgotten variable is safe.
    pub fn from_env_value(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim) {
            None | Some("") | Some("production") => Ok(Self::Production),
            Some("development") => Ok(Self::Development),
            Some("testing") => Ok(Self::Testing),
            Some(other) => Err(format!(
                "APG_BIOMETRIC_ENV={other:?} is not a profile; use development, testing or production"
            )),
        }
    }

    /// Short name.
    pub fn label(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Testing => "testing",
            Self::Production => "production",
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[derive(Default)]
pub struct Config {
    /// Identity of this agent within its site.
    pub agent: AgentIdentity,
    /// SQLite store.
    pub storage: Storage,
    /// Master key source.
    pub keys: Keys,
    /// MQTT sync to the hub.
    pub sync: Sync,
    /// Per-modality engine settings.
    pub biometric_engines: Engines,
    /// Authentication and lockout policy.
    pub security: Security,
    /// Worker pool sizing.
    pub performance: Performance,
    /// Log output.
    pub logging: Logging,
    /// Metrics and health.
    pub monitoring: Monitoring,
    /// Local HTTP API.
    pub api: Api,
    /// Capture devices.
    pub devices: Devices,
    /// Profile in effect (from `APG_BIOMETRIC_ENV`, not from the file).
    #[serde(skip)]
    pub profile: Option<Profile>,
}

impl Config {
    /// Profile in effect; production when the config was built without [`load`].
    pub fn profile(&self) -> Profile {
        self.profile.unwrap_or(Profile::Production)
    }

    /// Engine settings of one modality.
    pub fn engine(&self, modality: Modality) -> &EngineCommon {
        let e = &self.biometric_engines;
        match modality {
            Modality::Fingerprint => &e.fingerprint.common,
            Modality::Face => &e.face.common,
            Modality::Iris => &e.iris.common,
            Modality::Palm => &e.palm.common,
            Modality::Voice => &e.voice.common,
            Modality::Gait => &e.gait.common,
        }
    }
}

/// Who this agent is, for events and template distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentIdentity {
    /// Agent id, unique within the site (letters, digits, `-`, `_`).
    pub id: String,
    /// Site id (letters, digits, `-`, `_`).
    pub site: String,
}

impl Default for AgentIdentity {
    fn default() -> Self {
        Self {
            id: "agent-1".into(),
            site: "site-1".into(),
        }
    }
}

/// Where the SQLite store lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Storage {
    /// SQLite database file.
    pub path: PathBuf,
    /// Directory for `backup` files when the operator gives a bare name.
    pub backup_dir: PathBuf,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            path: "/var/lib/apg-biometric/agent.db".into(),
            backup_dir: "/var/lib/apg-biometric/backups".into(),
        }
    }
}

/// Where the master key comes from: a systemd credential when present, else a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Keys {
    /// Key file (32 random bytes, or 64 hex characters); mode 0600 or 0400.
    pub master_key_file: PathBuf,
    /// Name of the systemd credential (`LoadCredential=`) holding the key; used when
    /// `$CREDENTIALS_DIRECTORY` is set and contains it.
    pub credential: String,
}

impl Default for Keys {
    fn default() -> Self {
        Self {
            master_key_file: "/etc/apg-biometric/master.key".into(),
            credential: "master.key".into(),
        }
    }
}

/// MQTT sync to the central hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sync {
    /// Whether the agent connects to a broker at all.
    pub enabled: bool,
    /// `mqtts://host:8883` (or `mqtt://` outside production with `allow_plain`).
    pub broker_url: String,
    /// Allow unencrypted `mqtt://` (refused in production).
    pub allow_plain: bool,
    /// CA bundle (PEM) that signed the broker's certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub client_cert_file: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    pub client_key_file: Option<PathBuf>,
    /// Site key shared by the agents of a site, sealing distributed templates end to end.
    pub site_key_file: Option<PathBuf>,
    /// Outbox depth above which health degrades and the overflow policy applies.
    pub outbox_max_events: u64,
    /// MQTT keep-alive, seconds.
    pub keep_alive: u64,
}

impl Default for Sync {
    fn default() -> Self {
        Self {
            enabled: false,
            broker_url: "mqtts://localhost:8883".into(),
            allow_plain: false,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            site_key_file: None,
            outbox_max_events: 100_000,
            keep_alive: 30,
        }
    }
}

/// Settings every modality shares. (No serde default here: the loader fills missing keys from
/// the modality's own defaults before deserialising.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineCommon {
    /// Whether this modality is offered.
    pub enabled: bool,
    /// Minimum sample quality, 0..1, mapped onto the engine's own quality scale.
    pub quality_threshold: f64,
    /// Seconds one sample's processing may take before the request fails.
    pub processing_timeout: f64,
    /// Run liveness checks (sensor verdicts, challenges) on every sample.
    pub liveness_detection: bool,
    /// Run presentation-attack checks (replay detection, PAD models) on every sample.
    pub anti_spoofing: bool,
    /// Keep templates encrypted at rest. Must stay true in production.
    pub template_encryption: bool,
    /// Accepted captures needed to enroll.
    pub enroll_captures: u32,
    /// Decision threshold on the engine's score; empty means the engine's default for a false
    /// match rate of 1 in 10,000.
    pub match_threshold: Option<f64>,
}

impl EngineCommon {
    fn with(enabled: bool, quality_threshold: f64, processing_timeout: f64) -> Self {
        Self {
            enabled,
            quality_threshold,
            processing_timeout,
            liveness_detection: true,
            anti_spoofing: true,
            template_encryption: true,
            enroll_captures: 3,
            match_threshold: None,
        }
    }
}

/// Fingerprint engine settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FingerprintEngine {
    /// Shared settings.
    #[serde(flatten)]
    pub common: EngineCommon,
}

impl Default for FingerprintEngine {
    fn default() -> Self {
        Self {
            common: EngineCommon::with(true, 0.8, 5.0),
        }
    }
}

/// Face engine settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaceEngine {
    /// Shared settings.
    #[serde(flatten)]
    pub common: EngineCommon,
}

impl Default for FaceEngine {
    fn default() -> Self {
        Self {
            common: EngineCommon::with(false, 0.85, 3.0),
        }
    }
}

/// Iris engine settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IrisEngine {
    /// Shared settings.
    #[serde(flatten)]
    pub common: EngineCommon,
    /// Minimum accepted iris segmentation confidence, 0..1.
    pub segmentation_accuracy: f64,
}

impl Default for IrisEngine {
    fn default() -> Self {
        Self {
            common: EngineCommon::with(false, 0.85, 4.0),
            segmentation_accuracy: 0.9,
        }
    }
}

/// Palm engine settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PalmEngine {
    /// Shared settings.
    #[serde(flatten)]
    pub common: EngineCommon,
    /// Minimum hand detection confidence, 0..1.
    pub hand_detection_confidence: f64,
}

impl Default for PalmEngine {
    fn default() -> Self {
        Self {
            common: EngineCommon::with(false, 0.8, 5.0),
            hand_detection_confidence: 0.9,
        }
    }
}

/// Voice engine settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VoiceEngine {
    /// Shared settings.
    #[serde(flatten)]
    pub common: EngineCommon,
    /// Apply noise reduction before embedding.
    pub noise_reduction: bool,
}

impl Default for VoiceEngine {
    fn default() -> Self {
        Self {
            common: EngineCommon::with(false, 0.75, 10.0),
            noise_reduction: true,
        }
    }
}

/// Gait engine settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GaitEngine {
    /// Shared settings.
    #[serde(flatten)]
    pub common: EngineCommon,
    /// Seconds of walking analysed per sample.
    pub analysis_window: f64,
}

impl Default for GaitEngine {
    fn default() -> Self {
        Self {
            common: EngineCommon::with(false, 0.7, 20.0),
            analysis_window: 15.0,
        }
    }
}

/// Per-modality engine settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Engines {
    /// Fingerprint.
    pub fingerprint: FingerprintEngine,
    /// Face.
    pub face: FaceEngine,
    /// Iris.
    pub iris: IrisEngine,
    /// Palm.
    pub palm: PalmEngine,
    /// Voice.
    pub voice: VoiceEngine,
    /// Gait.
    pub gait: GaitEngine,
}

/// Authentication, key and lockout policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Security {
    /// Template cipher; only `AES-256-GCM` is supported.
    pub encryption_algorithm: String,
    /// Days after which the data key is rotated automatically (0 disables).
    pub key_rotation_days: u32,
    /// Seconds an enrollment session stays open without activity.
    pub session_timeout: u64,
    /// Failed verifications before a subject is locked.
    pub max_failed_attempts: u32,
    /// Seconds a locked subject stays locked.
    pub lockout_duration: u64,
}

impl Default for Security {
    fn default() -> Self {
        Self {
            encryption_algorithm: "AES-256-GCM".into(),
            key_rotation_days: 90,
            session_timeout: 3600,
            max_failed_attempts: 3,
            lockout_duration: 900,
        }
    }
}

/// Worker pool sizing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Performance {
    /// Decision workers running engine work in parallel (0 = one per core).
    pub max_workers: usize,
    /// Seconds a queued request may wait for a worker before it fails.
    pub worker_timeout: f64,
    /// Requests that may wait for a worker; more are refused with 503.
    pub queue_size: usize,
}

impl Default for Performance {
    fn default() -> Self {
        Self {
            max_workers: 0,
            worker_timeout: 30.0,
            queue_size: 64,
        }
    }
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Logging {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    /// `json` (one object per line) or `text`.
    pub format: LogFormat,
    /// Also append to this file (journald gets stderr either way).
    pub file: Option<PathBuf>,
}

impl Default for Logging {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Json,
            file: None,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Metrics and health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Monitoring {
    /// Serve Prometheus metrics.
    pub metrics_enabled: bool,
    /// Address the metrics listener binds.
    pub metrics_address: String,
    /// Port of the metrics listener (0 lets the system choose).
    pub metrics_port: u16,
    /// Seconds between background health checks (disk, memory, devices).
    pub health_check_interval: u64,
}

impl Default for Monitoring {
    fn default() -> Self {
        Self {
            metrics_enabled: true,
            metrics_address: "127.0.0.1".into(),
            metrics_port: 9090,
            health_check_interval: 30,
        }
    }
}

/// Local HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Api {
    /// TCP listener for kiosks (API key required); empty disables it.
    pub listen: Option<SocketAddr>,
    /// Unix socket for the operator CLI (access by file permissions).
    pub socket: PathBuf,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
}

impl Default for Api {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 8000))),
            socket: "/run/apg-biometric/agent.sock".into(),
            max_body_bytes: 10 * 1024 * 1024,
        }
    }
}

/// Capture devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Devices {
    /// Seconds a capture waits for a presentation.
    pub capture_timeout: f64,
    /// Simulated devices replaying sample files from a directory.
    pub simulated: Vec<apg_sim::SimSpec>,
    /// Fingerprint modules on serial ports (ZhianTec/Synochip protocol: R30x, R503, AS608).
    pub serial: Vec<apg_fp_serial::SerialModuleConfig>,
    /// UVC cameras (USB webcams, kiosk and IR cameras), found through V4L2.
    pub uvc: UvcCameras,
    /// Cameras behind a video file or an RTSP URL (IP cameras at doors).
    pub streams: Vec<StreamCamera>,
}

impl Default for Devices {
    fn default() -> Self {
        Self {
            capture_timeout: 10.0,
            simulated: Vec::new(),
            serial: Vec::new(),
            uvc: UvcCameras::default(),
            streams: Vec::new(),
        }
    }
}

/// How UVC cameras are found and which mode they stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UvcCameras {
    /// Look for UVC cameras and follow them being plugged in and out.
    pub enabled: bool,
    /// Directory of the `videoN` nodes. Colour modes are opened through nokhwa, which opens
    /// `/dev/videoN` by number, so another directory must keep /dev's numbering.
    pub device_dir: PathBuf,
    /// Wanted frame width; the nearest mode not below it is used.
    pub width: u32,
    /// Wanted frame height.
    pub height: u32,
    /// Wanted frames per second.
    pub fps: u32,
    /// On cameras with both, stream the gray (near-infrared) modes instead of colour.
    pub prefer_infrared: bool,
}

impl Default for UvcCameras {
    fn default() -> Self {
        Self {
            enabled: true,
            device_dir: "/dev".into(),
            width: 640,
            height: 480,
            fps: 30,
            prefer_infrared: false,
        }
    }
}

/// One camera read through FFmpeg, e.g.
/// `{id: door-cam, url: "rtsp://user:secret@10.0.0.7/stream1", infrared: true}`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamCamera {
    /// Device id.
    pub id: String,
    /// A video file's path or an `rtsp://` URL; credentials in it are never logged or listed.
    pub url: String,
    /// Frame width the stream is scaled to.
    #[serde(default = "default_stream_width")]
    pub width: u32,
    /// Frame height the stream is scaled to.
    #[serde(default = "default_stream_height")]
    pub height: u32,
    /// Play a file from the start again when it ends.
    #[serde(default = "default_true")]
    pub repeat: bool,
    /// Frames per sample (more than one for an active liveness challenge).
    #[serde(default = "default_frames_per_sample")]
    pub frames_per_sample: usize,
    /// The camera is near-infrared.
    #[serde(default)]
    pub infrared: bool,
}

impl StreamCamera {
    /// The driver's description of this camera.
    pub fn spec(&self) -> apg_camera::StreamSpec {
        apg_camera::StreamSpec {
            width: self.width,
            height: self.height,
            repeat: self.repeat,
            frames_per_sample: self.frames_per_sample,
            infrared: self.infrared,
            ..apg_camera::StreamSpec::new(&self.id, &self.url)
        }
    }
}

// Written out so that a URL's password never reaches a log through `{:?}`.
impl std::fmt::Debug for StreamCamera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamCamera")
            .field("id", &self.id)
            .field("url", &self.spec().public_location())
            .field("width", &self.width)
            .field("height", &self.height)
            .field("repeat", &self.repeat)
            .field("frames_per_sample", &self.frames_per_sample)
            .field("infrared", &self.infrared)
            .finish()
    }
}

fn default_stream_width() -> u32 {
    640
}

fn default_stream_height() -> u32 {
    480
}

fn default_frames_per_sample() -> usize {
    1
}

fn default_true() -> bool {
    true
}
