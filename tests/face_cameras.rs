//! Faces from the real camera drivers through the whole agent.
//!
//! - A UVC camera: vcam (drivers/camera/vcam), a user-space V4L2 device preloaded into the
//!   agent process, streams MJPEG frames of a real photo (deepface img1). The agent finds it
//!   through its UVC provider, enrolls and verifies from it through the real v4l/nokhwa
//!   streaming path, reports the unplug, and works again once the camera is back under
//!   another node number.
//! - A door camera configured in `devices.streams`: a video file encoded from a real photo,
//!   read through ffmpeg.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use apg_camera::emulator::{self, VirtualCamera};
use apg_camera::uvc::Fourcc;
use common::{upload, AgentProcess, Options, Reply, PREFIX};
use serde_json::json;

const CAMERA: &str = "uvc-usb-0000-00-14-0-5";

/// A 640x480 MJPEG frame: the photo scaled into the frame on a gray background.
fn camera_frame(photo: &Path, out: &Path) {
    let img = image::open(photo)
        .unwrap_or_else(|e| panic!("{}: {e}", photo.display()))
        .into_rgb8();
    let scaled = image::imageops::resize(
        &img,
        img.width() * 480 / img.height(),
        480,
        image::imageops::FilterType::Triangle,
    );
    let mut frame = image::RgbImage::from_pixel(640, 480, image::Rgb([128, 128, 128]));
    let left = (640 - i64::from(scaled.width().min(640))) / 2;
    image::imageops::overlay(&mut frame, &scaled, left, 0);
    frame.save(out).unwrap();
}

fn verify_from_camera(agent: &AgentProcess) -> Reply {
    agent.socket_request(
        "POST",
        &format!("{PREFIX}/verify"),
        Some(&json!({ "subject_id": "carol", "device_id": CAMERA })),
    )
}

fn camera_state(agent: &AgentProcess) -> String {
    let listed = agent.socket_request("GET", &format!("{PREFIX}/devices"), None);
    listed.json["devices"]
        .as_array()
        .and_then(|all| all.iter().find(|d| d["id"] == CAMERA))
        .map(|d| d["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_else(|| "absent".into())
}

#[test]
fn enroll_and_verify_from_a_uvc_camera_through_unplug_and_replug() {
    let cameras = tempfile::Builder::new()
        .prefix("apg-vcam")
        .tempdir()
        .unwrap();
    let frame = cameras.path().join("frame.jpg");
    camera_frame(
        &common::shared_dir().join("data/face/deepface/img1.jpg"),
        &frame,
    );
    let camera = VirtualCamera::new("Kiosk Face Camera", "usb-0000:00:14.0-5").mode(
        Fourcc::Mjpeg,
        640,
        480,
        30,
        &frame,
    );
    let node = camera.plug(cameras.path(), "video0");

    let mut agent = AgentProcess::prepare(Options {
        extra_yaml: "biometric_engines: {face: {enabled: true, enroll_captures: 1}}\n".into(),
        device_yaml: format!("  uvc: {{device_dir: {}}}\n", cameras.path().display()),
        env: vec![
            (
                "LD_PRELOAD".into(),
                emulator::library(Path::new(env!("CARGO_TARGET_TMPDIR")))
                    .display()
                    .to_string(),
            ),
            (
                emulator::DIR_VAR.into(),
                cameras.path().display().to_string(),
            ),
        ],
        ..Options::default()
    });
    agent.spawn();
    agent.wait_ready(Duration::from_secs(120));

    let listed = agent.socket_request("GET", &format!("{PREFIX}/devices"), None);
    let entry = listed.json["devices"]
        .as_array()
        .and_then(|all| all.iter().find(|d| d["id"] == CAMERA).cloned())
        .unwrap_or_else(|| panic!("the UVC camera is listed: {}", listed.text));
    assert_eq!(entry["driver"], "uvc", "{entry}");
    assert_eq!(entry["model"], "Kiosk Face Camera", "{entry}");

    agent.create_subject("carol");
    let enrolled = agent.enroll_from_device("carol", CAMERA);
    assert_eq!(enrolled.status, 201, "enroll from UVC: {}", enrolled.text);
    assert_eq!(enrolled.json["modality"], "face", "{}", enrolled.text);

    let live = verify_from_camera(&agent);
    assert_eq!(live.status, 200, "{}", live.text);
    assert_eq!(live.json["decision"], "accepted", "{}", live.text);
    let other_photo = agent.socket_request(
        "POST",
        &format!("{PREFIX}/verify"),
        Some(&json!({ "subject_id": "carol", "modality": "face",
                      "sample": upload(&common::shared_dir().join("data/face/deepface/img20.jpg")) })),
    );
    assert_eq!(
        other_photo.json["decision"], "rejected",
        "{}",
        other_photo.text
    );

    // Unplugged: a capture fails naming the camera, and the device list says so. (A frame
    // taken in the last 33 ms before the unplug may still be served; wait that out.)
    std::fs::remove_file(&node).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let gone = verify_from_camera(&agent);
    assert_eq!(gone.status, 503, "{}", gone.text);
    assert!(gone.text.contains(CAMERA), "{}", gone.text);
    let deadline = Instant::now() + Duration::from_secs(15);
    while camera_state(&agent) != "disconnected" {
        assert!(
            Instant::now() < deadline,
            "state after unplug: {}",
            camera_state(&agent)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Back in the same port under another node: verification works again.
    camera.plug(cameras.path(), "video2");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let again = verify_from_camera(&agent);
        if again.status == 200 {
            assert_eq!(again.json["decision"], "accepted", "{}", again.text);
            break;
        }
        assert!(Instant::now() < deadline, "not back: {}", again.text);
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = agent.log_text();
    assert!(log.contains("Device unplugged"), "hotplug left no trace");
    agent.stop();
}

#[test]
fn enroll_and_verify_from_a_video_stream_camera() {
    let dir = tempfile::Builder::new()
        .prefix("apg-stream-camera")
        .tempdir()
        .unwrap();
    let still = dir.path().join("still.png");
    camera_frame(
        &common::shared_dir().join("data/face/deepface/img1.jpg"),
        &still,
    );
    let video = dir.path().join("door.mp4");
    let encoded = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-loop", "1", "-i"])
        .arg(&still)
        .args([
            "-t", "2", "-r", "10", "-pix_fmt", "yuv420p", "-c:v", "mpeg4", "-q:v", "2",
        ])
        .arg(&video)
        .status()
        .expect("ffmpeg must be installed (Debian package ffmpeg)");
    assert!(encoded.success(), "ffmpeg could not encode the door video");

    let mut agent = AgentProcess::prepare(Options {
        extra_yaml: "biometric_engines: {face: {enabled: true, enroll_captures: 1}}\n".into(),
        device_yaml: format!(
            "  uvc: {{enabled: false}}\n  streams:\n    - {{id: door-stream, url: {}}}\n",
            video.display()
        ),
        ..Options::default()
    });
    agent.spawn();
    agent.wait_ready(Duration::from_secs(120));
    agent.create_subject("dave");
    // The first capture starts ffmpeg, which can outlast the 2 s capture timeout on a busy
    // machine; the camera stays open, so the next attempt gets frames.
    let deadline = Instant::now() + Duration::from_secs(30);
    let enrolled = loop {
        let reply = agent.enroll_from_device("dave", "door-stream");
        if reply.status != 504 || Instant::now() > deadline {
            break reply;
        }
    };
    assert_eq!(
        enrolled.status, 201,
        "enroll from the stream: {}",
        enrolled.text
    );
    assert_eq!(enrolled.json["modality"], "face", "{}", enrolled.text);
    let verified = agent.socket_request(
        "POST",
        &format!("{PREFIX}/verify"),
        Some(&json!({ "subject_id": "dave", "device_id": "door-stream" })),
    );
    assert_eq!(verified.status, 200, "{}", verified.text);
    assert_eq!(verified.json["decision"], "accepted", "{}", verified.text);
    agent.stop();
}
