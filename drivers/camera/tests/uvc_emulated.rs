//! The UVC driver against vcam (vcam/vcam.c), a user-space V4L2 camera preloaded into a
//! child process. CI has no /dev/video* and cannot load vivid or v4l2loopback, so this is
//! how the V4L2 path runs there: the real v4l and nokhwa code enumerates, negotiates formats,
//! maps buffers and streams through the same ioctls a uvcvideo node answers.
//!
//! Each test re-runs itself in a child process with LD_PRELOAD set; the child does the work
//! and the parent checks that it ran and passed. Needs a C compiler (`cc`).

#![cfg(feature = "uvc")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use apg_camera::emulator::{self, VirtualCamera};
use apg_camera::uvc::{enumerate, Fourcc, UvcProvider, Wanted};
use apg_device::{
    CancelToken, CaptureDevice, CaptureError, DeviceProvider, FaultKind, HotplugEvent, PixelFormat,
    Sample, VideoFrame,
};

const BUS: &str = "usb-0000:00:14.0-3";
/// The device id the driver derives from BUS.
const ID: &str = "uvc-usb-0000-00-14-0-3";
const CHILD: &str = "APG_VCAM_CHILD";
/// The longest a child may run.
const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// Runs `body` in a child process where vcam answers for the cameras described in the
/// directory it is given.
fn with_emulator(test: &str, body: impl FnOnce(&Path)) {
    if std::env::var_os(CHILD).is_some() {
        let dir = std::env::var(emulator::DIR_VAR).expect("the parent sets the vcam directory");
        body(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Output goes to files, so the child never blocks on a full pipe while we wait for it.
    let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(
            "LD_PRELOAD",
            emulator::library(Path::new(env!("CARGO_TARGET_TMPDIR"))),
        )
        .env(emulator::DIR_VAR, dir.path())
        .env(CHILD, "1")
        .stdout(log("child.out"))
        .stderr(log("child.err"))
        .spawn()
        .unwrap();
    // A hang (a capture thread nobody can stop) must fail the test, not stall the suite.
    let deadline = Instant::now() + CHILD_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let (stdout, stderr) = (read("child.out"), read("child.err"));
    assert!(
        status.is_some_and(|s| s.success()) && stdout.contains("1 passed"),
        "{test} failed under the V4L2 emulator ({}):\n{stdout}\n{stderr}",
        if status.is_none() {
            "killed after 60 s"
        } else {
            "exited"
        }
    );
}

/// Writes a frame payload beside the descriptions (its name does not start with "video").
fn payload(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A 640x480 test card: left half red, right half blue.
fn test_card_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(640, 480, |x, _| {
        if x < 320 {
            image::Rgb([220, 30, 30])
        } else {
            image::Rgb([30, 30, 220])
        }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

fn one_frame(device: &mut dyn CaptureDevice) -> VideoFrame {
    match device
        .capture(&CancelToken::new(), Duration::from_secs(10))
        .unwrap()
    {
        Sample::Video(mut frames) => frames.remove(0),
        other => panic!("a camera returned {other:?}"),
    }
}

/// Opens the one camera, preferring infrared modes, and takes a frame.
fn one_infrared_frame(dir: &Path) -> VideoFrame {
    let ir = Wanted {
        infrared: true,
        ..Wanted::default()
    };
    let provider = UvcProvider::with_dev_dir(dir, ir);
    assert!(provider.list()[0].capabilities.infrared);
    let mut camera = provider.open(ID).unwrap();
    one_frame(camera.as_mut())
}

fn rgb_at(frame: &VideoFrame, x: u32, y: u32) -> [u8; 3] {
    let i = ((y * frame.width + x) * 3) as usize;
    [frame.data[i], frame.data[i + 1], frame.data[i + 2]]
}

#[test]
fn enumeration_lists_capture_nodes_with_their_modes_and_skips_metadata_nodes() {
    with_emulator(
        "enumeration_lists_capture_nodes_with_their_modes_and_skips_metadata_nodes",
        |dir| {
            let jpeg = payload(dir, "card.jpg", &test_card_jpeg());
            VirtualCamera::new("Kiosk HD Camera", BUS)
                .mode(Fourcc::Mjpeg, 640, 480, 30, &jpeg)
                .mode(Fourcc::Mjpeg, 1280, 720, 30, &jpeg)
                .mode(Fourcc::Yuyv, 640, 480, 30, &jpeg)
                .mode(Fourcc::Yuyv, 640, 480, 15, &jpeg)
                .plug(dir, "video0");
            VirtualCamera {
                metadata: true,
                ..VirtualCamera::new("Kiosk HD Camera", BUS)
            }
            .plug(dir, "video1");
            let cameras = enumerate(dir);
            assert_eq!(cameras.len(), 1, "{cameras:?}");
            let camera = &cameras[0];
            assert_eq!(camera.node, dir.join("video0"));
            assert_eq!(camera.card, "Kiosk HD Camera");
            assert_eq!(camera.modes.len(), 4, "{:?}", camera.modes);
            assert!(camera
                .modes
                .iter()
                .any(|m| m.fourcc == Fourcc::Yuyv && m.fps == 15));

            let listed = UvcProvider::with_dev_dir(dir, Wanted::default()).list();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].id, ID);
            assert_eq!(listed[0].driver, "uvc");
            assert!(listed[0].capabilities.image);
            assert!(!listed[0].capabilities.infrared);
        },
    );
}

#[test]
fn an_mjpeg_camera_streams_decoded_rgb_frames() {
    with_emulator("an_mjpeg_camera_streams_decoded_rgb_frames", |dir| {
        let jpeg = payload(dir, "card.jpg", &test_card_jpeg());
        VirtualCamera::new("Kiosk HD Camera", BUS)
            .mode(Fourcc::Yuyv, 640, 480, 30, &jpeg)
            .mode(Fourcc::Mjpeg, 640, 480, 30, &jpeg)
            .mode(Fourcc::Mjpeg, 320, 240, 30, &jpeg)
            .plug(dir, "video0");
        let provider = UvcProvider::with_dev_dir(dir, Wanted::default());
        let mut camera = provider.open(ID).unwrap();
        let first = one_frame(camera.as_mut());
        let second = one_frame(camera.as_mut());
        for frame in [&first, &second] {
            assert_eq!(
                (frame.width, frame.height, frame.format),
                (640, 480, PixelFormat::Rgb8)
            );
            assert!(!frame.infrared);
            let [r, _, b] = rgb_at(frame, 100, 240);
            assert!(r > 180 && b < 70, "left half is red: {r} {b}");
            let [r, _, b] = rgb_at(frame, 540, 240);
            assert!(b > 180 && r < 70, "right half is blue: {r} {b}");
        }
        assert!(
            second.captured_at > first.captured_at,
            "each capture is a newer frame"
        );
    });
}

#[test]
fn a_yuyv_camera_streams_converted_rgb_frames() {
    with_emulator("a_yuyv_camera_streams_converted_rgb_frames", |dir| {
        // Top half white (Y 235), bottom half black (Y 16), no colour (U = V = 128).
        let mut yuyv = Vec::with_capacity(640 * 480 * 2);
        for y in 0..480 {
            let luma = if y < 240 { 235 } else { 16 };
            for _ in 0..320 {
                yuyv.extend_from_slice(&[luma, 128, luma, 128]);
            }
        }
        let raw = payload(dir, "frame.yuyv", &yuyv);
        VirtualCamera::new("Door Camera", BUS)
            .mode(Fourcc::Yuyv, 640, 480, 30, &raw)
            .plug(dir, "video2");
        let provider = UvcProvider::with_dev_dir(dir, Wanted::default());
        let mut camera = provider.open(ID).unwrap();
        let frame = one_frame(camera.as_mut());
        assert_eq!(
            (frame.width, frame.height, frame.format),
            (640, 480, PixelFormat::Rgb8)
        );
        assert!(rgb_at(&frame, 10, 10).iter().all(|&v| v >= 254));
        assert!(rgb_at(&frame, 10, 470).iter().all(|&v| v <= 1));
    });
}

#[test]
fn an_infrared_camera_streams_grey_frames_marked_infrared() {
    with_emulator(
        "an_infrared_camera_streams_grey_frames_marked_infrared",
        |dir| {
            let grey: Vec<u8> = (0..640 * 360).map(|i| (i % 640 / 3) as u8).collect();
            let raw = payload(dir, "frame.grey", &grey);
            let jpeg = payload(dir, "card.jpg", &test_card_jpeg());
            VirtualCamera::new("Door IR Camera", BUS)
                .mode(Fourcc::Mjpeg, 640, 480, 30, &jpeg)
                .mode(Fourcc::Grey, 640, 360, 30, &raw)
                .plug(dir, "video0");
            let frame = one_infrared_frame(dir);
            assert_eq!(
                (frame.width, frame.height, frame.format),
                (640, 360, PixelFormat::Gray8)
            );
            assert!(frame.infrared);
            assert_eq!(frame.data, grey);
        },
    );
}

#[test]
fn a_y16_infrared_camera_streams_sixteen_bit_frames() {
    with_emulator("a_y16_infrared_camera_streams_sixteen_bit_frames", |dir| {
        let y16: Vec<u8> = (0..320u32 * 240)
            .flat_map(|i| ((i % 320) as u16 * 200).to_le_bytes())
            .collect();
        let raw = payload(dir, "frame.y16", &y16);
        VirtualCamera::new("Depth IR", BUS)
            .mode(Fourcc::Y16, 320, 240, 30, &raw)
            .plug(dir, "video0");
        let frame = one_infrared_frame(dir);
        assert_eq!(
            (frame.width, frame.height, frame.format),
            (320, 240, PixelFormat::Gray16)
        );
        assert!(frame.infrared);
        assert_eq!(frame.data, y16);
    });
}

#[test]
fn an_unplugged_camera_is_reported_and_found_again_under_another_node() {
    with_emulator(
        "an_unplugged_camera_is_reported_and_found_again_under_another_node",
        |dir| {
            let jpeg = payload(dir, "card.jpg", &test_card_jpeg());
            let camera_in_port_3 =
                VirtualCamera::new("Kiosk HD Camera", BUS).mode(Fourcc::Mjpeg, 640, 480, 30, &jpeg);
            let node = camera_in_port_3.plug(dir, "video0");
            let provider = UvcProvider::with_dev_dir(dir, Wanted::default());
            let mut camera = provider.open(ID).unwrap();
            one_frame(camera.as_mut());

            std::fs::remove_file(node).unwrap();
            let err = loop {
                match camera.capture(&CancelToken::new(), Duration::from_secs(1)) {
                    Ok(_) => continue, // frames taken before the unplug
                    Err(e) => break e,
                }
            };
            assert!(
                matches!(
                    &err,
                    CaptureError::Fault {
                        kind: FaultKind::Disconnected,
                        ..
                    }
                ),
                "{err:?}"
            );
            let message = err.to_string();
            assert!(
                message.contains(ID) && message.contains("camera lost"),
                "{message}"
            );

            // Replugged into the same port, the kernel may hand out another node number.
            camera_in_port_3.plug(dir, "video4");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match camera.capture(&CancelToken::new(), Duration::from_secs(2)) {
                    Ok(Sample::Video(frames)) => {
                        assert_eq!(frames[0].width, 640);
                        break;
                    }
                    Ok(other) => panic!("{other:?}"),
                    Err(e) => assert!(Instant::now() < deadline, "not recovered: {e}"),
                }
            }
        },
    );
}

#[test]
fn cameras_plugged_in_and_out_later_are_reported() {
    with_emulator("cameras_plugged_in_and_out_later_are_reported", |dir| {
        let provider = UvcProvider::with_dev_dir(dir, Wanted::default());
        let (tx, rx) = std::sync::mpsc::channel();
        provider.watch(tx).unwrap();
        let jpeg = payload(dir, "card.jpg", &test_card_jpeg());
        let node = VirtualCamera::new("Kiosk HD Camera", BUS)
            .mode(Fourcc::Mjpeg, 640, 480, 30, &jpeg)
            .plug(dir, "video0");
        let wait = apg_camera::uvc::RESCAN * 3;
        match rx.recv_timeout(wait).unwrap() {
            HotplugEvent::Arrived(info) => assert_eq!(info.id, ID),
            other => panic!("{other:?}"),
        }
        std::fs::remove_file(node).unwrap();
        match rx.recv_timeout(wait).unwrap() {
            HotplugEvent::Left { id } => assert_eq!(id, ID),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn a_hung_camera_times_out_and_closing_it_does_not_hang() {
    with_emulator(
        "a_hung_camera_times_out_and_closing_it_does_not_hang",
        |dir| {
            let jpeg = payload(dir, "card.jpg", &test_card_jpeg());
            VirtualCamera {
                stall_after: Some(5),
                ..VirtualCamera::new("Kiosk HD Camera", BUS).mode(
                    Fourcc::Mjpeg,
                    640,
                    480,
                    30,
                    &jpeg,
                )
            }
            .plug(dir, "video0");
            let mut camera = UvcProvider::with_dev_dir(dir, Wanted::default())
                .open(ID)
                .unwrap();
            one_frame(camera.as_mut());
            // The newest of the five frames may still wait in the slot; then nothing comes.
            let mut frames = 1;
            let err = loop {
                match camera.capture(&CancelToken::new(), Duration::from_millis(500)) {
                    Ok(_) => frames += 1,
                    Err(e) => break e,
                }
            };
            assert!(
                frames <= 5,
                "{frames} frames from a camera that hung after 5"
            );
            assert!(matches!(err, CaptureError::Timeout { .. }), "{err:?}");
            let start = Instant::now();
            drop(camera);
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "closing took {:?}",
                start.elapsed()
            );
        },
    );
}
