//! Replays the recorded traffic of real readers and checks transfers and images.

mod common;

use std::time::{Duration, Instant};

use apg_device::CancelToken;
use apg_fp_usb::recording::read_pcapng;
use apg_fp_usb::replay::ReplayTransport;
use apg_fp_usb::uru4000::Uru4000;
use common::{assert_matches_capture, recordings};

fn recorded_seed(t: &[apg_fp_usb::recording::Transfer]) -> u32 {
    apg_fp_usb::uru4000::recorded_nonce(t).expect("recording holds the scramble challenge")
}

#[test]
fn uru4000_4500_replay_matches_capture_png() {
    let dir = recordings().join("uru4000-4500");
    let transfers = read_pcapng(&dir.join("capture.pcapng")).expect("recording parses");
    let seed = recorded_seed(&transfers);
    let replay = ReplayTransport::new(transfers);
    let mut dev = Uru4000::new("uru4000-replay", replay).with_seed_source(move || seed);
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
    assert_matches_capture(
        "uru4000-4500",
        &img,
        &format!(
            "recorded capture {:?}, host {host:?}",
            dev.transport().recorded_span()
        ),
    );
}

#[test]
fn uru4000_unplug_mid_capture_is_a_clear_disconnect() {
    let dir = recordings().join("uru4000-4500");
    let transfers = read_pcapng(&dir.join("capture.pcapng")).expect("recording parses");
    let seed = recorded_seed(&transfers);
    let replay = ReplayTransport::new(transfers).unplug_after(9);
    let mut dev = Uru4000::new("uru4000-replay", replay).with_seed_source(move || seed);
    let err = dev
        .capture_image(&CancelToken::new(), Duration::from_secs(30))
        .expect_err("unplugged");
    assert!(err.is_disconnect(), "{err}");
    assert!(err.to_string().contains("uru4000-replay"), "{err}");
}

fn with_image_status(status: i32) -> apg_device::CaptureError {
    let dir = recordings().join("uru4000-4500");
    let mut transfers = read_pcapng(&dir.join("capture.pcapng")).expect("recording parses");
    let seed = recorded_seed(&transfers);
    let bulk = transfers
        .iter_mut()
        .find(|t| t.kind == apg_fp_usb::recording::Kind::Bulk)
        .expect("image transfer");
    bulk.status = status;
    let mut dev = Uru4000::new("uru4000-replay", ReplayTransport::new(transfers))
        .with_seed_source(move || seed);
    dev.capture_image(&CancelToken::new(), Duration::from_secs(30))
        .expect_err("the image transfer fails")
}

#[test]
fn uru4000_stall_babble_timeout_are_clear_faults() {
    for (status, words) in [(-32, "stalled"), (-75, "babble"), (-110, "timed out")] {
        let err = with_image_status(status);
        let text = err.to_string();
        assert!(
            text.contains("uru4000-replay") && text.contains("reading the image"),
            "{text}"
        );
        assert!(text.contains(words), "status {status}: {text}");
        assert!(!err.is_disconnect(), "{text}");
    }
}

#[test]
fn uru4000_babble_from_an_oversized_transfer() {
    let dir = recordings().join("uru4000-4500");
    let mut transfers = read_pcapng(&dir.join("capture.pcapng")).expect("recording parses");
    let seed = recorded_seed(&transfers);
    let bulk = transfers
        .iter_mut()
        .find(|t| t.kind == apg_fp_usb::recording::Kind::Bulk)
        .expect("image transfer");
    bulk.in_data.resize(64 + 384 * 291, 0);
    let mut dev = Uru4000::new("uru4000-replay", ReplayTransport::new(transfers))
        .with_seed_source(move || seed);
    let err = dev
        .capture_image(&CancelToken::new(), Duration::from_secs(30))
        .expect_err("babble");
    assert!(err.to_string().contains("babble"), "{err}");
}
