//! Replays the NEXT Biometrics NB-1010-U recording (umockdev ioctl format) through the driver.

mod common;

use std::time::{Duration, Instant};

use apg_device::{CancelToken, CaptureError, FaultKind};
use apg_fp_usb::nb1010::Nb1010;
use apg_fp_usb::recording::Transfer;
use apg_fp_usb::replay::ReplayTransport;
use apg_fp_usb::umockdev::read_ioctl;
use common::{assert_matches_capture, recordings};

fn recorded() -> Vec<Transfer> {
    read_ioctl(&recordings().join("nb1010/capture.ioctl")).expect("recording parses")
}

fn driver(transfers: Vec<Transfer>) -> Nb1010<ReplayTransport> {
    Nb1010::new("nb1010-replay", ReplayTransport::new(transfers)).with_poll_interval(Duration::ZERO)
}

fn capture(
    dev: &mut Nb1010<ReplayTransport>,
) -> Result<apg_device::FingerprintImage, CaptureError> {
    dev.capture_image(&CancelToken::new(), Duration::from_secs(10))
}

#[test]
fn nb1010_replay_matches_capture_png() {
    let transfers = recorded();
    let total = transfers.len();
    let mut dev = driver(transfers);
    let start = Instant::now();
    let img = capture(&mut dev).expect("capture succeeds");
    let host = start.elapsed();
    assert_eq!(
        dev.transport().remaining(),
        0,
        "driver skipped recorded transfers"
    );
    assert_eq!(img.dpi, 385);
    assert_matches_capture(
        "nb1010",
        &img,
        &format!(
            "{total} transfers replayed, recorded capture time unknown (umockdev ioctl \
             recordings carry no timestamps; recorded_span() = {:?}), host {host:?}",
            dev.transport().recorded_span()
        ),
    );
    dev.release().expect("release");
}

/// Index of the first recorded transfer that is a 540-byte image chunk.
fn first_chunk(t: &[Transfer]) -> usize {
    t.iter()
        .position(|t| t.in_data.len() == 540)
        .expect("image chunks")
}

#[test]
fn nb1010_unplug_mid_capture_is_a_clear_disconnect() {
    let transfers = recorded();
    // Unplug after the commands and ten image chunks.
    let cut = first_chunk(&transfers) + 10;
    let mut dev = Nb1010::new(
        "nb1010-replay",
        ReplayTransport::new(transfers).unplug_after(cut),
    );
    let err = capture(&mut dev).expect_err("unplugged");
    assert!(err.is_disconnect(), "{err}");
    let text = err.to_string();
    assert!(text.contains("nb1010-replay"), "{text}");
    assert!(text.contains("reading image chunk 11 of 90"), "{text}");
}

fn with_chunk_status(status: i32) -> CaptureError {
    let mut transfers = recorded();
    let i = first_chunk(&transfers) + 5;
    transfers[i].status = status;
    capture(&mut driver(transfers)).expect_err("the image read fails")
}

#[test]
fn nb1010_stall_babble_timeout_are_clear_faults() {
    for (status, words) in [(-32, "stalled"), (-75, "babble"), (-110, "timed out")] {
        let err = with_chunk_status(status);
        let text = err.to_string();
        assert!(
            text.contains("nb1010-replay") && text.contains("reading image chunk 6 of 90"),
            "{text}"
        );
        assert!(text.contains(words), "status {status}: {text}");
        assert!(!err.is_disconnect(), "{text}");
    }
}

#[test]
fn nb1010_stall_on_the_finger_check_names_the_step() {
    let mut transfers = recorded();
    transfers[1].status = -32;
    let err = capture(&mut driver(transfers)).expect_err("stall");
    let text = err.to_string();
    assert!(
        text.contains("waiting for a finger") && text.contains("stalled"),
        "{text}"
    );
}

#[test]
fn nb1010_oversized_chunk_is_babble_and_short_chunk_is_invalid_data() {
    let mut transfers = recorded();
    let i = first_chunk(&transfers);
    transfers[i].in_data.push(0);
    let err = capture(&mut driver(transfers)).expect_err("babble");
    assert!(err.to_string().contains("babble"), "{err}");

    let mut transfers = recorded();
    let i = first_chunk(&transfers) + 89;
    transfers[i].in_data.truncate(100);
    let err = capture(&mut driver(transfers)).expect_err("truncated");
    let text = err.to_string();
    assert_eq!(kind_of(&err), Some(FaultKind::InvalidData), "{text}");
    assert!(
        text.contains("chunk 90 of 90") && text.contains("100 bytes"),
        "{text}"
    );
}

fn kind_of(err: &CaptureError) -> Option<FaultKind> {
    match err {
        CaptureError::Fault { kind, .. } => Some(*kind),
        _ => None,
    }
}

#[test]
fn nb1010_garbage_replies_are_protocol_errors() {
    // A truncated finger-check reply.
    let mut transfers = recorded();
    transfers[1].in_data.truncate(5);
    let err = capture(&mut driver(transfers)).expect_err("short");
    assert_eq!(kind_of(&err), Some(FaultKind::InvalidData), "{err}");
    assert!(err.to_string().contains("reply of 5 bytes"), "{err}");
    // An image chunk arriving out of order (chunks 3 and 4 swapped).
    let mut transfers = recorded();
    let i = first_chunk(&transfers) + 2;
    transfers.swap(i, i + 1);
    let err = capture(&mut driver(transfers)).expect_err("order");
    assert_eq!(kind_of(&err), Some(FaultKind::Protocol), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("chunk 3 of 90") && text.contains("line 7"),
        "{text}"
    );
    // A wrong acknowledgement to the capture command.
    let mut transfers = recorded();
    transfers[5].in_data[1] = 0x99;
    let err = capture(&mut driver(transfers)).expect_err("ack");
    assert_eq!(kind_of(&err), Some(FaultKind::Protocol), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("starting the capture") && text.contains("99"),
        "{text}"
    );
    // A reply that does not echo the command's sequence byte.
    let mut transfers = recorded();
    transfers[3].in_data[2] = 0x07;
    let err = capture(&mut driver(transfers)).expect_err("seq");
    assert_eq!(kind_of(&err), Some(FaultKind::Protocol), "{err}");
    assert!(err.to_string().contains("preparing the capture"), "{err}");
}

/// A finger-check exchange answering `level`, built from the recorded one.
fn finger_check(recorded: &[Transfer], level: u8) -> [Transfer; 2] {
    let mut reply = recorded[1].clone();
    reply.in_data[12] = level;
    [recorded[0].clone(), reply]
}

#[test]
fn nb1010_waits_for_a_finger_then_for_it_to_lift_before_the_next_capture() {
    let rec = recorded();
    // Capture 1: two empty readings, then the recorded session.
    let mut t: Vec<Transfer> = Vec::new();
    t.extend(finger_check(&rec, 0x05));
    t.extend(finger_check(&rec, 0x30));
    t.extend(rec.iter().cloned());
    // Capture 2: the finger is still down twice, lifts, and comes back.
    t.extend(finger_check(&rec, 0xf7));
    t.extend(finger_check(&rec, 0x80));
    t.extend(finger_check(&rec, 0x10));
    t.extend(rec.iter().cloned());
    let mut dev = driver(t);
    let first = capture(&mut dev).expect("first capture");
    let second = capture(&mut dev).expect("second capture");
    assert_eq!(dev.transport().remaining(), 0);
    assert_eq!(first.pixels, second.pixels);
    // A third capture with the finger never lifted times out instead of repeating the touch.
    let mut t: Vec<Transfer> = rec.clone();
    for _ in 0..200 {
        t.extend(finger_check(&rec, 0xf7));
    }
    let mut dev = driver(t).with_poll_interval(Duration::from_millis(5));
    capture(&mut dev).expect("capture");
    let err = dev
        .capture_image(&CancelToken::new(), Duration::from_millis(20))
        .expect_err("finger never lifted");
    assert!(matches!(err, CaptureError::Timeout { .. }), "{err}");
}

#[test]
fn nb1010_cancel_stops_the_finger_wait() {
    let cancel = CancelToken::new();
    cancel.cancel();
    let mut dev = driver(recorded());
    let err = dev
        .capture_image(&cancel, Duration::from_secs(10))
        .expect_err("cancelled");
    assert!(matches!(err, CaptureError::Cancelled { .. }), "{err}");
}
