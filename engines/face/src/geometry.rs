//! Points, affine maps, bilinear warping and the similarity fit used for alignment.
//!
//! Every crop, resize and rotation in the engine is one affine map from output pixels to
//! source pixels, sampled bilinearly by [`warp_to_tensor`] or [`warp_gray`].

use image::RgbImage;

/// A point in image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    /// Column.
    pub x: f32,
    /// Row.
    pub y: f32,
}

impl Point {
    /// A point.
    pub const fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }

    /// Euclidean distance.
    pub fn distance(self, other: Point) -> f32 {
        (self.x - other.x).hypot(self.y - other.y)
    }

    /// Midpoint.
    pub fn midpoint(self, other: Point) -> Point {
        Point::new((self.x + other.x) / 2.0, (self.y + other.y) / 2.0)
    }
}

/// `x' = a*x + b*y + c`, `y' = d*x + e*y + f`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    /// Row-major `[a, b, c, d, e, f]`.
    pub m: [f32; 6],
}

impl Affine {
    /// Maps a point.
    pub fn apply(&self, p: Point) -> Point {
        let [a, b, c, d, e, f] = self.m;
        Point::new(a * p.x + b * p.y + c, d * p.x + e * p.y + f)
    }

    /// The inverse map; `None` when the map is degenerate.
    pub fn invert(&self) -> Option<Affine> {
        let [a, b, c, d, e, f] = self.m;
        let det = a * e - b * d;
        if det.abs() < 1e-12 {
            return None;
        }
        let (ia, ib, id, ie) = (e / det, -b / det, -d / det, a / det);
        Some(Affine {
            m: [ia, ib, -(ia * c + ib * f), id, ie, -(id * c + ie * f)],
        })
    }

    /// Output square of `size` pixels showing a square of side `side` centred on `centre`,
    /// rotated by `angle` radians (the output's x axis runs along `angle` in the source).
    pub fn square_crop(centre: Point, side: f32, angle: f32, size: usize) -> Affine {
        let scale = side / size as f32;
        let (s, c) = angle.sin_cos();
        let half = size as f32 / 2.0;
        // src = centre + R(angle) * scale * (dst - half)
        let (a, b, d, e) = (c * scale, -s * scale, s * scale, c * scale);
        Affine {
            m: [
                a,
                b,
                centre.x - a * half - b * half,
                d,
                e,
                centre.y - d * half - e * half,
            ],
        }
    }

    /// Maps an output of `size`x`size` onto the whole source, keeping the aspect ratio and
    /// padding the shorter side (letterbox).
    pub fn letterbox(width: u32, height: u32, size: usize) -> Affine {
        let side = width.max(height) as f32;
        Affine::square_crop(
            Point::new(width as f32 / 2.0, height as f32 / 2.0),
            side,
            0.0,
            size,
        )
    }
}

/// Least-squares similarity (rotation, uniform scale, translation) taking `from` onto `to`
/// (Umeyama's closed form in two dimensions).
pub fn similarity(from: &[Point], to: &[Point]) -> Option<Affine> {
    let n = from.len().min(to.len());
    if n < 2 {
        return None;
    }
    let nf = n as f32;
    let mean = |pts: &[Point]| {
        let (sx, sy) = pts[..n]
            .iter()
            .fold((0.0, 0.0), |(x, y), p| (x + p.x, y + p.y));
        Point::new(sx / nf, sy / nf)
    };
    let (mf, mt) = (mean(from), mean(to));
    let (mut sxx, mut sxy, mut var) = (0.0f32, 0.0f32, 0.0f32);
    for (p, q) in from[..n].iter().zip(&to[..n]) {
        let (px, py, qx, qy) = (p.x - mf.x, p.y - mf.y, q.x - mt.x, q.y - mt.y);
        // For a similarity [[a, -b], [b, a]]: a ~ sum(p.q), b ~ sum(p x q).
        sxx += px * qx + py * qy;
        sxy += px * qy - py * qx;
        var += px * px + py * py;
    }
    if var < 1e-9 {
        return None;
    }
    let (a, b) = (sxx / var, sxy / var);
    let (c, f) = (mt.x - (a * mf.x - b * mf.y), mt.y - (b * mf.x + a * mf.y));
    Some(Affine {
        m: [a, -b, c, b, a, f],
    })
}

#[inline]
fn sample(src: &RgbImage, x: f32, y: f32) -> [f32; 3] {
    let (w, h) = (src.width() as i32, src.height() as i32);
    let x0 = x.floor();
    let y0 = y.floor();
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as i32, y0 as i32);
    let raw = src.as_raw();
    let px = |xi: i32, yi: i32| -> [f32; 3] {
        if xi < 0 || yi < 0 || xi >= w || yi >= h {
            return [0.0; 3];
        }
        let i = (yi as usize * w as usize + xi as usize) * 3;
        [
            f32::from(raw[i]),
            f32::from(raw[i + 1]),
            f32::from(raw[i + 2]),
        ]
    };
    let (p00, p10, p01, p11) = (
        px(x0, y0),
        px(x0 + 1, y0),
        px(x0, y0 + 1),
        px(x0 + 1, y0 + 1),
    );
    let mut out = [0.0; 3];
    for c in 0..3 {
        let top = p00[c] + (p10[c] - p00[c]) * fx;
        let bottom = p01[c] + (p11[c] - p01[c]) * fx;
        out[c] = top + (bottom - top) * fy;
    }
    out
}

/// Samples a `size`x`size` RGB tensor (HWC, f32) through `map` (output pixel to source
/// pixel), applying `scale * value + offset` to every channel. Pixels outside the source are
/// black before normalisation.
///
/// When the map shrinks the source by more than two, each output pixel averages a 2x2 grid of
/// samples so that small tensors of large photos are not aliased.
pub fn warp_to_tensor(
    src: &RgbImage,
    map: &Affine,
    size: usize,
    scale: f32,
    offset: f32,
    out: &mut Vec<f32>,
) {
    out.clear();
    out.reserve(size * size * 3);
    let [a, b, _, d, e, _] = map.m;
    let shrink = (a * a + d * d).sqrt().max((b * b + e * e).sqrt());
    let taps: &[(f32, f32)] = if shrink > 2.0 {
        &[(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)]
    } else {
        &[(0.5, 0.5)]
    };
    let weight = 1.0 / taps.len() as f32;
    for v in 0..size {
        for u in 0..size {
            let mut acc = [0.0f32; 3];
            for (du, dv) in taps {
                // Pixel centres: output pixel (u, v) covers [u, u+1); source pixel i is at i+0.5.
                let p = map.apply(Point::new(u as f32 + du, v as f32 + dv));
                let s = sample(src, p.x - 0.5, p.y - 0.5);
                for c in 0..3 {
                    acc[c] += s[c];
                }
            }
            for value in acc {
                out.push(value * weight * scale + offset);
            }
        }
    }
}

/// Samples an 8-bit gray `width`x`height` image through `map` (ITU-R BT.601 luma).
pub fn warp_gray(src: &RgbImage, map: &Affine, width: usize, height: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(width * height);
    for v in 0..height {
        for u in 0..width {
            let p = map.apply(Point::new(u as f32 + 0.5, v as f32 + 0.5));
            let [r, g, b] = sample(src, p.x - 0.5, p.y - 0.5);
            out.push(0.299 * r + 0.587 * g + 0.114 * b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_recovers_a_known_rotation_scale_and_shift() {
        let truth = Affine {
            m: [1.2 * 0.8, -1.2 * 0.6, 5.0, 1.2 * 0.6, 1.2 * 0.8, -3.0],
        };
        let from = [
            Point::new(0.0, 0.0),
            Point::new(10.0, 2.0),
            Point::new(4.0, 9.0),
            Point::new(-3.0, 5.0),
        ];
        let to: Vec<Point> = from.iter().map(|p| truth.apply(*p)).collect();
        let fit = similarity(&from, &to).unwrap();
        for (x, y) in fit.m.iter().zip(truth.m) {
            assert!((x - y).abs() < 1e-4, "{fit:?}");
        }
    }

    #[test]
    fn inverting_an_affine_map_round_trips_points() {
        let map = Affine::square_crop(Point::new(100.0, 50.0), 80.0, 0.3, 128);
        let inv = map.invert().unwrap();
        let p = Point::new(17.0, 93.0);
        let back = inv.apply(map.apply(p));
        assert!(p.distance(back) < 1e-3);
    }

    #[test]
    fn letterbox_centres_a_wide_image_and_pads_top_and_bottom() {
        let map = Affine::letterbox(200, 100, 100);
        // Output centre is the image centre; output top-left is above the image.
        let c = map.apply(Point::new(50.0, 50.0));
        assert!((c.x - 100.0).abs() < 1e-4 && (c.y - 50.0).abs() < 1e-4);
        assert!(map.apply(Point::new(0.0, 0.0)).y < 0.0);
    }

    #[test]
    fn warping_a_uniform_image_keeps_its_value_inside_and_black_outside() {
        let img = RgbImage::from_pixel(40, 20, image::Rgb([200, 100, 50]));
        let mut out = Vec::new();
        warp_to_tensor(&img, &Affine::letterbox(40, 20, 8), 8, 1.0, 0.0, &mut out);
        let centre = (4 * 8 + 4) * 3;
        assert!((out[centre] - 200.0).abs() < 1e-3 && (out[centre + 2] - 50.0).abs() < 1e-3);
        assert_eq!(out[0], 0.0, "the padded top row is black");
    }
}
