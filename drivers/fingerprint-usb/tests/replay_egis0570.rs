//! Replays the recorded traffic of an EgisTec 0570 (1c7a:0570) and checks transfers, image and
//! error paths.

mod common;

use std::time::{Duration, Instant};

use apg_device::{CancelToken, CaptureError, FaultKind};
use apg_fp_usb::egis0570::Egis0570;
use apg_fp_usb::recording::{device_address, read_pcapng_device, Kind, Transfer};
use apg_fp_usb::replay::ReplayTransport;
use common::{assert_matches_capture, recordings};

const ID: &str = "egis0570-replay";

/// The reader's transfers. The bus carried other devices too, so only the reader's address
/// (from `device`) is kept. The two standard GET_STATUS requests (80 00) on endpoint 0 are
/// excluded: the kernel's hub driver issues them when it resumes the runtime-suspended device
/// (one at the start of the recording, one when the reference opened it); no driver sends them.
fn transfers() -> Vec<Transfer> {
    let dir = recordings().join("egis0570");
    let addr = device_address(&dir.join("device")).expect("device file names the address");
    let all = read_pcapng_device(&dir.join("capture.pcapng"), Some(addr)).expect("parses");
    let before = all.len();
    let kept: Vec<Transfer> = all
        .into_iter()
        .filter(|t| !(t.kind == Kind::Control && t.setup.is_some_and(|s| s[..2] == [0x80, 0x00])))
        .collect();
    assert_eq!(
        before - kept.len(),
        2,
        "expected exactly two kernel GET_STATUS"
    );
    kept
}

fn image_reads(t: &mut [Transfer]) -> impl Iterator<Item = &mut Transfer> {
    t.iter_mut()
        .filter(|t| t.kind == Kind::Bulk && t.endpoint == 0x83 && t.in_data.len() > 7)
}

fn capture(t: Vec<Transfer>) -> Result<apg_device::FingerprintImage, CaptureError> {
    Egis0570::new(ID, ReplayTransport::new(t))
        .capture_image(&CancelToken::new(), Duration::from_secs(30))
}

#[test]
fn egis0570_replay_matches_capture_png() {
    let t = transfers();
    let mut dev = Egis0570::new(ID, ReplayTransport::new(t));
    let start = Instant::now();
    let img = dev
        .capture_image(&CancelToken::new(), Duration::from_secs(30))
        .expect("capture succeeds");
    let host = start.elapsed();
    assert_eq!(
        dev.transport().remaining(),
        0,
        "driver skipped recorded transfers"
    );
    assert_eq!(img.dpi, 500);
    assert_matches_capture(
        "egis0570",
        &img,
        &format!(
            "recorded capture {:?}, host {host:?}",
            dev.transport().recorded_span()
        ),
    );
}

#[test]
fn egis0570_stall_babble_timeout_on_an_image_read_are_clear_faults() {
    for (status, words) in [(-32, "stalled"), (-75, "babble"), (-110, "timed out")] {
        let mut t = transfers();
        // The 40th read: the finger is on the sensor.
        image_reads(&mut t).nth(40).expect("read").status = status;
        let err = capture(t).expect_err("the read fails");
        let text = err.to_string();
        assert!(
            text.contains(ID) && text.contains("reading the image frames"),
            "{text}"
        );
        assert!(text.contains(words), "status {status}: {text}");
        assert!(!err.is_disconnect(), "{text}");
    }
}

#[test]
fn egis0570_stall_on_a_command_names_the_step() {
    let mut t = transfers();
    t.iter_mut()
        .find(|t| t.kind == Kind::Bulk && t.endpoint == 0x04)
        .expect("first command")
        .status = -32;
    let err = capture(t).expect_err("stall");
    let text = err.to_string();
    assert!(
        text.contains("configuring the sensor") && text.contains("stalled"),
        "{text}"
    );
}

#[test]
fn egis0570_babble_from_an_oversized_read() {
    let mut t = transfers();
    image_reads(&mut t).nth(3).expect("read").in_data.push(0);
    let err = capture(t).expect_err("babble");
    assert!(err.to_string().contains("babble"), "{err}");
}

#[test]
fn egis0570_truncated_read_is_invalid_data() {
    let mut t = transfers();
    image_reads(&mut t)
        .nth(45)
        .expect("read")
        .in_data
        .truncate(20_000);
    let err = capture(t).expect_err("short read");
    assert!(
        matches!(
            err,
            CaptureError::Fault {
                kind: FaultKind::InvalidData,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("20000 of 32512"), "{err}");
}

#[test]
fn egis0570_garbage_answer_is_a_protocol_error() {
    let mut t = transfers();
    let answer = t
        .iter_mut()
        .find(|t| t.kind == Kind::Bulk && t.endpoint == 0x83)
        .expect("first answer");
    answer.in_data = b"XXXX\x20\x3f\x01".to_vec();
    let err = capture(t).expect_err("garbage");
    assert!(
        matches!(
            err,
            CaptureError::Fault {
                kind: FaultKind::Protocol,
                ..
            }
        ),
        "{err}"
    );
    let mut t = transfers();
    t.iter_mut()
        .find(|t| t.kind == Kind::Bulk && t.endpoint == 0x83)
        .expect("first answer")
        .in_data
        .clear();
    let err = capture(t).expect_err("empty answer");
    assert!(err.to_string().contains("0 bytes"), "{err}");
}

#[test]
fn egis0570_unplug_mid_capture_is_a_clear_disconnect() {
    // 46 command transfers of the session set-up, then 8 per read: cut inside the
    // presentation (the finger arrives around read 38).
    for cut in [5, 46 + 8 * 42 + 3, 46 + 8 * 45 + 7] {
        let replay = ReplayTransport::new(transfers()).unplug_after(cut);
        let mut dev = Egis0570::new(ID, replay);
        let err = dev
            .capture_image(&CancelToken::new(), Duration::from_secs(30))
            .expect_err("unplugged");
        assert!(err.is_disconnect(), "cut {cut}: {err}");
        assert!(err.to_string().contains(ID), "{err}");
    }
}

#[test]
fn egis0570_timeout_and_cancel_are_honoured_while_waiting() {
    let err = Egis0570::new(ID, ReplayTransport::new(transfers()))
        .capture_image(&CancelToken::new(), Duration::ZERO)
        .expect_err("no time");
    assert!(matches!(err, CaptureError::Timeout { .. }), "{err}");
    let cancel = CancelToken::new();
    cancel.cancel();
    let err = Egis0570::new(ID, ReplayTransport::new(transfers()))
        .capture_image(&cancel, Duration::from_secs(30))
        .expect_err("cancelled");
    assert!(matches!(err, CaptureError::Cancelled { .. }), "{err}");
}
