//! Replays the recorded session of a Microsoft Fingerprint Reader v2 (045e:00ca) through the
//! U.are.U 4000 family driver: the AES challenge-response at power-up, the scrambled image and
//! its orientation must all match the real device and capture.png.

use std::time::{Duration, Instant};

use apg_device::{CancelToken, CaptureError};
use apg_fp_usb::recording::{Kind, Transfer};
use apg_fp_usb::replay::ReplayTransport;
use apg_fp_usb::uru4000::{recorded_nonce, Uru4000, MSV2};

mod common;
use common::{assert_matches_capture, transfers};

const NAME: &str = "uru4000-msv2";

fn driver(
    t: Vec<Transfer>,
    replay: impl FnOnce(ReplayTransport) -> ReplayTransport,
) -> Uru4000<ReplayTransport> {
    let seed = recorded_nonce(&t).expect("recording holds the scramble challenge");
    Uru4000::with_variant("msv2-replay", replay(ReplayTransport::new(t)), MSV2)
        .with_seed_source(move || seed)
}

fn capture(
    dev: &mut Uru4000<ReplayTransport>,
) -> Result<apg_device::FingerprintImage, CaptureError> {
    dev.capture_image(&CancelToken::new(), Duration::from_secs(30))
}

#[test]
fn msv2_replay_matches_capture_png() {
    let t = transfers(NAME);
    let mut dev = driver(t, |r| r);
    let start = Instant::now();
    let img = capture(&mut dev).expect("capture succeeds");
    let host = start.elapsed();
    assert_eq!(
        dev.transport().remaining(),
        0,
        "driver skipped recorded transfers"
    );
    assert_eq!(img.dpi, 500);
    assert_matches_capture(
        NAME,
        &img,
        &format!(
            "recorded capture {:?}, host {host:?}",
            dev.transport().recorded_span()
        ),
    );
}

#[test]
fn msv2_without_the_challenge_response_does_not_match_the_device() {
    // The 4500 profile skips the authentication and so reads hwstat again where the real
    // MSv2 session reads the challenge: the replay must refuse it.
    let t = transfers(NAME);
    let seed = recorded_nonce(&t).expect("nonce");
    let mut dev =
        Uru4000::new("msv2-replay", ReplayTransport::new(t)).with_seed_source(move || seed);
    let err = capture(&mut dev).expect_err("wrong profile");
    assert!(
        err.to_string().contains("differs from the recording"),
        "{err}"
    );
}

#[test]
fn msv2_unplug_mid_capture_is_a_clear_disconnect() {
    // 13 transfers bring the session to the image read (power-up with authentication, scan
    // power, device info, finger on, capture mode); the device then vanishes.
    let mut dev = driver(transfers(NAME), |r| r.unplug_after(13));
    let err = capture(&mut dev).expect_err("unplugged");
    assert!(err.is_disconnect(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("msv2-replay") && text.contains("reading the image"),
        "{text}"
    );
}

fn with_status(pick: impl Fn(&Transfer) -> bool, status: i32) -> CaptureError {
    let mut t = transfers(NAME);
    t.iter_mut()
        .find(|t| pick(t))
        .expect("transfer to fail")
        .status = status;
    capture(&mut driver(t, |r| r)).expect_err("the transfer fails")
}

fn is_image(t: &Transfer) -> bool {
    t.kind == Kind::Bulk
}

fn is_auth_challenge(t: &Transfer) -> bool {
    t.setup
        .is_some_and(|s| s[0] == 0xc0 && s[1] == 0x04 && s[2..4] == [0x10, 0x20])
}

#[test]
fn msv2_stall_babble_timeout_on_the_image_are_clear_faults() {
    for (status, words) in [(-32, "stalled"), (-75, "babble"), (-110, "timed out")] {
        let err = with_status(is_image, status);
        let text = err.to_string();
        assert!(
            text.contains("msv2-replay") && text.contains("reading the image"),
            "{text}"
        );
        assert!(text.contains(words), "status {status}: {text}");
        assert!(!err.is_disconnect(), "{text}");
    }
}

#[test]
fn msv2_stall_during_authentication_is_a_clear_fault() {
    let err = with_status(is_auth_challenge, -32);
    let text = err.to_string();
    assert!(
        text.contains("msv2-replay")
            && text.contains("authentication challenge")
            && text.contains("stalled"),
        "{text}"
    );
}

#[test]
fn msv2_truncated_image_is_invalid_data_not_a_panic() {
    for keep in [0usize, 10, 64, 64 + 384 * 100 + 17] {
        let mut t = transfers(NAME);
        let bulk = t.iter_mut().find(|t| is_image(t)).expect("image transfer");
        bulk.in_data.truncate(keep);
        let err = capture(&mut driver(t, |r| r)).expect_err("truncated");
        let text = err.to_string();
        assert!(
            matches!(
                err,
                CaptureError::Fault {
                    kind: apg_device::FaultKind::InvalidData,
                    ..
                }
            ),
            "{keep} bytes: {text}"
        );
        assert!(text.contains("retry the capture"), "{keep} bytes: {text}");
    }
}
