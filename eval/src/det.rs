//! DET curve plot written as PNG: FMR on the x axis, FNMR on the y axis, both log10 from
//! 1e-4 to 1 (grid line at every decade); one coloured polyline per system.

use std::path::Path;

use anyhow::{Context, Result};

const W: usize = 640;
const H: usize = 640;
const M: usize = 40;
const DECADES: f64 = 4.0;

/// Colours of the curves, in the order given (red, blue, green, orange, purple).
pub const COLOURS: [[u8; 3]; 5] = [
    [220, 30, 30],
    [30, 70, 220],
    [20, 150, 40],
    [240, 140, 0],
    [140, 40, 160],
];

fn to_px(v: f64, size: usize) -> f64 {
    let l = v.max(10f64.powf(-DECADES)).log10();
    (l + DECADES) / DECADES * (size - 2 * M) as f64
}

pub fn write(path: &Path, curves: &[(&str, crate::metrics::Curve)]) -> Result<()> {
    let mut img = vec![255u8; W * H * 3];
    let put = |img: &mut [u8], x: i64, y: i64, c: [u8; 3]| {
        if x >= 0 && y >= 0 && (x as usize) < W && (y as usize) < H {
            let i = (y as usize * W + x as usize) * 3;
            img[i..i + 3].copy_from_slice(&c);
        }
    };
    // Grid and frame.
    for d in 0..=DECADES as usize {
        let p = (d as f64 / DECADES * (W - 2 * M) as f64) as i64;
        for t in 0..(W - 2 * M) as i64 {
            let c = if d == 0 || d == DECADES as usize {
                [0, 0, 0]
            } else {
                [200, 200, 200]
            };
            put(&mut img, M as i64 + p, (H - M) as i64 - t, c);
            put(&mut img, M as i64 + t, (H - M) as i64 - p, c);
        }
    }
    // Diagonal FMR = FNMR (EER line).
    for t in 0..(W - 2 * M) as i64 {
        if t % 6 < 3 {
            put(&mut img, M as i64 + t, (H - M) as i64 - t, [150, 150, 150]);
        }
    }
    for (k, (_, c)) in curves.iter().enumerate() {
        let col = COLOURS[k % COLOURS.len()];
        let pts: Vec<(f64, f64)> = c
            .iter()
            .map(|&(_, fmr, fnmr)| (M as f64 + to_px(fmr, W), (H - M) as f64 - to_px(fnmr, H)))
            .collect();
        for w in pts.windows(2) {
            let (a, b) = (w[0], w[1]);
            let n = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
            for s in 0..=n {
                let t = s as f64 / n as f64;
                let (x, y) = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    put(&mut img, x as i64 + dx, y as i64 + dy, col);
                }
            }
        }
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), W as u32, H as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc
        .write_header()
        .with_context(|| format!("writing {}", path.display()))?;
    wr.write_image_data(&img)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
