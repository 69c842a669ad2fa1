//! Fault injection: every fault gives a clear error (or is absorbed), never a hang, and the
//! next call works.

mod common;

use std::time::{Duration, Instant};

use apg_device::{CancelToken, CaptureError};
use apg_fp_serial::emulator::Fault;
use apg_fp_serial::protocol::FrameError;
use apg_fp_serial::ErrorKind;
use common::*;

#[test]
fn garbage_before_a_packet_is_skipped() {
    let (emu, mut m) = connected();
    emu.inject(Fault::Garbage(vec![
        0x00, 0xFF, 0xEF, 0x13, 0x55, 0xAA, 0xEF,
    ]));
    assert_eq!(m.template_count().expect("resync over garbage"), 0);
    assert_eq!(m.skipped_bytes(), 7);
    assert!(!m.is_out_of_sync());
    // Garbage before an image upload's acknowledgement too.
    emu.inject(Fault::Garbage(vec![0x01; 40]));
    let img = m
        .capture_image(&CancelToken::new(), Duration::from_secs(5))
        .unwrap();
    assert!(img.pixels == quantised(1));
}

#[test]
fn wrong_checksum_is_a_clear_error_then_the_driver_recovers() {
    let (emu, mut m) = connected();
    emu.inject(Fault::CorruptChecksum);
    let e = m.template_count().expect_err("corrupt acknowledgement");
    assert!(
        matches!(e.kind, ErrorKind::Frame(FrameError::Checksum { .. })),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("checksum") && msg.contains("TemplateNum"),
        "{msg}"
    );
    assert!(msg.contains(emu.path().to_str().unwrap()), "{msg}");
    assert!(m.is_out_of_sync());
    assert_eq!(m.template_count().expect("recovered"), 0);
    assert!(!m.is_out_of_sync());
}

#[test]
fn corrupt_data_packet_fails_the_upload_but_keeps_the_stream_in_step() {
    let (emu, mut m) = connected();
    emu.inject(Fault::CorruptUploadPacket { index: 10 });
    let e = m
        .capture_image(&CancelToken::new(), Duration::from_secs(5))
        .expect_err("one data packet is damaged");
    assert!(
        matches!(e.kind, ErrorKind::Frame(FrameError::Checksum { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("UpImage"), "{e}");
    let img = m
        .capture_image(&CancelToken::new(), Duration::from_secs(5))
        .expect("next capture works");
    assert!(img.pixels == quantised(1));
}

#[test]
fn truncated_data_packet_is_reported_and_the_next_capture_works() {
    let (emu, mut m) = connected();
    emu.inject(Fault::TruncateUpload { after_packets: 100 });
    let start = Instant::now();
    let e = m
        .capture_image(&CancelToken::new(), Duration::from_secs(5))
        .expect_err("cut upload");
    assert!(start.elapsed() < Duration::from_secs(2), "no hang");
    assert!(
        matches!(e.kind, ErrorKind::Frame(FrameError::Truncated { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("cut short"), "{e}");
    assert_eq!(emu.pending_faults(), 0);
    let img = m
        .capture_image(&CancelToken::new(), Duration::from_secs(5))
        .expect("recovered");
    assert!(img.pixels == quantised(1));
}

#[test]
fn silent_module_times_out_within_the_configured_time() {
    let (emu, mut m) = connected();
    emu.inject(Fault::Silence);
    let start = Instant::now();
    let e = m.template_count().expect_err("no answer");
    let took = start.elapsed();
    assert!(took >= TIMEOUT, "waited {took:?}");
    assert!(
        took < TIMEOUT + Duration::from_millis(500),
        "waited {took:?}"
    );
    assert!(matches!(e.kind, ErrorKind::Timeout { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(emu.path().to_str().unwrap()) && msg.contains("did not answer"),
        "{msg}"
    );
    let c = e.into_capture("fp-1");
    assert!(matches!(c, CaptureError::Fault { .. }), "{c}");
    assert_eq!(m.template_count().expect("answers again"), 0);
}

#[test]
fn silent_module_during_capture_does_not_hang() {
    let (emu, mut m) = connected();
    for _ in 0..3 {
        emu.inject(Fault::Silence);
    }
    let start = Instant::now();
    let e = m
        .capture_image(&CancelToken::new(), Duration::from_secs(10))
        .expect_err("module went silent");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    assert!(matches!(e.kind, ErrorKind::Timeout { .. }), "{e}");
}

#[test]
fn reset_mid_upload_with_power_on_byte_is_reported_and_recovered() {
    let emu = emulator(apg_fp_serial::emulator::EmulatorConfig {
        password: 7,
        ..Default::default()
    });
    let mut m = open(
        &emu,
        apg_fp_serial::ModuleSettings {
            password: 7,
            ..settings()
        },
    );
    m.connect().unwrap();
    emu.inject(Fault::ResetDuringUpload {
        after_packets: 50,
        startup_byte: true,
    });
    let start = Instant::now();
    let e = m
        .capture_image(&CancelToken::new(), Duration::from_secs(5))
        .expect_err("module restarted");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(matches!(e.kind, ErrorKind::Reset), "{e}");
    assert!(e.to_string().contains("restarted"), "{e}");
    // The restarted module forgot the password: the driver verifies it again by itself.
    let img = m
        .capture_image(&CancelToken::new(), Duration::from_secs(5))
        .expect("next capture works");
    assert!(img.pixels == quantised(1));
}

#[test]
fn reset_mid_upload_without_power_on_byte_times_out_and_recovers() {
    let (emu, mut m) = connected();
    emu.inject(Fault::ResetDuringUpload {
        after_packets: 3,
        startup_byte: false,
    });
    let e = m
        .capture_image(&CancelToken::new(), Duration::from_secs(5))
        .expect_err("module stopped");
    assert!(matches!(e.kind, ErrorKind::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("UpImage"), "{e}");
    m.capture_image(&CancelToken::new(), Duration::from_secs(5))
        .expect("next capture works");
}

#[test]
fn cancel_during_finger_wait_stops_promptly() {
    let (emu, mut m) = connected();
    emu.set_finger(Some(false));
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        c2.cancel();
        Instant::now()
    });
    let e = m
        .capture_image(&cancel, Duration::from_secs(30))
        .expect_err("cancelled");
    let cancelled_at = t.join().unwrap();
    assert!(matches!(e.kind, ErrorKind::Cancelled), "{e}");
    assert!(
        cancelled_at.elapsed() < Duration::from_millis(400),
        "stopped late"
    );
    assert!(emu.gen_img_polls() > 3, "it was polling");
    assert!(matches!(
        e.into_capture("fp"),
        CaptureError::Cancelled { .. }
    ));
    emu.set_finger(None);
    m.capture_image(&CancelToken::new(), Duration::from_secs(5))
        .expect("capture after a cancel");
}

#[test]
fn no_finger_times_out_as_a_capture_timeout() {
    let (emu, mut m) = connected();
    emu.set_finger(Some(false));
    let start = Instant::now();
    let e = m
        .capture_image(&CancelToken::new(), Duration::from_millis(400))
        .expect_err("nobody there");
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(matches!(e.into_capture("fp"), CaptureError::Timeout { .. }));
}

#[test]
fn a_closed_emulator_is_a_disconnect_not_a_hang() {
    let (emu, mut m) = connected();
    drop(emu);
    let start = Instant::now();
    let e = m.template_count().expect_err("emulator gone");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(e.kind, ErrorKind::Closed | ErrorKind::Timeout { .. }),
        "{e}"
    );
}

#[test]
fn bad_acknowledgement_of_an_upload_drains_the_image_still_coming() {
    let (emu, mut m) = connected();
    m.wait_finger(&CancelToken::new(), Duration::from_secs(5))
        .unwrap();
    emu.inject(Fault::CorruptChecksum);
    let e = m.up_image().expect_err("acknowledgement damaged");
    assert!(
        matches!(e.kind, ErrorKind::Frame(FrameError::Checksum { .. })),
        "{e}"
    );
    // The module goes on sending 288 data packets; the next call must not take them for its
    // answer.
    assert_eq!(m.template_count().expect("drained and resynchronised"), 0);
    let p = m.read_system_parameters().expect("in step");
    assert_eq!(p.packet_size, 128);
}
