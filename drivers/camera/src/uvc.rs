//! UVC cameras through V4L2: enumeration and format choice with the `v4l` crate, streaming
//! with nokhwa's V4L2 backend for colour modes and with the `v4l` crate's memory-mapped
//! stream for infrared (gray) modes, which nokhwa 0.10 cannot open (see `stream_gray`).
//!
//! Enumeration lists `/dev/video*` nodes that can capture video: UVC cameras also create
//! metadata nodes (`META_CAPTURE`) and some devices expose output nodes, which are skipped.
//! Each camera is identified by its bus path (stable across replugging into the same port),
//! so after an unplug the reader thread finds the camera again even if its node number moved.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use apg_device::{
    CancelToken, Capabilities, CaptureDevice, CaptureError, DeviceInfo, DeviceKind, DeviceProvider,
    DeviceState, FaultKind, HotplugEvent, PixelFormat, Sample, Transport, VideoFrame,
};
use nokhwa::utils::{CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType};
use v4l::video::Capture;

use crate::slot::{Link, Slot, Waited};
use crate::stream::backoff;

/// Pixel formats the driver can use, in V4L2 terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fourcc {
    /// Motion JPEG: least USB bandwidth for colour.
    Mjpeg,
    /// Packed 4:2:2 YUV.
    Yuyv,
    /// 8-bit gray (IR cameras).
    Grey,
    /// 16-bit gray (IR cameras).
    Y16,
}

impl Fourcc {
    /// From the four V4L2 code bytes.
    pub fn from_code(code: &[u8; 4]) -> Option<Self> {
        match code {
            b"MJPG" => Some(Self::Mjpeg),
            b"YUYV" => Some(Self::Yuyv),
            b"GREY" => Some(Self::Grey),
            b"Y16 " => Some(Self::Y16),
            _ => None,
        }
    }

    /// The four V4L2 code bytes.
    pub fn code(self) -> [u8; 4] {
        match self {
            Self::Mjpeg => *b"MJPG",
            Self::Yuyv => *b"YUYV",
            Self::Grey => *b"GREY",
            Self::Y16 => *b"Y16 ",
        }
    }

    /// The format nokhwa streams, for the colour modes it handles.
    fn nokhwa(self) -> Option<FrameFormat> {
        match self {
            Self::Mjpeg => Some(FrameFormat::MJPEG),
            Self::Yuyv => Some(FrameFormat::YUYV),
            Self::Grey | Self::Y16 => None,
        }
    }
}

/// One mode a camera offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// Pixel format.
    pub fourcc: Fourcc,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
}

/// What the configuration asks of a camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Prefer infrared (gray) formats.
    pub infrared: bool,
}

impl Default for Wanted {
    fn default() -> Self {
        Self {
            width: 640,
            height: 480,
            fps: 30,
            infrared: false,
        }
    }
}

/// Chooses a mode: the format first (8- then 16-bit gray for IR cameras, MJPEG then YUYV for
/// colour), then the resolution nearest the wanted one (not smaller when possible), then the
/// frame rate nearest the wanted one (not lower when possible).
pub fn choose_mode(modes: &[Mode], wanted: &Wanted) -> Option<Mode> {
    let order: &[Fourcc] = if wanted.infrared {
        &[Fourcc::Grey, Fourcc::Y16, Fourcc::Mjpeg, Fourcc::Yuyv]
    } else {
        &[Fourcc::Mjpeg, Fourcc::Yuyv, Fourcc::Grey, Fourcc::Y16]
    };
    let rank = |m: &Mode| {
        let format = order
            .iter()
            .position(|f| *f == m.fourcc)
            .unwrap_or(usize::MAX);
        let smaller = u32::from(m.width < wanted.width || m.height < wanted.height);
        let size = m.width.abs_diff(wanted.width) + m.height.abs_diff(wanted.height);
        let slower = u32::from(m.fps < wanted.fps);
        (format, smaller, size, slower, m.fps.abs_diff(wanted.fps))
    };
    modes.iter().min_by_key(|m| rank(m)).copied()
}

/// True for a node that captures video (not metadata, not output).
pub fn is_capture_node(flags: v4l::capability::Flags) -> bool {
    use v4l::capability::Flags;
    flags.contains(Flags::VIDEO_CAPTURE) && flags.contains(Flags::STREAMING)
}

/// A camera found by enumeration.
#[derive(Debug, Clone, PartialEq)]
pub struct UvcCamera {
    /// Node, e.g. `/dev/video0`.
    pub node: PathBuf,
    /// Card name.
    pub card: String,
    /// Bus path, e.g. `usb-0000:00:14.0-1`.
    pub bus: String,
    /// Modes it offers.
    pub modes: Vec<Mode>,
    /// Whether the service account may open it.
    pub state: DeviceState,
}

impl UvcCamera {
    /// Device id derived from the bus path.
    pub fn id(&self) -> String {
        let bus: String = self
            .bus
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        format!("uvc-{}", bus.trim_matches('-'))
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            id: self.id(),
            driver: "uvc".into(),
            kind: DeviceKind::Camera,
            model: self.card.clone(),
            transport: Transport::Video {
                location: self.node.display().to_string(),
            },
            state: self.state,
            capabilities: Capabilities {
                image: true,
                infrared: self
                    .modes
                    .iter()
                    .any(|m| matches!(m.fourcc, Fourcc::Grey | Fourcc::Y16)),
                ..Default::default()
            },
        }
    }
}

fn modes_of(dev: &v4l::Device) -> Vec<Mode> {
    let mut modes = Vec::new();
    for format in dev.enum_formats().unwrap_or_default() {
        let Some(fourcc) = Fourcc::from_code(&format.fourcc.repr) else {
            continue;
        };
        for size in dev.enum_framesizes(format.fourcc).unwrap_or_default() {
            for d in size.size.to_discrete() {
                let intervals = dev
                    .enum_frameintervals(format.fourcc, d.width, d.height)
                    .unwrap_or_default();
                let mut rates: Vec<u32> = intervals
                    .iter()
                    .filter_map(|i| match &i.interval {
                        v4l::frameinterval::FrameIntervalEnum::Discrete(f) if f.numerator > 0 => {
                            Some(f.denominator / f.numerator)
                        }
                        _ => None,
                    })
                    .collect();
                if rates.is_empty() {
                    rates.push(30);
                }
                for fps in rates {
                    modes.push(Mode {
                        fourcc,
                        width: d.width,
                        height: d.height,
                        fps,
                    });
                }
            }
        }
    }
    modes
}

/// Lists the video capture nodes under `dev_dir` (normally `/dev`).
pub fn enumerate(dev_dir: &Path) -> Vec<UvcCamera> {
    let mut nodes: Vec<PathBuf> = std::fs::read_dir(dev_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("video"))
                })
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    let mut out = Vec::new();
    for node in nodes {
        match v4l::Device::with_path(&node) {
            Ok(dev) => {
                let Ok(caps) = dev.query_caps() else { continue };
                if !is_capture_node(caps.capabilities) {
                    continue;
                }
                out.push(UvcCamera {
                    modes: modes_of(&dev),
                    card: caps.card,
                    bus: caps.bus,
                    node,
                    state: DeviceState::Ready,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => out.push(UvcCamera {
                card: "V4L2 camera".into(),
                bus: node.display().to_string(),
                node,
                modes: Vec::new(),
                state: DeviceState::PermissionDenied,
            }),
            Err(_) => {}
        }
    }
    out
}

/// How often the provider looks for cameras plugged in or out.
pub const RESCAN: Duration = Duration::from_secs(2);

/// Provider of the UVC cameras attached now.
#[derive(Debug, Clone)]
pub struct UvcProvider {
    dev_dir: PathBuf,
    wanted: Wanted,
}

impl UvcProvider {
    /// Cameras under `/dev`, opened with `wanted` settings.
    pub fn new(wanted: Wanted) -> Self {
        Self {
            dev_dir: PathBuf::from("/dev"),
            wanted,
        }
    }

    /// Cameras under another directory (tests).
    pub fn with_dev_dir(dev_dir: impl Into<PathBuf>, wanted: Wanted) -> Self {
        Self {
            dev_dir: dev_dir.into(),
            wanted,
        }
    }
}

impl DeviceProvider for UvcProvider {
    fn name(&self) -> &'static str {
        "uvc"
    }

    fn list(&self) -> Vec<DeviceInfo> {
        enumerate(&self.dev_dir)
            .iter()
            .map(UvcCamera::info)
            .collect()
    }

    /// V4L2 has no event for new nodes short of udev, so the provider re-enumerates every
    /// [`RESCAN`] and reports the difference.
    fn watch(&self, sink: std::sync::mpsc::Sender<HotplugEvent>) -> Result<(), CaptureError> {
        let dev_dir = self.dev_dir.clone();
        let ids = |dir: &Path| -> BTreeMap<String, DeviceInfo> {
            enumerate(dir).iter().map(|c| (c.id(), c.info())).collect()
        };
        let mut known = ids(&dev_dir);
        std::thread::Builder::new()
            .name("uvc-hotplug".into())
            .spawn(move || loop {
                std::thread::sleep(RESCAN);
                let now = ids(&dev_dir);
                let arrived = now
                    .iter()
                    .filter(|(id, _)| !known.contains_key(*id))
                    .map(|(_, info)| HotplugEvent::Arrived(info.clone()));
                let left = known
                    .keys()
                    .filter(|id| !now.contains_key(*id))
                    .map(|id| HotplugEvent::Left { id: id.clone() });
                for event in arrived.chain(left).collect::<Vec<_>>() {
                    if sink.send(event).is_err() {
                        return; // nobody listens any more
                    }
                }
                known = now;
            })
            .map(|_| ())
            .map_err(|e| {
                CaptureError::fault(
                    "uvc",
                    FaultKind::Io,
                    format!("cannot start the camera hotplug thread: {e}"),
                )
            })
    }

    fn open(&self, id: &str) -> Result<Box<dyn CaptureDevice>, CaptureError> {
        let camera = enumerate(&self.dev_dir)
            .into_iter()
            .find(|c| c.id() == id)
            .ok_or_else(|| {
                CaptureError::fault(
                    id,
                    FaultKind::NotFound,
                    format!(
                        "no V4L2 capture device with this id under {}",
                        self.dev_dir.display()
                    ),
                )
            })?;
        if camera.state == DeviceState::PermissionDenied {
            return Err(CaptureError::fault(
                id,
                FaultKind::PermissionDenied,
                format!(
                    "{} cannot be opened; add the service user to the video group (see udev rules)",
                    camera.node.display()
                ),
            ));
        }
        let mode = choose_mode(&camera.modes, &self.wanted).ok_or_else(|| {
            CaptureError::fault(
                id,
                FaultKind::Unsupported,
                format!(
                    "{} offers no MJPEG, YUYV, GREY or Y16 mode",
                    camera.node.display()
                ),
            )
        })?;
        Ok(Box::new(UvcDevice::start(
            camera,
            mode,
            self.dev_dir.clone(),
        )?))
    }
}

/// An open UVC camera streaming into a one-frame slot.
pub struct UvcDevice {
    info: DeviceInfo,
    slot: Arc<Slot>,
    reader: Option<JoinHandle<()>>,
    last: u64,
}

impl UvcDevice {
    fn start(camera: UvcCamera, mode: Mode, dev_dir: PathBuf) -> Result<Self, CaptureError> {
        let slot = Arc::new(Slot::default());
        let info = DeviceInfo {
            state: DeviceState::Busy,
            ..camera.info()
        };
        let thread_slot = slot.clone();
        let id = camera.id();
        let reader = std::thread::Builder::new()
            .name(format!("camera-{id}"))
            .spawn(move || uvc_loop(&camera, mode, &dev_dir, &thread_slot))
            .map_err(|e| {
                CaptureError::fault(
                    &id,
                    FaultKind::Io,
                    format!("cannot start the capture thread: {e}"),
                )
            })?;
        Ok(Self {
            info,
            slot,
            reader: Some(reader),
            last: 0,
        })
    }
}

/// How long closing a camera waits for its capture thread.
const STOP_WAIT: Duration = Duration::from_secs(2);

impl Drop for UvcDevice {
    fn drop(&mut self) {
        self.slot.request_stop();
        let Some(reader) = self.reader.take() else {
            return;
        };
        // nokhwa waits for a frame without a timeout, so the thread of a hung camera cannot
        // see the stop request. It is left behind rather than blocking the agent's shutdown;
        // it ends by itself once the camera sends a frame or is unplugged.
        let start = std::time::Instant::now();
        while !reader.is_finished() && start.elapsed() < STOP_WAIT {
            std::thread::sleep(Duration::from_millis(10));
        }
        if reader.is_finished() {
            let _ = reader.join();
        }
    }
}

impl CaptureDevice for UvcDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn capture(&mut self, cancel: &CancelToken, timeout: Duration) -> Result<Sample, CaptureError> {
        let start = std::time::Instant::now();
        loop {
            if cancel.is_cancelled() {
                return Err(CaptureError::Cancelled {
                    device: self.info.id.clone(),
                });
            }
            let left = timeout.saturating_sub(start.elapsed());
            match self.slot.wait_newer(self.last, left.min(Duration::from_millis(100))) {
                Waited::Frame(frame, seq) => {
                    self.last = seq;
                    return Ok(Sample::Video(vec![frame]));
                }
                Waited::Nothing(Link::Lost { reason, attempts }) if left.is_zero() => {
                    return Err(CaptureError::fault(
                        &self.info.id,
                        FaultKind::Disconnected,
                        format!("camera lost ({reason}); reopening, {attempts} attempt(s) so far; check the USB cable"),
                    ))
                }
                Waited::Nothing(_) if left.is_zero() => {
                    return Err(CaptureError::Timeout { device: self.info.id.clone(), waited: timeout })
                }
                Waited::Nothing(_) => {}
            }
        }
    }
}

/// Converts packed YUYV (4:2:2, BT.601 limited range) to RGB.
pub fn yuyv_to_rgb(yuyv: &[u8], width: u32, height: u32) -> Option<Vec<u8>> {
    let pixels = width as usize * height as usize;
    if yuyv.len() < pixels * 2 || !width.is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(pixels * 3);
    for quad in yuyv[..pixels * 2].chunks_exact(4) {
        let (u, v) = (f32::from(quad[1]) - 128.0, f32::from(quad[3]) - 128.0);
        for y in [quad[0], quad[2]] {
            let c = 1.164 * (f32::from(y) - 16.0);
            out.push((c + 1.596 * v).clamp(0.0, 255.0) as u8);
            out.push((c - 0.392 * u - 0.813 * v).clamp(0.0, 255.0) as u8);
            out.push((c + 2.017 * u).clamp(0.0, 255.0) as u8);
        }
    }
    Some(out)
}

fn decode(raw: &[u8], mode: Mode) -> Result<VideoFrame, String> {
    let (w, h) = (mode.width, mode.height);
    let frame = match mode.fourcc {
        Fourcc::Mjpeg => {
            let img = image::load_from_memory_with_format(raw, image::ImageFormat::Jpeg)
                .map_err(|e| format!("corrupt MJPEG frame: {e}"))?;
            let rgb = img.into_rgb8();
            VideoFrame::new(rgb.width(), rgb.height(), PixelFormat::Rgb8, rgb.into_raw())
        }
        Fourcc::Yuyv => {
            yuyv_to_rgb(raw, w, h).and_then(|rgb| VideoFrame::new(w, h, PixelFormat::Rgb8, rgb))
        }
        Fourcc::Grey => raw
            .get(..(w * h) as usize)
            .and_then(|g| VideoFrame::new(w, h, PixelFormat::Gray8, g.to_vec())),
        Fourcc::Y16 => raw
            .get(..(w * h * 2) as usize)
            .and_then(|g| VideoFrame::new(w, h, PixelFormat::Gray16, g.to_vec())),
    };
    let mut frame =
        frame.ok_or_else(|| format!("short {:?} frame of {} bytes", mode.fourcc, raw.len()))?;
    frame.infrared = matches!(mode.fourcc, Fourcc::Grey | Fourcc::Y16);
    frame.captured_at = SystemTime::now();
    Ok(frame)
}

/// The capture thread: opens the camera, streams, and on failure finds the camera again by
/// its bus path and reopens it.
fn uvc_loop(camera: &UvcCamera, mode: Mode, dev_dir: &Path, slot: &Slot) {
    let mut attempts = 0u32;
    let mut node = camera.node.clone();
    while !slot.stopping() {
        let reason = match stream_once(&node, mode, slot) {
            Ok(()) => return,
            Err(reason) => reason,
        };
        attempts += 1;
        slot.set_link(Link::Lost { reason, attempts });
        if slot.pause(backoff(attempts)) {
            return;
        }
        if let Some(found) = enumerate(dev_dir).into_iter().find(|c| c.bus == camera.bus) {
            node = found.node;
        }
    }
}

/// Streams until stopped (`Ok`) or until the camera fails (`Err` with the reason).
fn stream_once(node: &Path, mode: Mode, slot: &Slot) -> Result<(), String> {
    match mode.fourcc.nokhwa() {
        Some(format) => stream_colour(node, mode, format, slot),
        None => stream_gray(node, mode, slot),
    }
}

/// Colour modes through nokhwa.
fn stream_colour(node: &Path, mode: Mode, format: FrameFormat, slot: &Slot) -> Result<(), String> {
    let index = node
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("video"))
        .and_then(|n| n.parse::<u32>().ok())
        .ok_or_else(|| format!("{} is not a /dev/videoN node", node.display()))?;
    let requested =
        RequestedFormat::new::<nokhwa::pixel_format::RgbFormat>(RequestedFormatType::Exact(
            CameraFormat::new_from(mode.width, mode.height, format, mode.fps),
        ));
    let mut cam = nokhwa::Camera::new(CameraIndex::Index(index), requested)
        .map_err(|e| format!("cannot open {}: {e}", node.display()))?;
    cam.open_stream()
        .map_err(|e| format!("cannot start streaming {}: {e}", node.display()))?;
    while !slot.stopping() {
        let buffer = cam
            .frame()
            .map_err(|e| format!("{}: {e}", node.display()))?;
        match decode(buffer.buffer(), mode) {
            Ok(frame) => slot.publish(frame),
            // One corrupt frame (a USB hiccup) is skipped, not a disconnect.
            Err(_) => continue,
        }
    }
    let _ = cam.stop_stream();
    Ok(())
}

/// Infrared modes through the `v4l` crate's memory-mapped stream, the same I/O nokhwa uses
/// underneath. nokhwa 0.10 looks for 8-bit gray under the code "GRAY" where V4L2 says "GREY",
/// and has no 16-bit gray, so it cannot open either mode of an IR camera.
fn stream_gray(node: &Path, mode: Mode, slot: &Slot) -> Result<(), String> {
    use v4l::io::traits::CaptureStream;

    let code = mode.fourcc.code();
    let dev =
        v4l::Device::with_path(node).map_err(|e| format!("cannot open {}: {e}", node.display()))?;
    let set = dev
        .set_format(&v4l::Format::new(
            mode.width,
            mode.height,
            v4l::FourCC::new(&code),
        ))
        .map_err(|e| format!("{} refused its {:?} mode: {e}", node.display(), mode.fourcc))?;
    if (set.width, set.height, set.fourcc.repr) != (mode.width, mode.height, code) {
        return Err(format!(
            "{} answered {}x{} {} to a request for {}x{} {:?}",
            node.display(),
            set.width,
            set.height,
            set.fourcc,
            mode.width,
            mode.height,
            mode.fourcc
        ));
    }
    dev.set_params(&v4l::video::capture::Parameters::with_fps(mode.fps))
        .map_err(|e| format!("{} refused {} fps: {e}", node.display(), mode.fps))?;
    let mut stream = v4l::io::mmap::Stream::with_buffers(&dev, v4l::buffer::Type::VideoCapture, 4)
        .map_err(|e| format!("cannot map buffers of {}: {e}", node.display()))?;
    // Wake up now and then so a stop request is seen even when no frame comes.
    stream.set_timeout(Duration::from_millis(500));
    while !slot.stopping() {
        let (buffer, meta) = match stream.next() {
            Ok(next) => next,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) => return Err(format!("{}: {e}", node.display())),
        };
        let used = (meta.bytesused as usize).min(buffer.len());
        match decode(&buffer[..used], mode) {
            Ok(frame) => slot.publish(frame),
            // One short frame (a USB hiccup) is skipped, not a disconnect.
            Err(_) => continue,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(fourcc: Fourcc, width: u32, height: u32, fps: u32) -> Mode {
        Mode {
            fourcc,
            width,
            height,
            fps,
        }
    }

    #[test]
    fn colour_cameras_prefer_mjpeg_at_the_nearest_size_not_below_it() {
        let modes = [
            m(Fourcc::Yuyv, 640, 480, 30),
            m(Fourcc::Mjpeg, 320, 240, 30),
            m(Fourcc::Mjpeg, 1280, 720, 30),
            m(Fourcc::Mjpeg, 800, 600, 15),
            m(Fourcc::Mjpeg, 800, 600, 30),
        ];
        assert_eq!(
            choose_mode(&modes, &Wanted::default()),
            Some(m(Fourcc::Mjpeg, 800, 600, 30))
        );
    }

    #[test]
    fn ir_cameras_prefer_grey_then_y16() {
        let modes = [
            m(Fourcc::Mjpeg, 640, 480, 30),
            m(Fourcc::Grey, 640, 360, 30),
        ];
        let ir = Wanted {
            infrared: true,
            ..Wanted::default()
        };
        assert_eq!(
            choose_mode(&modes, &ir).map(|m| m.fourcc),
            Some(Fourcc::Grey)
        );
        assert_eq!(
            choose_mode(
                &[m(Fourcc::Mjpeg, 640, 480, 30), m(Fourcc::Y16, 640, 480, 30)],
                &ir
            )
            .map(|m| m.fourcc),
            Some(Fourcc::Y16)
        );
        assert_eq!(
            choose_mode(&[m(Fourcc::Grey, 640, 480, 30)], &Wanted::default()).map(|m| m.fourcc),
            Some(Fourcc::Grey),
            "a gray-only camera still serves a colour request"
        );
    }

    #[test]
    fn metadata_and_output_nodes_are_not_cameras() {
        use v4l::capability::Flags;
        assert!(is_capture_node(
            Flags::VIDEO_CAPTURE | Flags::STREAMING | Flags::DEVICE_CAPS
        ));
        assert!(!is_capture_node(Flags::META_CAPTURE | Flags::STREAMING));
        assert!(!is_capture_node(Flags::VIDEO_OUTPUT | Flags::STREAMING));
    }

    #[test]
    fn yuyv_gray_and_white_convert_to_rgb() {
        let rgb = yuyv_to_rgb(&[235, 128, 16, 128], 2, 1).unwrap();
        assert!(rgb[..3].iter().all(|&v| v >= 254), "{rgb:?}");
        assert!(rgb[3..].iter().all(|&v| v <= 1), "{rgb:?}");
        assert!(yuyv_to_rgb(&[0; 3], 2, 1).is_none());
    }

    #[test]
    fn fourcc_codes_map_to_formats() {
        assert_eq!(Fourcc::from_code(b"MJPG"), Some(Fourcc::Mjpeg));
        assert_eq!(Fourcc::from_code(b"Y16 "), Some(Fourcc::Y16));
        assert_eq!(Fourcc::from_code(b"H264"), None);
    }

    #[test]
    fn a_directory_without_video_nodes_lists_nothing_and_open_names_the_id() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("video0"), b"").unwrap();
        let provider = UvcProvider::with_dev_dir(dir.path(), Wanted::default());
        assert!(
            provider.list().is_empty(),
            "a regular file is not a V4L2 device"
        );
        let err = provider.open("uvc-usb-1").err().unwrap().to_string();
        assert!(err.contains("uvc-usb-1"), "{err}");
    }
}
