//! Configured serial modules as agent devices: the config entry, the provider and the opened
//! reader.

use std::time::{Duration, Instant};

use apg_device::{
    CancelToken, Capabilities, CaptureDevice, CaptureError, DeviceInfo, DeviceKind, DeviceProvider,
    DeviceState, FaultKind, Sample, Transport,
};
use serde::{Deserialize, Serialize};

use crate::module::{ModuleSettings, SearchHit, SystemParameters, ZhiantecModule};
use crate::port::{Port, SerialLine};
use crate::protocol::{DEFAULT_ADDRESS, DEFAULT_PASSWORD};

/// Driver name in device listings.
pub const DRIVER: &str = "zhiantec-serial";

fn default_baud() -> u32 {
    57_600
}
fn default_address() -> u32 {
    DEFAULT_ADDRESS
}
fn default_timeout_ms() -> u64 {
    1000
}

/// One module in the agent configuration.
///
/// ```yaml
/// - path: /dev/serial/by-id/usb-1a86_USB_Serial-if00-port0
///   baud: 57600          # N x 9600, 9600..115200; modules ship at 57600
///   password: 0          # module password, factory default 0
///   address: 4294967295  # module address, factory default 0xFFFFFFFF
///   led_ring: true       # R503: has the AuraLedConfig ring
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialModuleConfig {
    /// Device id; defaults to `zhiantec-` and the file name of `path`.
    #[serde(default)]
    pub id: Option<String>,
    /// Serial device node.
    pub path: String,
    /// Baud rate the module is set to.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Module password.
    #[serde(default)]
    pub password: u32,
    /// Module address.
    #[serde(default = "default_address")]
    pub address: u32,
    /// Marketing name for listings, e.g. `R503`.
    #[serde(default)]
    pub model: Option<String>,
    /// The module has an R503-style LED ring.
    #[serde(default)]
    pub led_ring: bool,
    /// Longest wait for one packet of an answer, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub response_timeout_ms: u64,
}

impl SerialModuleConfig {
    /// A module at `path` and `baud` with factory password and address.
    pub fn new(path: impl Into<String>, baud: u32) -> Self {
        Self {
            id: None,
            path: path.into(),
            baud,
            password: DEFAULT_PASSWORD,
            address: DEFAULT_ADDRESS,
            model: None,
            led_ring: false,
            response_timeout_ms: default_timeout_ms(),
        }
    }

    /// The device id.
    pub fn device_id(&self) -> String {
        self.id.clone().unwrap_or_else(|| {
            let name = std::path::Path::new(&self.path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| self.path.clone());
            format!("zhiantec-{name}")
        })
    }

    /// Driver settings from this entry.
    pub fn settings(&self) -> ModuleSettings {
        ModuleSettings {
            address: self.address,
            password: self.password,
            response_timeout: Duration::from_millis(self.response_timeout_ms.max(1)),
            ..ModuleSettings::default()
        }
    }

    /// The listing of this module in state `state`.
    pub fn info(&self, state: DeviceState) -> DeviceInfo {
        DeviceInfo {
            id: self.device_id(),
            driver: DRIVER.to_string(),
            kind: DeviceKind::FingerprintReader,
            model: self
                .model
                .clone()
                .unwrap_or_else(|| "ZhianTec/Synochip-protocol fingerprint module".into()),
            transport: Transport::Serial {
                path: self.path.clone(),
                baud: self.baud,
            },
            state,
            capabilities: Capabilities {
                image: true,
                match_on_chip: true,
                led: self.led_ring,
                ..Capabilities::default()
            },
        }
    }
}

/// Whether the port of `path` exists and the service account may open it.
pub fn port_state(path: &str) -> DeviceState {
    use nix::unistd::{access, AccessFlags};
    if std::fs::metadata(path).is_err() {
        return DeviceState::Disconnected;
    }
    match access(path, AccessFlags::R_OK | AccessFlags::W_OK) {
        Ok(()) => DeviceState::Ready,
        Err(nix::errno::Errno::EACCES | nix::errno::Errno::EPERM) => DeviceState::PermissionDenied,
        Err(_) => DeviceState::Faulty,
    }
}

/// Provider of the serial modules listed in the agent configuration (no hotplug: a module
/// whose port is missing is listed as disconnected).
pub struct SerialProvider {
    modules: Vec<SerialModuleConfig>,
}

impl SerialProvider {
    /// A provider of the configured modules. Duplicate ids are refused.
    pub fn new(modules: Vec<SerialModuleConfig>) -> Result<Self, String> {
        let mut seen = std::collections::BTreeSet::new();
        for m in &modules {
            let id = m.device_id();
            if !seen.insert(id.clone()) {
                return Err(format!(
                    "serial fingerprint modules: id {id} is configured twice; give one an `id`"
                ));
            }
        }
        Ok(Self { modules })
    }

    fn config(&self, id: &str) -> Result<&SerialModuleConfig, CaptureError> {
        self.modules
            .iter()
            .find(|m| m.device_id() == id)
            .ok_or_else(|| {
                CaptureError::fault(
                    id,
                    FaultKind::NotFound,
                    "no serial fingerprint module with this id is configured",
                )
            })
    }

    /// Opens a module as its concrete type, for on-module enrollment and search.
    pub fn open_reader(&self, id: &str) -> Result<SerialReader, CaptureError> {
        SerialReader::open(self.config(id)?)
    }
}

impl DeviceProvider for SerialProvider {
    fn name(&self) -> &'static str {
        "serial-fingerprint"
    }

    fn list(&self) -> Vec<DeviceInfo> {
        self.modules
            .iter()
            .map(|m| m.info(port_state(&m.path)))
            .collect()
    }

    fn open(&self, id: &str) -> Result<Box<dyn CaptureDevice>, CaptureError> {
        Ok(Box::new(self.open_reader(id)?))
    }
}

/// An opened module.
pub struct SerialReader {
    info: DeviceInfo,
    module: ZhiantecModule<Box<dyn Port>>,
    params: SystemParameters,
}

impl SerialReader {
    /// Opens the port of `cfg`, verifies the password and reads the system parameters.
    pub fn open(cfg: &SerialModuleConfig) -> Result<Self, CaptureError> {
        let id = cfg.device_id();
        let line = SerialLine::open(&id, &cfg.path, cfg.baud)?;
        Self::with_port(cfg.info(DeviceState::Busy), Box::new(line), cfg.settings())
    }

    /// Wraps an already open port (tests, other transports) and handshakes.
    pub fn with_port(
        info: DeviceInfo,
        port: Box<dyn Port>,
        settings: ModuleSettings,
    ) -> Result<Self, CaptureError> {
        let mut module = ZhiantecModule::new(port, settings);
        let params = module.connect().map_err(|e| e.into_capture(&info.id))?;
        Ok(Self {
            info,
            module,
            params,
        })
    }

    /// The system parameters read at open.
    pub fn parameters(&self) -> &SystemParameters {
        &self.params
    }

    /// The module driver, for on-module operations.
    pub fn module(&mut self) -> &mut ZhiantecModule<Box<dyn Port>> {
        &mut self.module
    }

    /// Enrolls a finger on the module: two presentations, combined and stored at `page`.
    pub fn enroll(
        &mut self,
        page: u16,
        cancel: &CancelToken,
        timeout: Duration,
    ) -> Result<(), CaptureError> {
        let id = self.info.id.clone();
        let deadline = Instant::now() + timeout;
        let m = &mut self.module;
        for buffer in [1u8, 2] {
            let left = deadline.saturating_duration_since(Instant::now());
            m.wait_finger(cancel, left)
                .and_then(|_| m.img2tz(buffer))
                .map_err(|e| e.into_capture(&id))?;
            let left = deadline.saturating_duration_since(Instant::now());
            if !m
                .wait_removal(cancel, left)
                .map_err(|e| e.into_capture(&id))?
                && buffer == 1
            {
                return Err(CaptureError::Retry {
                    device: id,
                    reason: apg_device::RetryReason::RemoveFinger,
                });
            }
        }
        m.reg_model()
            .and_then(|_| m.store(1, page))
            .map_err(|e| e.into_capture(&id))
    }

    /// Waits for a finger and searches the whole library on the module.
    pub fn identify(
        &mut self,
        cancel: &CancelToken,
        timeout: Duration,
    ) -> Result<Option<SearchHit>, CaptureError> {
        let id = self.info.id.clone();
        let size = self.params.library_size;
        let removal = self.module.settings().removal_timeout;
        let m = &mut self.module;
        let hit = m
            .wait_finger(cancel, timeout)
            .and_then(|_| m.img2tz(1))
            .and_then(|_| m.search(1, 0, size))
            .map_err(|e| e.into_capture(&id))?;
        m.wait_removal(cancel, removal)
            .map_err(|e| e.into_capture(&id))?;
        Ok(hit)
    }
}

impl CaptureDevice for SerialReader {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn capture(&mut self, cancel: &CancelToken, timeout: Duration) -> Result<Sample, CaptureError> {
        self.module
            .capture_image(cancel, timeout)
            .map(Sample::Fingerprint)
            .map_err(|e| e.into_capture(&self.info.id))
    }
}
