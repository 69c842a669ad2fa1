//! Helpers shared by the integration tests: locating the recordings, loading capture.png and
//! comparing images.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `<shared>/data/usb-recordings`, from `APG_SHARED_DIR` or the main checkout's sibling.
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

/// Width, height and the first channel of every pixel of a PNG.
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
