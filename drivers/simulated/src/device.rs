//! The simulated device provider.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apg_device::{
    CancelToken, Capabilities, CaptureDevice, CaptureError, DeviceInfo, DeviceKind, DeviceProvider,
    DeviceState, FaultKind, Sample, Transport,
};
use serde::{Deserialize, Serialize};

use crate::decode::{decode_file, SUPPORTED_EXTENSIONS};

/// Faults a simulated device shows on request, to rehearse failure handling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimFault {
    /// Behave normally.
    #[default]
    None,
    /// Every capture fails as if the device had been unplugged.
    Disconnected,
    /// Captures never return and ignore cancellation, as a wedged driver would.
    Hang,
}

/// Configuration of one simulated device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSpec {
    /// Device id, unique in the agent.
    pub id: String,
    /// Device family: `fingerprint_reader`, `camera`, `microphone` or `imu`.
    pub kind: DeviceKind,
    /// Directory holding the sample files.
    pub directory: PathBuf,
    /// Resolution of fingerprint images, dpi.
    #[serde(default = "default_dpi")]
    pub dpi: u16,
    /// Sampling rate of IMU recordings without a time column, Hz.
    #[serde(default = "default_imu_rate")]
    pub imu_rate: f32,
    /// Fault to inject.
    #[serde(default)]
    pub fault: SimFault,
}

fn default_dpi() -> u16 {
    500
}

fn default_imu_rate() -> f32 {
    204.8
}

impl SimSpec {
    fn info(&self, state: DeviceState) -> DeviceInfo {
        DeviceInfo {
            id: self.id.clone(),
            driver: "simulated".into(),
            kind: self.kind,
            model: format!(
                "Simulated {} (replays real samples)",
                self.kind.label().replace('_', " ")
            ),
            transport: Transport::Simulated {
                directory: self.directory.display().to_string(),
            },
            state,
            capabilities: Capabilities {
                // Readers and cameras hand over images the agent's engines process.
                image: matches!(
                    self.kind,
                    DeviceKind::FingerprintReader | DeviceKind::Camera
                ),
                ..Default::default()
            },
        }
    }

    /// Sample files in the directory, in name order.
    pub fn files(&self) -> Result<Vec<PathBuf>, CaptureError> {
        let extensions = SUPPORTED_EXTENSIONS
            .iter()
            .find(|(k, _)| *k == self.kind)
            .map(|(_, e)| *e)
            .unwrap_or_default();
        let entries = std::fs::read_dir(&self.directory).map_err(|e| {
            CaptureError::fault(
                &self.id,
                FaultKind::NotFound,
                format!(
                    "sample directory {} cannot be read: {e}; check devices.simulated[].directory",
                    self.directory.display()
                ),
            )
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| extensions.iter().any(|x| x.eq_ignore_ascii_case(e)))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(CaptureError::fault(
                &self.id,
                FaultKind::NotFound,
                format!(
                    "sample directory {} holds no {} files",
                    self.directory.display(),
                    extensions.join("/")
                ),
            ));
        }
        Ok(files)
    }
}

/// Chooses the file the next capture of one simulated device replays.
#[derive(Debug, Clone)]
pub struct Presenter {
    spec: SimSpec,
    queue: Arc<Mutex<VecDeque<PathBuf>>>,
}

impl Presenter {
    /// Queues `name` (a file name inside the device's directory) for the next capture.
    pub fn present(&self, name: &str) -> Result<(), CaptureError> {
        let plain = !name.is_empty() && !name.contains('/') && name != "." && name != "..";
        let path = self.spec.directory.join(name);
        if !plain || !path.is_file() {
            return Err(CaptureError::fault(
                &self.spec.id,
                FaultKind::NotFound,
                format!(
                    "no sample file {name:?} in {}",
                    self.spec.directory.display()
                ),
            ));
        }
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(path);
        Ok(())
    }
}

/// Provider of the configured simulated devices.
#[derive(Debug, Default)]
pub struct SimProvider {
    devices: Vec<(SimSpec, Presenter)>,
}

impl SimProvider {
    /// A provider for these devices.
    pub fn new(specs: Vec<SimSpec>) -> Self {
        let devices = specs
            .into_iter()
            .map(|spec| {
                let presenter = Presenter {
                    spec: spec.clone(),
                    queue: Arc::default(),
                };
                (spec, presenter)
            })
            .collect();
        Self { devices }
    }

    /// The presenter of a device, to choose what it replays next.
    pub fn presenter(&self, id: &str) -> Option<Presenter> {
        self.devices
            .iter()
            .find(|(s, _)| s.id == id)
            .map(|(_, p)| p.clone())
    }
}

impl DeviceProvider for SimProvider {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn list(&self) -> Vec<DeviceInfo> {
        self.devices
            .iter()
            .map(|(spec, _)| {
                let state = match spec.fault {
                    SimFault::Disconnected => DeviceState::Disconnected,
                    _ if spec.files().is_err() => DeviceState::Faulty,
                    _ => DeviceState::Ready,
                };
                spec.info(state)
            })
            .collect()
    }

    fn open(&self, id: &str) -> Result<Box<dyn CaptureDevice>, CaptureError> {
        let (spec, presenter) = self
            .devices
            .iter()
            .find(|(s, _)| s.id == id)
            .ok_or_else(|| {
                CaptureError::fault(id, FaultKind::NotFound, "no simulated device with this id")
            })?;
        if spec.fault == SimFault::Disconnected {
            return Err(unplugged(id));
        }
        let files = spec.files()?;
        Ok(Box::new(SimDevice {
            info: spec.info(DeviceState::Ready),
            spec: spec.clone(),
            files,
            next: 0,
            queue: presenter.queue.clone(),
        }))
    }
}

fn unplugged(id: &str) -> CaptureError {
    CaptureError::fault(
        id,
        FaultKind::Disconnected,
        "simulated device is set to show an unplugged reader (fault: disconnected)",
    )
}

struct SimDevice {
    info: DeviceInfo,
    spec: SimSpec,
    files: Vec<PathBuf>,
    next: usize,
    queue: Arc<Mutex<VecDeque<PathBuf>>>,
}

impl SimDevice {
    fn next_file(&mut self) -> PathBuf {
        if let Some(path) = self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
        {
            return path;
        }
        let path = self.files[self.next % self.files.len()].clone();
        self.next += 1;
        path
    }
}

impl CaptureDevice for SimDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn capture(
        &mut self,
        cancel: &CancelToken,
        _timeout: Duration,
    ) -> Result<Sample, CaptureError> {
        match self.spec.fault {
            SimFault::Disconnected => return Err(unplugged(&self.spec.id)),
            SimFault::Hang => loop {
                std::thread::park_timeout(Duration::from_secs(3600));
            },
            SimFault::None => {}
        }
        if cancel.is_cancelled() {
            return Err(CaptureError::Cancelled {
                device: self.spec.id.clone(),
            });
        }
        let path = self.next_file();
        decode_file(self.spec.kind, &path, self.spec.dpi, self.spec.imu_rate)
            .map_err(|e| CaptureError::fault(&self.spec.id, FaultKind::InvalidData, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(dir: &Path) -> SimSpec {
        SimSpec {
            id: "sim-fp".into(),
            kind: DeviceKind::FingerprintReader,
            directory: dir.to_path_buf(),
            dpi: 500,
            imu_rate: 204.8,
            fault: SimFault::None,
        }
    }

    fn write_png(path: &Path, value: u8) {
        image::GrayImage::from_pixel(200, 200, image::Luma([value]))
            .save(path)
            .unwrap();
    }

    fn pixel0(sample: Sample) -> u8 {
        match sample {
            Sample::Fingerprint(f) => f.pixels[0],
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn files_replay_in_name_order_and_a_presented_file_comes_first() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("b.png"), 20);
        write_png(&dir.path().join("a.png"), 10);
        let provider = SimProvider::new(vec![spec(dir.path())]);
        let mut dev = provider.open("sim-fp").unwrap();
        let cancel = CancelToken::new();
        let t = Duration::from_secs(1);
        assert_eq!(pixel0(dev.capture(&cancel, t).unwrap()), 10);
        provider
            .presenter("sim-fp")
            .unwrap()
            .present("a.png")
            .unwrap();
        assert_eq!(pixel0(dev.capture(&cancel, t).unwrap()), 10);
        assert_eq!(pixel0(dev.capture(&cancel, t).unwrap()), 20);
        assert_eq!(pixel0(dev.capture(&cancel, t).unwrap()), 10, "wraps around");
    }

    #[test]
    fn presenting_a_path_outside_the_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("a.png"), 10);
        let provider = SimProvider::new(vec![spec(dir.path())]);
        let presenter = provider.presenter("sim-fp").unwrap();
        assert!(presenter.present("../a.png").is_err());
        assert!(presenter.present("missing.png").is_err());
    }

    #[test]
    fn an_unplugged_simulation_reports_a_disconnect() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("a.png"), 10);
        let mut s = spec(dir.path());
        s.fault = SimFault::Disconnected;
        let provider = SimProvider::new(vec![s]);
        assert_eq!(provider.list()[0].state, DeviceState::Disconnected);
        assert!(provider.open("sim-fp").err().unwrap().is_disconnect());
    }

    #[test]
    fn an_empty_directory_is_listed_as_faulty_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let provider = SimProvider::new(vec![spec(dir.path())]);
        assert_eq!(provider.list()[0].state, DeviceState::Faulty);
        let err = provider.open("sim-fp").err().unwrap().to_string();
        assert!(err.contains("holds no") && err.contains("sim-fp"), "{err}");
    }

    #[test]
    fn readers_and_cameras_list_the_image_capability_microphones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("a.png"), 10);
        let with_kind = |id: &str, kind: DeviceKind| SimSpec {
            id: id.into(),
            kind,
            ..spec(dir.path())
        };
        let provider = SimProvider::new(vec![
            with_kind("reader", DeviceKind::FingerprintReader),
            with_kind("camera", DeviceKind::Camera),
            with_kind("microphone", DeviceKind::Microphone),
        ]);
        let image: Vec<(String, bool)> = provider
            .list()
            .into_iter()
            .map(|d| (d.id, d.capabilities.image))
            .collect();
        assert_eq!(
            image,
            [
                ("reader".to_string(), true),
                ("camera".to_string(), true),
                ("microphone".to_string(), false)
            ]
        );
    }
}
