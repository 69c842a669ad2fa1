//! Helpers shared by the replay tests: locating the recordings, reading capture.png, NCC.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use apg_device::FingerprintImage;
use apg_fp_usb::recording::{device_address, read_pcapng_device, Transfer};

/// `<shared>/data/usb-recordings` (`APG_SHARED_DIR`, else the main checkout's `../shared`).
pub fn recordings() -> PathBuf {
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

/// The transfers of the reader in `<recordings>/<name>/capture.pcapng` (the bus and device
/// number come from the recording's `device` file).
pub fn transfers(name: &str) -> Vec<Transfer> {
    let dir = recordings().join(name);
    let addr = device_address(&dir.join("device")).expect("device file names the reader");
    read_pcapng_device(&dir.join("capture.pcapng"), Some(addr)).expect("recording parses")
}

/// A PNG as 8-bit gray (first channel).
pub fn load_png_gray(path: &Path) -> (u32, u32, Vec<u8>) {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = png::Decoder::new(f).read_info().expect("png header");
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).expect("png frame");
    let ch = info.color_type.samples();
    let px = buf[..info.buffer_size()].chunks(ch).map(|c| c[0]).collect();
    (info.width, info.height, px)
}

/// Normalised cross-correlation of two equally sized images.
pub fn ncc(a: &[u8], b: &[u8]) -> f64 {
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

/// Pixels that differ between two equally sized images.
pub fn differing(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

/// Asserts that `img` equals `<recordings>/<reader>/capture.png` pixel for pixel, printing the
/// differing-pixel count, the NCC and `detail` (capture times) first so a failure shows how
/// far off the image is.
pub fn assert_matches_capture(reader: &str, img: &FingerprintImage, detail: &str) {
    let (w, h, want) = load_png_gray(&recordings().join(reader).join("capture.png"));
    assert_eq!((img.width, img.height), (w, h));
    let diff = differing(&img.pixels, &want);
    let score = ncc(&img.pixels, &want);
    eprintln!("{reader}: {w}x{h}, {diff} differing pixels, NCC {score:.4}, {detail}");
    assert_eq!(diff, 0, "image differs from capture.png (NCC {score:.4})");
}
