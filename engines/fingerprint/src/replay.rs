//! Replay detection: real fingers never produce the same image twice.

use std::collections::VecDeque;

use crate::image::GrayImage;

/// Side of the normalised thumbnail compared between captures.
const SIDE: usize = 32;
/// Mean absolute difference (in units of the image's standard deviation, ×1000) below which a
/// capture counts as a copy. Re-placements of a real finger differ by hundreds.
const COPY_LIMIT: u32 = 60;

/// A capture was a near-exact copy of an earlier one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fingerprint capture rejected: it is a near-exact copy of capture #{earlier} (replayed image); lift the finger and place it again")]
pub struct ReplayRejected {
    /// Sequence number (from 1) of the earlier capture it copies.
    pub earlier: u64,
}

struct Seen {
    seq: u64,
    width: u32,
    height: u32,
    thumb: [i16; SIDE * SIDE],
}

/// Remembers the last `capacity` captures and rejects near-exact copies.
pub struct ReplayDetector {
    capacity: usize,
    seq: u64,
    seen: VecDeque<Seen>,
}

impl ReplayDetector {
    /// Remembers up to `capacity` captures (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            seq: 0,
            seen: VecDeque::new(),
        }
    }

    /// Checks a capture and remembers it when it is new.
    pub fn check(&mut self, img: &GrayImage) -> Result<(), ReplayRejected> {
        let thumb = thumbnail(img);
        for s in &self.seen {
            if s.width == img.width
                && s.height == img.height
                && distance(&s.thumb, &thumb) < COPY_LIMIT
            {
                return Err(ReplayRejected { earlier: s.seq });
            }
        }
        self.seq += 1;
        if self.seen.len() == self.capacity {
            self.seen.pop_front();
        }
        self.seen.push_back(Seen {
            seq: self.seq,
            width: img.width,
            height: img.height,
            thumb,
        });
        Ok(())
    }
}

/// Block-mean thumbnail, normalised to zero mean and unit standard deviation (×1000), so
/// brightness and contrast changes of a replayed image do not hide it.
fn thumbnail(img: &GrayImage) -> [i16; SIDE * SIDE] {
    let (w, h) = (img.width as usize, img.height as usize);
    let mut sums = [0f64; SIDE * SIDE];
    let mut counts = [0u32; SIDE * SIDE];
    if w > 0 && h > 0 && img.pixels.len() >= w * h {
        for y in 0..h {
            let ty = y * SIDE / h;
            for x in 0..w {
                let t = ty * SIDE + x * SIDE / w;
                sums[t] += f64::from(img.pixels[y * w + x]);
                counts[t] += 1;
            }
        }
    }
    let means: Vec<f64> = sums
        .iter()
        .zip(&counts)
        .map(|(s, &c)| if c > 0 { s / f64::from(c) } else { 0.0 })
        .collect();
    let m = means.iter().sum::<f64>() / means.len() as f64;
    let sd = (means.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / means.len() as f64)
        .sqrt()
        .max(1e-6);
    let mut out = [0i16; SIDE * SIDE];
    for (o, v) in out.iter_mut().zip(&means) {
        *o = ((v - m) / sd * 1000.0).clamp(-32000.0, 32000.0) as i16;
    }
    out
}

fn distance(a: &[i16; SIDE * SIDE], b: &[i16; SIDE * SIDE]) -> u32 {
    let s: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (i32::from(*x) - i32::from(*y)).unsigned_abs() as u64)
        .sum();
    (s / (SIDE * SIDE) as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print(shift: usize, seed: u32) -> GrayImage {
        let (w, h) = (300u32, 300u32);
        let mut s = seed;
        let mut p = Vec::new();
        for y in 0..h as usize {
            for x in 0..w as usize {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let r = (((x + shift) as f32 / 4.5).sin() * 80.0
                    + 128.0
                    + (y as f32 / 40.0).cos() * 30.0) as i32;
                p.push((r + (s % 5) as i32 - 2).clamp(0, 255) as u8);
            }
        }
        GrayImage::new(w, h, p)
    }

    #[test]
    fn an_exact_copy_is_rejected() {
        let mut d = ReplayDetector::new(10);
        let a = print(0, 1);
        assert!(d.check(&a).is_ok());
        let e = d.check(&a).unwrap_err();
        assert_eq!(e.earlier, 1);
        assert!(e.to_string().contains("copy"));
    }

    #[test]
    fn a_copy_with_new_noise_and_brightness_is_rejected() {
        let mut d = ReplayDetector::new(10);
        assert!(d.check(&print(0, 1)).is_ok());
        let mut b = print(0, 77);
        for p in &mut b.pixels {
            *p = p.saturating_add(12);
        }
        assert!(d.check(&b).is_err());
    }

    #[test]
    fn a_replaced_finger_passes_and_old_captures_expire() {
        let mut d = ReplayDetector::new(1);
        assert!(d.check(&print(0, 1)).is_ok());
        assert!(d.check(&print(7, 2)).is_ok());
        // Capacity 1: the first capture is forgotten.
        assert!(d.check(&print(0, 3)).is_ok());
    }
}
