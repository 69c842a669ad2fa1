//! Replays the recorded traffic of real readers and checks transfers and images.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use apg_device::CancelToken;
use apg_fp_usb::recording::read_pcapng;
use apg_fp_usb::replay::ReplayTransport;
use apg_fp_usb::uru4000::Uru4000;

fn recordings() -> PathBuf {
    let base = std::env::var_os("APG_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let dir = base.join("data/usb-recordings");
    assert!(
        dir.is_dir(),
        "{} is missing: set APG_SHARED_DIR to the shared data directory",
        dir.display()
    );
    dir
}

fn load_png_gray(path: &PathBuf) -> (u32, u32, Vec<u8>) {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = png::Decoder::new(f).read_info().expect("png header");
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).expect("png frame");
    let ch = info.color_type.samples();
    let px = buf[..info.buffer_size()].chunks(ch).map(|c| c[0]).collect();
    (info.width, info.height, px)
}

fn ncc(a: &[u8], b: &[u8]) -> f64 {
    let n = a.len() as f64;
    let ma = a.iter().map(|&x| x as f64).sum::<f64>() / n;
    let mb = b.iter().map(|&x| x as f64).sum::<f64>() / n;
    let (mut s, mut sa, mut sb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        s += dx * dy;
        sa += dx * dx;
        sb += dy * dy;
    }
    s / (sa * sb).sqrt()
}

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
    let (w, h, want) = load_png_gray(&dir.join("capture.png"));
    assert_eq!((img.width, img.height), (w, h));
    let diff = img.pixels.iter().zip(&want).filter(|(a, b)| a != b).count();
    let score = ncc(&img.pixels, &want);
    eprintln!(
        "uru4000-4500: {diff} differing pixels, NCC {score:.4}, recorded capture {:?}, host {:?}",
        dev.transport().recorded_span(),
        host
    );
    assert_eq!(diff, 0, "image differs from capture.png (NCC {score:.4})");
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
