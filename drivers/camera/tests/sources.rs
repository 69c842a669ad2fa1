//! File and RTSP sources end to end: real ffmpeg decoding a real encoded video, and a real
//! RTSP server (GStreamer's gst-rtsp-server, tests/rtsp_server.py) that is killed and
//! restarted to rehearse a camera that drops off the network.
//!
//! Needs the Debian packages ffmpeg, python3-gi, gir1.2-gst-rtsp-server-1.0,
//! gstreamer1.0-plugins-base and gstreamer1.0-plugins-good.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apg_camera::{Link, StreamCamera, StreamSpec};
use apg_device::{CancelToken, CaptureDevice, PixelFormat, Sample};

fn make_video(dir: &Path, seconds: u32) -> PathBuf {
    let path = dir.join("door.mp4");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=320x240:rate=10:duration={seconds}"))
        .args(["-pix_fmt", "yuv420p", "-c:v", "mpeg4"])
        .arg(&path)
        .status()
        .expect("ffmpeg must be installed (Debian package ffmpeg)");
    assert!(status.success(), "ffmpeg could not encode the test video");
    path
}

fn frames(sample: Sample) -> Vec<apg_device::VideoFrame> {
    match sample {
        Sample::Video(frames) => frames,
        other => panic!("expected video, got {other:?}"),
    }
}

#[test]
fn a_video_file_delivers_scaled_rgb_frames_and_drops_what_nobody_takes() {
    let dir = tempfile::tempdir().unwrap();
    let video = make_video(dir.path(), 3);
    let mut spec = StreamSpec::new("file-door", video.to_str().unwrap());
    spec.width = 160;
    spec.height = 120;
    spec.frames_per_sample = 3;
    let mut camera = StreamCamera::open(spec).unwrap();
    let cancel = CancelToken::new();
    let got = frames(camera.capture(&cancel, Duration::from_secs(20)).unwrap());
    assert_eq!(got.len(), 3);
    for f in &got {
        assert_eq!((f.width, f.height, f.format), (160, 120, PixelFormat::Rgb8));
        assert_eq!(f.data.len(), 160 * 120 * 3);
    }
    assert_ne!(
        got[0].data, got[2].data,
        "the test pattern moves between frames"
    );
    // Nobody captures for a while: the slot keeps one frame and counts the rest as dropped.
    let deadline = Instant::now() + Duration::from_secs(20);
    while camera.dropped_frames() < 3 {
        assert!(
            Instant::now() < deadline,
            "frames should be dropped, not queued"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        frames(camera.capture(&cancel, Duration::from_secs(5)).unwrap()).len(),
        3
    );
}

#[test]
fn a_file_played_once_reports_its_end_and_a_repeating_file_keeps_going() {
    let dir = tempfile::tempdir().unwrap();
    let video = make_video(dir.path(), 1);
    let mut once = StreamSpec::new("file-once", video.to_str().unwrap());
    once.repeat = false;
    let mut camera = StreamCamera::open(once).unwrap();
    let cancel = CancelToken::new();
    // The first frame waits for ffmpeg to start, which takes seconds on a loaded machine.
    camera
        .capture(&cancel, Duration::from_secs(20))
        .expect("the first frame of the file");
    let deadline = Instant::now() + Duration::from_secs(30);
    let err = loop {
        match camera.capture(&cancel, Duration::from_secs(2)) {
            Ok(_) => assert!(Instant::now() < deadline, "the one-second file never ended"),
            Err(e) => break e,
        }
    };
    assert!(
        err.is_disconnect() && err.to_string().contains("ended"),
        "{err}"
    );
    assert_eq!(camera.link(), Link::Ended);

    let mut repeating =
        StreamCamera::open(StreamSpec::new("file-loop", video.to_str().unwrap())).unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        repeating
            .capture(&cancel, Duration::from_secs(10))
            .expect("a repeating file never runs out");
    }
}

#[test]
fn cancelling_a_capture_returns_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let video = make_video(dir.path(), 1);
    let mut spec = StreamSpec::new("file-cancel", video.to_str().unwrap());
    spec.frames_per_sample = 10_000;
    let mut camera = StreamCamera::open(spec).unwrap();
    let cancel = CancelToken::new();
    let other = cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        other.cancel();
    });
    let start = Instant::now();
    let err = camera
        .capture(&cancel, Duration::from_secs(60))
        .unwrap_err();
    assert!(
        matches!(err, apg_device::CaptureError::Cancelled { .. }),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    canceller.join().unwrap();
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(port: u16) -> (Server, u16) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rtsp_server.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 must be installed");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let bound: u16 = line.trim().parse().unwrap_or_else(|_| {
        panic!("the RTSP server did not start (install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good): {line:?}")
    });
    (Server(child), bound)
}

#[test]
fn an_rtsp_camera_that_goes_away_is_reported_and_recovered() {
    let (server, port) = start_server(0);
    let mut spec = StreamSpec::new(
        "rtsp-door",
        format!("rtsp://viewer:secret@127.0.0.1:{port}/test"),
    );
    spec.width = 320;
    spec.height = 240;
    let mut camera = StreamCamera::open(spec).unwrap();
    let cancel = CancelToken::new();
    let first = frames(
        camera
            .capture(&cancel, Duration::from_secs(30))
            .expect("first RTSP frame"),
    );
    assert_eq!((first[0].width, first[0].height), (320, 240));

    drop(server);
    let deadline = Instant::now() + Duration::from_secs(30);
    let err = loop {
        match camera.capture(&cancel, Duration::from_secs(2)) {
            Ok(_) => assert!(
                Instant::now() < deadline,
                "frames kept coming after the server died"
            ),
            Err(e) => break e,
        }
    };
    assert!(err.is_disconnect(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("rtsp-door") && text.contains("reconnecting"),
        "{text}"
    );
    assert!(!text.contains("secret"), "credentials leaked: {text}");

    let (_server, again) = start_server(port);
    assert_eq!(again, port);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match camera.capture(&cancel, Duration::from_secs(2)) {
            Ok(sample) => {
                assert_eq!(frames(sample)[0].width, 320);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "the camera never came back: {e}"),
        }
    }
    assert_eq!(camera.link(), Link::Streaming);
}
