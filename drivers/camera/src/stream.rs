//! Video files and RTSP streams, decoded by an `ffmpeg` child process into raw RGB frames.
//!
//! FFmpeg (Debian package `ffmpeg`) reads every container and codec a door camera or a test
//! recording uses, over files and RTSP (TCP interleaved, which crosses NAT and firewalls),
//! and writes fixed-size `rgb24` frames to a pipe. A reader thread turns them into
//! [`VideoFrame`]s in a [`Slot`]. When the stream ends or breaks, the thread reports the loss
//! and reconnects with a growing pause (0.25 s doubling to 5 s); a file is replayed from the
//! start when `repeat` is set.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use apg_device::{
    CancelToken, Capabilities, CaptureDevice, CaptureError, DeviceInfo, DeviceKind, DeviceProvider,
    DeviceState, FaultKind, PixelFormat, Sample, Transport, VideoFrame,
};

use crate::slot::{Link, Slot, Waited};

/// One configured file or RTSP camera.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    /// Device id.
    pub id: String,
    /// File path or `rtsp://` URL (credentials allowed; they are never shown).
    pub location: String,
    /// Frame width the stream is scaled to.
    pub width: u32,
    /// Frame height the stream is scaled to.
    pub height: u32,
    /// Replay a file from the start when it ends.
    pub repeat: bool,
    /// Frames per sample (1 for a still, more for an active liveness challenge).
    pub frames_per_sample: usize,
    /// The camera is near-infrared.
    pub infrared: bool,
}

impl StreamSpec {
    /// A spec with 640x480 frames, one frame per sample, files repeating.
    pub fn new(id: impl Into<String>, location: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            location: location.into(),
            width: 640,
            height: 480,
            repeat: true,
            frames_per_sample: 1,
            infrared: false,
        }
    }

    /// True for network streams.
    pub fn is_network(&self) -> bool {
        self.location.contains("://")
    }

    /// The location with any `user:password@` removed, for lists and messages.
    pub fn public_location(&self) -> String {
        redact(&self.location)
    }

    fn info(&self, state: DeviceState) -> DeviceInfo {
        DeviceInfo {
            id: self.id.clone(),
            driver: "stream".into(),
            kind: DeviceKind::Camera,
            model: if self.is_network() {
                "RTSP camera".into()
            } else {
                "Video file".into()
            },
            transport: Transport::Video {
                location: self.public_location(),
            },
            state,
            capabilities: Capabilities {
                image: true,
                infrared: self.infrared,
                ..Default::default()
            },
        }
    }

    /// The ffmpeg command line for this stream.
    pub fn ffmpeg_args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["-nostdin", "-hide_banner", "-loglevel", "error"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if self.location.starts_with("rtsp://") || self.location.starts_with("rtsps://") {
            args.extend(["-rtsp_transport", "tcp", "-timeout", "5000000"].map(String::from));
        } else if !self.is_network() {
            // Files play at their own frame rate, as a camera would deliver them.
            args.push("-re".into());
        }
        args.extend(["-i".into(), self.location.clone()]);
        args.extend([
            "-an".into(),
            "-vf".into(),
            format!("scale={}:{}", self.width, self.height),
        ]);
        args.extend(["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"].map(String::from));
        args
    }
}

/// Removes `user:password@` from a URL.
pub fn redact(location: &str) -> String {
    match location.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if path.is_empty() && !rest.contains('/') {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => location.to_owned(),
    }
}

/// Pause before reconnect attempt `attempt` (1-based).
pub fn backoff(attempt: u32) -> Duration {
    let ms = 250u64.saturating_mul(1 << attempt.saturating_sub(1).min(5));
    Duration::from_millis(ms.min(5000))
}

/// Provider of the configured file and RTSP cameras.
#[derive(Debug, Default)]
pub struct StreamProvider {
    specs: Vec<StreamSpec>,
}

impl StreamProvider {
    /// A provider for these streams.
    pub fn new(specs: Vec<StreamSpec>) -> Self {
        Self { specs }
    }
}

impl DeviceProvider for StreamProvider {
    fn name(&self) -> &'static str {
        "stream"
    }

    fn list(&self) -> Vec<DeviceInfo> {
        self.specs
            .iter()
            .map(|s| {
                let state = if s.is_network() || Path::new(&s.location).is_file() {
                    DeviceState::Ready
                } else {
                    DeviceState::Faulty
                };
                s.info(state)
            })
            .collect()
    }

    fn open(&self, id: &str) -> Result<Box<dyn CaptureDevice>, CaptureError> {
        let spec = self.specs.iter().find(|s| s.id == id).ok_or_else(|| {
            CaptureError::fault(
                id,
                FaultKind::NotFound,
                "no file or RTSP camera with this id",
            )
        })?;
        Ok(Box::new(StreamCamera::open(spec.clone())?))
    }
}

/// An open file or RTSP camera.
pub struct StreamCamera {
    spec: StreamSpec,
    info: DeviceInfo,
    slot: Arc<Slot>,
    child: Arc<Mutex<Option<Child>>>,
    reader: Option<JoinHandle<()>>,
    last: u64,
}

impl std::fmt::Debug for StreamCamera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamCamera")
            .field("id", &self.spec.id)
            .field("location", &self.spec.public_location())
            .finish()
    }
}

impl StreamCamera {
    /// Starts reading the stream.
    pub fn open(spec: StreamSpec) -> Result<Self, CaptureError> {
        if !spec.is_network() && !Path::new(&spec.location).is_file() {
            return Err(CaptureError::fault(
                &spec.id,
                FaultKind::NotFound,
                format!(
                    "video file {} does not exist; check the camera's location",
                    spec.location
                ),
            ));
        }
        if spec.width == 0 || spec.height == 0 || spec.frames_per_sample == 0 {
            return Err(CaptureError::fault(
                &spec.id,
                FaultKind::Unsupported,
                "width, height and frames_per_sample must be positive",
            ));
        }
        let slot = Arc::new(Slot::default());
        let child = Arc::new(Mutex::new(None));
        let (thread_slot, thread_child, thread_spec) = (slot.clone(), child.clone(), spec.clone());
        let reader = std::thread::Builder::new()
            .name(format!("camera-{}", spec.id))
            .spawn(move || read_loop(&thread_spec, &thread_slot, &thread_child))
            .map_err(|e| {
                CaptureError::fault(
                    &spec.id,
                    FaultKind::Io,
                    format!("cannot start the reader thread: {e}"),
                )
            })?;
        Ok(Self {
            info: spec.info(DeviceState::Busy),
            spec,
            slot,
            child,
            reader: Some(reader),
            last: 0,
        })
    }

    /// The link state.
    pub fn link(&self) -> Link {
        self.slot.link()
    }

    /// Frames the pipeline was too slow to take.
    pub fn dropped_frames(&self) -> u64 {
        self.slot.dropped()
    }

    fn stop(&mut self) {
        self.slot.request_stop();
        if let Some(child) = self
            .child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            let _ = child.kill();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for StreamCamera {
    fn drop(&mut self) {
        self.stop();
    }
}

impl CaptureDevice for StreamCamera {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn capture(&mut self, cancel: &CancelToken, timeout: Duration) -> Result<Sample, CaptureError> {
        let start = std::time::Instant::now();
        let mut frames = Vec::with_capacity(self.spec.frames_per_sample);
        while frames.len() < self.spec.frames_per_sample {
            if cancel.is_cancelled() {
                return Err(CaptureError::Cancelled {
                    device: self.spec.id.clone(),
                });
            }
            let left = timeout.saturating_sub(start.elapsed());
            match self
                .slot
                .wait_newer(self.last, left.min(Duration::from_millis(100)))
            {
                Waited::Frame(frame, seq) => {
                    self.last = seq;
                    frames.push(frame);
                }
                Waited::Nothing(link) if left.is_zero() => {
                    return Err(match link {
                        Link::Lost { reason, attempts } => CaptureError::fault(
                            &self.spec.id,
                            FaultKind::Disconnected,
                            format!(
                                "stream {} lost ({reason}); reconnecting, {attempts} attempt(s) so far",
                                self.spec.public_location()
                            ),
                        ),
                        Link::Ended => CaptureError::fault(
                            &self.spec.id,
                            FaultKind::Disconnected,
                            format!("video file {} has ended (repeat is off)", self.spec.location),
                        ),
                        Link::Connecting | Link::Streaming => CaptureError::Timeout { device: self.spec.id.clone(), waited: timeout },
                    });
                }
                Waited::Nothing(_) => {}
            }
        }
        Ok(Sample::Video(frames))
    }

    fn close(&mut self) -> Result<(), CaptureError> {
        self.stop();
        Ok(())
    }
}

/// The reader thread: runs ffmpeg, publishes frames, reconnects.
fn read_loop(spec: &StreamSpec, slot: &Slot, child_cell: &Mutex<Option<Child>>) {
    let frame_len = spec.width as usize * spec.height as usize * 3;
    let mut attempts = 0u32;
    loop {
        if slot.stopping() {
            return;
        }
        let spawned = Command::new("ffmpeg")
            .args(spec.ffmpeg_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                attempts += 1;
                slot.set_link(Link::Lost {
                    reason: format!("cannot run ffmpeg ({e}); install the ffmpeg package"),
                    attempts,
                });
                if slot.pause(backoff(attempts)) {
                    return;
                }
                continue;
            }
        };
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        *child_cell.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        let mut got_frames = false;
        if let Some(out) = stdout.as_mut() {
            let mut buf = vec![0u8; frame_len];
            while out.read_exact(&mut buf).is_ok() {
                let mut frame = match VideoFrame::new(
                    spec.width,
                    spec.height,
                    PixelFormat::Rgb8,
                    buf.clone(),
                ) {
                    Some(f) => f,
                    None => break,
                };
                frame.infrared = spec.infrared;
                frame.captured_at = SystemTime::now();
                slot.publish(frame);
                got_frames = true;
                attempts = 0;
            }
        }
        let mut message = String::new();
        if let Some(err) = stderr.as_mut() {
            let _ = err.read_to_string(&mut message);
        }
        if let Some(mut child) = child_cell.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if slot.stopping() {
            return;
        }
        if !spec.is_network() && got_frames && !spec.repeat {
            slot.set_link(Link::Ended);
            return;
        }
        if !spec.is_network() && got_frames {
            continue; // Replay the file.
        }
        attempts += 1;
        let reason = message
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map_or_else(
                || {
                    if got_frames {
                        "the stream ended".to_owned()
                    } else {
                        "no frames".to_owned()
                    }
                },
                |l| redact_in_text(l, &spec.location),
            );
        slot.set_link(Link::Lost { reason, attempts });
        if slot.pause(backoff(attempts)) {
            return;
        }
    }
}

/// Replaces the full location (with credentials) by its redacted form in an ffmpeg message.
fn redact_in_text(text: &str, location: &str) -> String {
    text.replace(location, &redact(location))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_appear_in_the_public_location() {
        assert_eq!(
            redact("rtsp://admin:secret@10.0.0.5:554/stream1"),
            "rtsp://10.0.0.5:554/stream1"
        );
        assert_eq!(redact("rtsp://10.0.0.5"), "rtsp://10.0.0.5");
        assert_eq!(redact("/var/video/door.mp4"), "/var/video/door.mp4");
        let spec = StreamSpec::new("door", "rtsp://u:p@cam/x");
        assert!(!format!(
            "{:?} {:?}",
            spec.info(DeviceState::Ready),
            redact_in_text("rtsp://u:p@cam/x: refused", &spec.location)
        )
        .contains("u:p"));
    }

    #[test]
    fn reconnect_pauses_grow_and_are_capped() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(5), Duration::from_millis(4000));
        assert_eq!(backoff(40), Duration::from_secs(5));
    }

    #[test]
    fn rtsp_uses_tcp_and_files_play_in_real_time() {
        let rtsp = StreamSpec::new("a", "rtsp://cam/x").ffmpeg_args().join(" ");
        assert!(
            rtsp.contains("-rtsp_transport tcp") && !rtsp.contains("-re "),
            "{rtsp}"
        );
        let file = StreamSpec::new("b", "/tmp/x.mp4").ffmpeg_args().join(" ");
        assert!(
            file.contains("-re ")
                && file.contains("scale=640:480")
                && file.ends_with("rgb24 pipe:1"),
            "{file}"
        );
    }

    #[test]
    fn a_missing_file_is_reported_with_its_path() {
        let err = StreamCamera::open(StreamSpec::new("f", "/nonexistent/door.mp4")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/door.mp4"), "{err}");
        let provider = StreamProvider::new(vec![StreamSpec::new("f", "/nonexistent/door.mp4")]);
        assert_eq!(provider.list()[0].state, DeviceState::Faulty);
    }
}
