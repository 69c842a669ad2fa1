//! Replays the recorded traffic of a UPEK TouchChip coprocessor (147e:2016) through the
//! `upektc_img` driver: transfers, the assembled image, and the error paths.

mod common;

use std::time::{Duration, Instant};

use apg_device::{CancelToken, CaptureError, FaultKind, RetryReason};
use apg_fp_usb::recording::{device_address, read_pcapng_device, Kind, Transfer};
use apg_fp_usb::replay::ReplayTransport;
use apg_fp_usb::upektc_img::{crc16, UpektcImg};
use common::{assert_matches_capture, recordings};

const ID: &str = "upektc-replay";

fn transfers() -> Vec<Transfer> {
    let dir = recordings().join("upektc_img");
    let addr = device_address(&dir.join("device")).expect("device file");
    read_pcapng_device(&dir.join("capture.pcapng"), Some(addr)).expect("recording parses")
}

fn run(t: Vec<Transfer>) -> Result<apg_device::FingerprintImage, CaptureError> {
    let mut dev = UpektcImg::new(ID, ReplayTransport::new(t));
    dev.capture_image(&CancelToken::new(), Duration::from_secs(30))
}

/// Index of the `n`th bulk IN transfer whose payload satisfies `f`.
fn nth_in(t: &[Transfer], n: usize, f: impl Fn(&[u8]) -> bool) -> usize {
    t.iter()
        .enumerate()
        .filter(|(_, x)| x.kind == Kind::Bulk && x.endpoint == 0x81 && f(&x.in_data))
        .nth(n)
        .map(|(i, _)| i)
        .expect("recording holds such a transfer")
}

/// Image frame headers: type 0x00 with an image sub-type at byte 7.
fn is_frame_head(d: &[u8]) -> bool {
    d.len() == 64 && d[4] == 0 && matches!(d[7], 0x2c | 0x24 | 0x20)
}

fn fault_kind(e: &CaptureError) -> Option<FaultKind> {
    match e {
        CaptureError::Fault { kind, .. } => Some(*kind),
        _ => None,
    }
}

#[test]
fn upektc_img_replay_matches_capture_png() {
    let mut dev = UpektcImg::new(ID, ReplayTransport::new(transfers()));
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
    dev.release().expect("release");
    assert_eq!(img.dpi, 500);
    assert_matches_capture(
        "upektc_img",
        &img,
        &format!(
            "recorded capture {:?}, host {host:?}",
            dev.transport().recorded_span()
        ),
    );
}

#[test]
fn upektc_img_unplug_mid_capture_is_a_clear_disconnect() {
    // 12 transfers set the session up; 40 is in the middle of the image frames.
    for n in [3, 16, 40] {
        let replay = ReplayTransport::new(transfers()).unplug_after(n);
        let mut dev = UpektcImg::new(ID, replay);
        let err = dev
            .capture_image(&CancelToken::new(), Duration::from_secs(30))
            .expect_err("unplugged");
        assert!(err.is_disconnect(), "after {n}: {err}");
        assert!(err.to_string().contains(ID), "{err}");
    }
}

#[test]
fn upektc_img_stall_babble_timeout_on_an_image_frame_are_clear_faults() {
    for (status, words) in [(-32, "stalled"), (-75, "babble"), (-110, "timed out")] {
        let mut t = transfers();
        let i = nth_in(&t, 5, is_frame_head);
        t[i].status = status;
        let err = run(t).expect_err("the frame transfer fails");
        let text = err.to_string();
        assert!(
            text.contains(ID) && text.contains("reading the image"),
            "{text}"
        );
        assert!(text.contains(words), "status {status}: {text}");
        assert_eq!(fault_kind(&err), Some(FaultKind::Io), "{text}");
    }
}

#[test]
fn upektc_img_stall_during_setup_names_the_step() {
    let mut t = transfers();
    let i = t
        .iter()
        .position(|x| x.kind == Kind::Control)
        .expect("vendor request");
    t[i].status = -32;
    let err = run(t).expect_err("stall");
    let text = err.to_string();
    assert!(
        text.contains("waking the coprocessor") && text.contains("stalled"),
        "{text}"
    );
}

#[test]
fn upektc_img_babble_from_an_oversized_answer() {
    let mut t = transfers();
    let i = nth_in(&t, 2, is_frame_head);
    t[i].in_data.push(0);
    let err = run(t).expect_err("babble");
    assert!(err.to_string().contains("babble"), "{err}");
}

#[test]
fn upektc_img_bad_crc_is_invalid_data() {
    let mut t = transfers();
    let i = nth_in(&t, 3, |d| d.len() > 64);
    t[i].in_data[100] ^= 0x55;
    let err = run(t).expect_err("corrupt frame");
    assert_eq!(fault_kind(&err), Some(FaultKind::InvalidData), "{err}");
    assert!(err.to_string().contains("CRC"), "{err}");
}

#[test]
fn upektc_img_short_header_is_invalid_data() {
    let mut t = transfers();
    let i = nth_in(&t, 1, is_frame_head);
    t[i].in_data.truncate(5);
    let err = run(t).expect_err("short answer");
    assert_eq!(fault_kind(&err), Some(FaultKind::InvalidData), "{err}");
    assert!(
        err.to_string().contains("shorter than a frame header"),
        "{err}"
    );
}

#[test]
fn upektc_img_truncated_or_garbage_answers_never_panic() {
    let base = transfers();
    let ins: Vec<usize> = (0..base.len())
        .filter(|&i| base[i].kind == Kind::Bulk && base[i].endpoint == 0x81)
        .collect();
    for &i in &ins {
        let d = &base[i].in_data;
        // Cut inside the frame proper (answers are padded to 64 bytes, so cutting padding
        // is harmless): one byte short, half, and inside the header.
        let end = if d.get(..4) == Some(b"Ciao") && d.len() >= 7 {
            (7 + ((usize::from(d[5] & 0x0f) << 8) | usize::from(d[6])) + 2).min(d.len())
        } else {
            d.len()
        };
        for keep in [end - 1, end / 2, 5, 1] {
            let mut t = base.clone();
            t[i].in_data.truncate(keep);
            assert!(
                run(t).is_err(),
                "transfer {i} cut to {keep} bytes was accepted"
            );
        }
        let mut t = base.clone();
        for (k, b) in t[i].in_data.iter_mut().enumerate().skip(4) {
            *b = (k as u8).wrapping_mul(37) ^ 0xa5;
        }
        assert!(run(t).is_err(), "garbage in transfer {i} was accepted");
    }
}

#[test]
fn upektc_img_too_short_scan_asks_for_a_retry() {
    // The "finger present" status answer, rewritten to "scan too short" with a fresh CRC.
    let mut t = transfers();
    let i = nth_in(&t, 0, |d| {
        d.len() == 64 && d[4] == 0 && d[7] == 0x28 && d[8] == 0x11 && d[18] == 0x00
    });
    let d = &mut t[i].in_data;
    d[18] = 0x1e;
    let total = 7 + 0x14 + 2;
    let crc = crc16(&d[4..total - 2]).to_le_bytes();
    d[total - 2..total].copy_from_slice(&crc);
    let err = run(t).expect_err("retry");
    assert!(
        matches!(
            err,
            CaptureError::Retry {
                reason: RetryReason::TooShort,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn upektc_img_cancel_before_a_finger_is_cancelled() {
    let cancel = CancelToken::new();
    cancel.cancel();
    let mut dev = UpektcImg::new(ID, ReplayTransport::new(transfers()));
    let err = dev
        .capture_image(&cancel, Duration::from_secs(30))
        .expect_err("cancelled");
    assert!(matches!(err, CaptureError::Cancelled { .. }), "{err}");
    assert!(err.to_string().contains(ID), "{err}");
}

#[test]
fn upektc_img_capture_timeout_while_waiting_for_a_finger() {
    let mut dev = UpektcImg::new(ID, ReplayTransport::new(transfers()));
    let err = dev
        .capture_image(&CancelToken::new(), Duration::ZERO)
        .expect_err("no time to wait");
    assert!(matches!(err, CaptureError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains(ID), "{err}");
}
