//! Image → minutiae template and quality.
//!
//! Stages: resolution check and rescale to 500 dpi; Sobel gradients; block structure tensor
//! giving the ridge orientation and its coherence (reliability); foreground segmentation from
//! local contrast; global ridge period from oriented signatures; oriented Gabor filtering;
//! binarisation by sign; Guo–Hall thinning; crossing-number minutiae; skeleton tracing for
//! directions and false-minutiae removal (border, spurs, bridges, breaks, short ridges,
//! clusters); per-minutia and sample quality.

use std::f32::consts::PI;

use crate::image::GrayImage;
use crate::template::{Minutia, MinutiaKind, Template};

/// Block size of the orientation field and the segmentation, in pixels at 500 dpi.
const B: usize = 8;

/// Extraction settings. The defaults are tuned on FVC2002.
#[derive(Clone, Debug)]
pub struct ExtractorConfig {
    /// Most minutiae kept, best quality first.
    pub max_minutiae: usize,
    /// Smallest foreground (fingerprint) area, in pixels at 500 dpi, below which extraction
    /// fails with [`ExtractError::NoFingerprint`].
    pub min_foreground_pixels: usize,
}

impl Default for ExtractorConfig {
    fn default() -> Self {
        Self {
            max_minutiae: 80,
            min_foreground_pixels: 60 * 60,
        }
    }
}

/// Why an image could not be turned into a template.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ExtractError {
    /// The pixel buffer does not match width × height.
    #[error("fingerprint image buffer holds {actual} bytes but {width}x{height} needs {expected}; pass one byte per pixel, row-major")]
    BufferSize {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// `width * height`.
        expected: usize,
        /// Buffer length.
        actual: usize,
    },
    /// Too small or too large.
    #[error(
        "fingerprint image is {width}x{height} pixels; supported sizes are 150x150 to 1000x1000"
    )]
    Size {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// Resolution outside what the engine rescales.
    #[error("fingerprint image resolution {dpi} dpi is not supported; use 250 to 1000 dpi (500 dpi is native)")]
    Resolution {
        /// Stated resolution.
        dpi: u16,
    },
    /// A flat image (all white, all black).
    #[error(
        "fingerprint image has no contrast (flat image); check that a finger is on the sensor"
    )]
    NoContrast,
    /// No ridge area large enough.
    #[error("no fingerprint found: ridge area is {pixels} pixels, at least {needed} needed; place the finger flat and centred")]
    NoFingerprint {
        /// Foreground pixels found.
        pixels: usize,
        /// Minimum.
        needed: usize,
    },
}

/// Sample quality in the spirit of NFIQ 2: local clarity, orientation certainty, foreground
/// area and minutiae count.
#[derive(Clone, Debug, PartialEq)]
pub struct QualityReport {
    /// 0..100, higher is better.
    pub score: f32,
    /// Mean orientation coherence over the foreground (0..1).
    pub orientation_certainty: f32,
    /// Fraction of foreground blocks whose ridges are clear (coherence ≥ 0.5).
    pub clear_fraction: f32,
    /// Mean Gabor-filter ridge/valley separation over the foreground (0..1).
    pub ridge_clarity: f32,
    /// Foreground area in pixels at 500 dpi.
    pub foreground_pixels: usize,
    /// Minutiae kept.
    pub minutiae: usize,
}

impl QualityReport {
    /// Score mapped to `0..=1`, the scale of the agent's `quality_threshold`.
    pub fn normalised(&self) -> f32 {
        (self.score / 100.0).clamp(0.0, 1.0)
    }
}

/// Result of an extraction.
#[derive(Clone, Debug)]
pub struct Extraction {
    /// The minutiae template.
    pub template: Template,
    /// Sample quality.
    pub quality: QualityReport,
    /// Estimated ridge period in pixels at 500 dpi.
    pub ridge_period: f32,
}

/// Turns images into templates. Stateless and `Sync`: share one across threads.
#[derive(Clone, Debug, Default)]
pub struct Extractor {
    cfg: ExtractorConfig,
}

/// Per-block orientation field.
struct Field {
    bw: usize,
    bh: usize,
    /// Ridge direction in image coordinates (y down), radians in `[0, π)`.
    theta: Vec<f32>,
    coherence: Vec<f32>,
    fg: Vec<bool>,
    /// Chessboard distance in blocks to the nearest background block.
    depth: Vec<u16>,
}

impl Extractor {
    /// A new extractor.
    pub fn new(cfg: ExtractorConfig) -> Self {
        Self { cfg }
    }

    /// Extracts a template and a quality report.
    pub fn extract(&self, img: &GrayImage) -> Result<Extraction, ExtractError> {
        let expected = img.width as usize * img.height as usize;
        if img.pixels.len() != expected {
            return Err(ExtractError::BufferSize {
                width: img.width,
                height: img.height,
                expected,
                actual: img.pixels.len(),
            });
        }
        if !(150..=1000).contains(&img.width) || !(150..=1000).contains(&img.height) {
            return Err(ExtractError::Size {
                width: img.width,
                height: img.height,
            });
        }
        if !(250..=1000).contains(&img.dpi) {
            return Err(ExtractError::Resolution { dpi: img.dpi });
        }
        let img = img.rescaled_to(500);
        let (w, h) = (img.width as usize, img.height as usize);
        let (lo, hi) = img
            .pixels
            .iter()
            .fold((255u8, 0u8), |(l, m), &p| (l.min(p), m.max(p)));
        if hi.saturating_sub(lo) < 16 {
            return Err(ExtractError::NoContrast);
        }
        let px: Vec<f32> = img.pixels.iter().map(|&p| f32::from(p)).collect();
        let field = orientation_field(&px, w, h);
        let fg_pixels = field.fg.iter().filter(|&&f| f).count() * B * B;
        if fg_pixels < self.cfg.min_foreground_pixels {
            return Err(ExtractError::NoFingerprint {
                pixels: fg_pixels,
                needed: self.cfg.min_foreground_pixels,
            });
        }
        let own_periods = block_periods(&px, w, h, &field);
        let period = ridge_period(&field, &own_periods);
        let periods = period_map(&field, &own_periods, period);
        let (enhanced, clarity) = gabor(&px, w, h, &field, &periods);
        let mut ridge = vec![0u8; w * h];
        for y in 0..h {
            for x in 0..w {
                let bi = (y / B) * field.bw + x / B;
                if field.fg[bi] && enhanced[y * w + x] < 0.0 {
                    ridge[y * w + x] = 1;
                }
            }
        }
        smooth_binary(&mut ridge, w, h);
        thin(&mut ridge, w, h);
        let mut minutiae = find_minutiae(&ridge, w, h, &field, period);
        minutiae.sort_by_key(|m| std::cmp::Reverse(m.quality));
        minutiae.truncate(self.cfg.max_minutiae);

        let fgn = field.fg.iter().filter(|&&f| f).count().max(1) as f32;
        let mut coh_sum = 0.0;
        let mut clear = 0.0;
        for (i, &f) in field.fg.iter().enumerate() {
            if f {
                coh_sum += field.coherence[i];
                if field.coherence[i] >= 0.5 {
                    clear += 1.0;
                }
            }
        }
        let orientation_certainty = coh_sum / fgn;
        let clear_fraction = clear / fgn;
        let area = (fg_pixels as f32 / 45_000.0).min(1.0);
        let count = (minutiae.len() as f32 / 18.0).min(1.0);
        let base = 0.35 * clear_fraction
            + 0.35 * (orientation_certainty / 0.7).min(1.0)
            + 0.3 * (clarity / 0.6).min(1.0);
        let score = (100.0 * base * area.sqrt() * count.sqrt()).clamp(0.0, 100.0);
        let quality = QualityReport {
            score,
            orientation_certainty,
            clear_fraction,
            ridge_clarity: clarity,
            foreground_pixels: fg_pixels,
            minutiae: minutiae.len(),
        };
        let template = Template::from_minutiae(w as u16, h as u16, score.round() as u8, minutiae);
        Ok(Extraction {
            template,
            quality,
            ridge_period: period,
        })
    }
}

/// Gradients, block structure tensor, orientation, coherence, segmentation.
fn orientation_field(px: &[f32], w: usize, h: usize) -> Field {
    let bw = w.div_ceil(B);
    let bh = h.div_ceil(B);
    let nb = bw * bh;
    let mut sxx = vec![0f32; nb];
    let mut sxy = vec![0f32; nb];
    let mut smag = vec![0f32; nb];
    let mut sum = vec![0f32; nb];
    let mut sum2 = vec![0f32; nb];
    for y in 0..h {
        let ym = y.saturating_sub(1);
        let yp = (y + 1).min(h - 1);
        for x in 0..w {
            let xm = x.saturating_sub(1);
            let xp = (x + 1).min(w - 1);
            let p = |xx: usize, yy: usize| px[yy * w + xx];
            let gx =
                (p(xp, ym) + 2.0 * p(xp, y) + p(xp, yp)) - (p(xm, ym) + 2.0 * p(xm, y) + p(xm, yp));
            let gy =
                (p(xm, yp) + 2.0 * p(x, yp) + p(xp, yp)) - (p(xm, ym) + 2.0 * p(x, ym) + p(xp, ym));
            let bi = (y / B) * bw + x / B;
            sxx[bi] += gx * gx - gy * gy;
            sxy[bi] += 2.0 * gx * gy;
            smag[bi] += gx * gx + gy * gy;
            let v = px[y * w + x];
            sum[bi] += v;
            sum2[bi] += v * v;
        }
    }
    let boxed = |src: &[f32], r: isize| -> Vec<f32> {
        let mut out = vec![0f32; nb];
        for by in 0..bh as isize {
            for bx in 0..bw as isize {
                let mut a = 0.0;
                for dy in -r..=r {
                    for dx in -r..=r {
                        let (xx, yy) = (bx + dx, by + dy);
                        if xx >= 0 && yy >= 0 && xx < bw as isize && yy < bh as isize {
                            a += src[yy as usize * bw + xx as usize];
                        }
                    }
                }
                out[by as usize * bw + bx as usize] = a;
            }
        }
        out
    };
    // Coherence over a 40-pixel window; orientation over a 24-pixel window, then smoothed as a
    // doubled-angle vector field over 40 pixels.
    let cxx = boxed(&sxx, 2);
    let cxy = boxed(&sxy, 2);
    let cmag = boxed(&smag, 2);
    let oxx = boxed(&sxx, 1);
    let oxy = boxed(&sxy, 1);
    let vx = boxed(&oxx, 2);
    let vy = boxed(&oxy, 2);
    let s1 = boxed(&sum, 1);
    let s2 = boxed(&sum2, 1);
    let cnt = boxed(&vec![(B * B) as f32; nb], 1);
    let mut theta = vec![0f32; nb];
    let mut coherence = vec![0f32; nb];
    let mut std = vec![0f32; nb];
    for i in 0..nb {
        // Gradient direction is 0.5*atan2(sxy, sxx); ridges run perpendicular to it.
        let phi = 0.5 * vy[i].atan2(vx[i]);
        theta[i] = (phi + PI / 2.0).rem_euclid(PI);
        coherence[i] = if cmag[i] > 0.0 {
            (cxx[i] * cxx[i] + cxy[i] * cxy[i]).sqrt() / cmag[i]
        } else {
            0.0
        };
        let m = s1[i] / cnt[i];
        std[i] = (s2[i] / cnt[i] - m * m).max(0.0).sqrt();
    }
    // Foreground: contrast above a fraction of the image's high contrast level.
    let mut sorted = std.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let p90 = sorted[(sorted.len() * 9) / 10];
    let thr = (0.35 * p90).max(8.0);
    let mut fg: Vec<bool> = (0..nb)
        .map(|i| std[i] > thr && coherence[i] > 0.08)
        .collect();
    for _ in 0..2 {
        fg = majority(&fg, bw, bh);
    }
    fill_holes(&mut fg, bw, bh);
    keep_largest(&mut fg, bw, bh);
    let depth = block_depth(&fg, bw, bh);
    Field {
        bw,
        bh,
        theta,
        coherence,
        fg,
        depth,
    }
}

fn majority(m: &[bool], bw: usize, bh: usize) -> Vec<bool> {
    let mut out = vec![false; m.len()];
    for by in 0..bh {
        for bx in 0..bw {
            let mut c = 0;
            for dy in -1isize..=1 {
                for dx in -1isize..=1 {
                    let (xx, yy) = (bx as isize + dx, by as isize + dy);
                    if xx >= 0
                        && yy >= 0
                        && (xx as usize) < bw
                        && (yy as usize) < bh
                        && m[yy as usize * bw + xx as usize]
                    {
                        c += 1;
                    }
                }
            }
            out[by * bw + bx] = c >= 5;
        }
    }
    out
}

/// Flood-fills the background from the border; unreached background becomes foreground.
fn fill_holes(m: &mut [bool], bw: usize, bh: usize) {
    let mut seen = vec![false; m.len()];
    let mut stack = Vec::new();
    for by in 0..bh {
        for bx in 0..bw {
            if (by == 0 || bx == 0 || by == bh - 1 || bx == bw - 1) && !m[by * bw + bx] {
                seen[by * bw + bx] = true;
                stack.push((bx, by));
            }
        }
    }
    while let Some((x, y)) = stack.pop() {
        for (dx, dy) in [(1isize, 0isize), (-1, 0), (0, 1), (0, -1)] {
            let (xx, yy) = (x as isize + dx, y as isize + dy);
            if xx >= 0 && yy >= 0 && (xx as usize) < bw && (yy as usize) < bh {
                let i = yy as usize * bw + xx as usize;
                if !m[i] && !seen[i] {
                    seen[i] = true;
                    stack.push((xx as usize, yy as usize));
                }
            }
        }
    }
    for i in 0..m.len() {
        if !m[i] && !seen[i] {
            m[i] = true;
        }
    }
}

fn keep_largest(m: &mut [bool], bw: usize, bh: usize) {
    let mut label = vec![0u32; m.len()];
    let mut best = (0u32, 0usize);
    let mut next = 0u32;
    for s in 0..m.len() {
        if !m[s] || label[s] != 0 {
            continue;
        }
        next += 1;
        let mut size = 0;
        let mut stack = vec![s];
        label[s] = next;
        while let Some(i) = stack.pop() {
            size += 1;
            let (x, y) = (i % bw, i / bw);
            for (dx, dy) in [(1isize, 0isize), (-1, 0), (0, 1), (0, -1)] {
                let (xx, yy) = (x as isize + dx, y as isize + dy);
                if xx >= 0 && yy >= 0 && (xx as usize) < bw && (yy as usize) < bh {
                    let j = yy as usize * bw + xx as usize;
                    if m[j] && label[j] == 0 {
                        label[j] = next;
                        stack.push(j);
                    }
                }
            }
        }
        if size > best.1 {
            best = (next, size);
        }
    }
    for i in 0..m.len() {
        m[i] = m[i] && label[i] == best.0;
    }
}

/// Chessboard distance transform (in blocks) of the foreground; blocks outside the image
/// count as background.
fn block_depth(m: &[bool], bw: usize, bh: usize) -> Vec<u16> {
    let mut d: Vec<u16> = m.iter().map(|&f| if f { u16::MAX } else { 0 }).collect();
    for by in 0..bh {
        for bx in 0..bw {
            let i = by * bw + bx;
            if d[i] == 0 {
                continue;
            }
            let mut v: u16 = 1;
            if bx > 0 && by > 0 && bx + 1 < bw && by + 1 < bh {
                v = u16::MAX;
                for (dx, dy) in [(-1isize, -1isize), (0, -1), (1, -1), (-1, 0)] {
                    let j = (by as isize + dy) as usize * bw + (bx as isize + dx) as usize;
                    v = v.min(d[j].saturating_add(1));
                }
            }
            d[i] = v;
        }
    }
    for by in (0..bh).rev() {
        for bx in (0..bw).rev() {
            let i = by * bw + bx;
            if d[i] == 0 {
                continue;
            }
            let mut v = d[i];
            for (dx, dy) in [(1isize, 1isize), (0, 1), (-1, 1), (1, 0)] {
                let (xx, yy) = (bx as isize + dx, by as isize + dy);
                if xx >= 0 && yy >= 0 && (xx as usize) < bw && (yy as usize) < bh {
                    v = v.min(d[yy as usize * bw + xx as usize].saturating_add(1));
                }
            }
            d[i] = v;
        }
    }
    d
}

/// Median ridge period over clear foreground blocks, from oriented signatures.
/// Half-length, in pixels, of the grey-level signature taken across the ridges.
const SIGNATURE_HALF: usize = 24;

/// Ridge period of the block around `(cx, cy)` with ridge direction `theta`: the lag of the
/// strongest autocorrelation peak of the grey-level signature across the ridges. Counting the
/// signature's peaks instead, as a first version did, took noise speckle (sweaty prints,
/// capacitive sensors) for ridges and halved the period.
fn block_period(px: &[f32], w: usize, h: usize, cx: f32, cy: f32, theta: f32) -> Option<f32> {
    const N: usize = 2 * SIGNATURE_HALF;
    let (s, c) = theta.sin_cos();
    // Signature across the ridges (normal = (-sin, cos)), averaged along them.
    let mut sig = [0f32; N];
    for (k, v) in sig.iter_mut().enumerate() {
        let t = k as f32 - SIGNATURE_HALF as f32;
        let mut acc = 0.0;
        for l in -5..=5 {
            let l = l as f32;
            let x = (cx - t * s + l * c).round();
            let y = (cy + t * c + l * s).round();
            if x < 0.0 || y < 0.0 || x as usize >= w || y as usize >= h {
                return None;
            }
            acc += px[y as usize * w + x as usize];
        }
        *v = acc;
    }
    let mean = sig.iter().sum::<f32>() / N as f32;
    sig.iter_mut().for_each(|v| *v -= mean);
    let r0: f32 = sig.iter().map(|v| v * v).sum();
    if r0 <= 0.0 {
        return None;
    }
    const MAX_LAG: usize = 20;
    let mut r = [0f32; MAX_LAG + 2];
    for (lag, rv) in r.iter_mut().enumerate().skip(2) {
        // Normalised by the overlap so long lags are not penalised.
        *rv = sig[..N - lag]
            .iter()
            .zip(&sig[lag..])
            .map(|(a, b)| a * b)
            .sum::<f32>()
            / r0
            * N as f32
            / (N - lag) as f32;
    }
    let peaks: Vec<usize> = (3..=MAX_LAG)
        .filter(|&l| r[l] > r[l - 1] && r[l] >= r[l + 1] && r[l] > 0.2)
        .collect();
    let top = peaks.iter().map(|&l| r[l]).fold(0.0, f32::max);
    // The first peak nearly as strong as the strongest: multiples of the period correlate
    // too, sometimes a little better when one ridge is broken.
    let peak = *peaks.iter().find(|&&l| r[l] >= 0.75 * top)?;
    // Parabolic interpolation around the peak for sub-pixel precision.
    let (a, b, cc) = (r[peak - 1], r[peak], r[peak + 1]);
    let den = a - 2.0 * b + cc;
    let off = if den.abs() > 1e-6 {
        (0.5 * (a - cc) / den).clamp(-0.5, 0.5)
    } else {
        0.0
    };
    Some(peak as f32 + off)
}

/// Each clear block's own ridge period (`None` where it has none), computed once and shared
/// by the print's median period and the per-block map.
fn block_periods(px: &[f32], w: usize, h: usize, f: &Field) -> Vec<Option<f32>> {
    let mut own = vec![None; f.bw * f.bh];
    for by in 0..f.bh {
        for bx in 0..f.bw {
            let i = by * f.bw + bx;
            if !f.fg[i] || f.coherence[i] < 0.3 {
                continue;
            }
            let (cx, cy) = ((bx * B + B / 2) as f32, (by * B + B / 2) as f32);
            own[i] = block_period(px, w, h, cx, cy, f.theta[i]);
        }
    }
    own
}

/// The print's ridge period: the median over every other inner block whose ridges are clear.
fn ridge_period(f: &Field, own: &[Option<f32>]) -> f32 {
    let mut periods = Vec::new();
    for by in (1..f.bh.saturating_sub(1)).step_by(2) {
        for bx in (1..f.bw.saturating_sub(1)).step_by(2) {
            let i = by * f.bw + bx;
            if !f.fg[i] || f.coherence[i] < 0.4 {
                continue;
            }
            if let Some(p) = own[i].filter(|p| (4.0..=18.0).contains(p)) {
                periods.push(p);
            }
        }
    }
    if periods.is_empty() {
        return 9.0;
    }
    periods.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    periods[periods.len() / 2].clamp(6.0, 14.0)
}

/// Per-block ridge period: each clear block's own estimate, averaged over its 5x5-block
/// neighbourhood; blocks without a usable estimate take the print's median `global`. Ridges
/// are finer near the tip and coarser near the core, and one period for the whole print
/// blurs or splits them where it is wrong.
fn period_map(f: &Field, own: &[Option<f32>], global: f32) -> Vec<f32> {
    let own: Vec<f32> = own
        .iter()
        .map(|p| {
            p.filter(|&p| p >= 0.65 * global && p <= 1.5 * global)
                .unwrap_or(f32::NAN)
        })
        .collect();
    let mut map = vec![global; f.bw * f.bh];
    for by in 0..f.bh {
        for bx in 0..f.bw {
            let i = by * f.bw + bx;
            if !f.fg[i] {
                continue;
            }
            let (mut sum, mut n) = (0.0f32, 0.0f32);
            for y in by.saturating_sub(2)..(by + 3).min(f.bh) {
                for x in bx.saturating_sub(2)..(bx + 3).min(f.bw) {
                    let v = own[y * f.bw + x];
                    if !v.is_nan() {
                        sum += v;
                        n += 1.0;
                    }
                }
            }
            // Too few neighbours to trust: lean towards the global period.
            map[i] = (sum + global * (3.0 - n).max(0.0)) / (n + (3.0 - n).max(0.0));
        }
    }
    map
}

const ORIENTATIONS: usize = 16;
/// Periods of the Gabor bank, in steps of half a pixel from 6 to 14 pixels.
const PERIOD_MIN: f32 = 6.0;
const PERIOD_STEP: f32 = 0.5;
const PERIODS: usize = 17;

/// One even-symmetric Gabor kernel, zero DC, and its gain on a clean sinusoid of its period.
struct Kernel {
    radius: usize,
    taps: Vec<f32>,
    gain: f32,
}

impl Kernel {
    fn new(theta: f32, period: f32) -> Self {
        // Across the ridges the envelope spans about one period either side, enough to
        // bridge a pore or a speckle without mixing in the neighbouring ridges (tuned on
        // FVC2002: 0.42 left DB3's noisy prints broken, 0.6 merged close ridges).
        let sx = 0.50 * period;
        let sy = 0.48 * period;
        let r = (1.6 * sy).ceil() as usize;
        let ks = 2 * r + 1;
        let (s, c) = theta.sin_cos();
        let mut env = vec![0f32; ks * ks];
        let mut taps = vec![0f32; ks * ks];
        for dy in 0..ks {
            for dx in 0..ks {
                let (x, y) = (dx as f32 - r as f32, dy as f32 - r as f32);
                let along = x * c + y * s;
                let across = -x * s + y * c;
                let e = (-(across * across) / (2.0 * sx * sx) - (along * along) / (2.0 * sy * sy))
                    .exp();
                env[dy * ks + dx] = e;
                taps[dy * ks + dx] = e * (2.0 * PI * across / period).cos();
            }
        }
        // Zero DC: subtract the envelope-weighted mean so flat regions give no response.
        let mean = taps.iter().sum::<f32>() / env.iter().sum::<f32>();
        for (t, e) in taps.iter_mut().zip(&env) {
            *t -= mean * e;
        }
        let mut gain = 0.0;
        for dy in 0..ks {
            for dx in 0..ks {
                let (x, y) = (dx as f32 - r as f32, dy as f32 - r as f32);
                let across = -x * s + y * c;
                gain += taps[dy * ks + dx] * (2.0 * PI * across / period).cos();
            }
        }
        Kernel {
            radius: r,
            taps,
            gain: gain.abs().max(1e-3),
        }
    }
}

/// Oriented Gabor filtering, block by block: the block's orientation and ridge period pick
/// the kernel. Returns the filtered image and the ridge clarity (mean |response| relative to
/// contrast).
fn gabor(px: &[f32], w: usize, h: usize, f: &Field, periods: &[f32]) -> (Vec<f32>, f32) {
    let period_bin =
        |p: f32| (((p - PERIOD_MIN) / PERIOD_STEP).round().max(0.0) as usize).min(PERIODS - 1);
    // Build only the kernels some block uses.
    let mut bank: Vec<Option<Kernel>> = (0..PERIODS * ORIENTATIONS).map(|_| None).collect();
    let mut choice = vec![usize::MAX; f.bw * f.bh];
    for i in 0..f.bw * f.bh {
        if !f.fg[i] {
            continue;
        }
        let o = ((f.theta[i] / PI * ORIENTATIONS as f32).round() as usize) % ORIENTATIONS;
        let pb = period_bin(periods[i]);
        let k = pb * ORIENTATIONS + o;
        if bank[k].is_none() {
            let th = o as f32 * PI / ORIENTATIONS as f32;
            bank[k] = Some(Kernel::new(th, PERIOD_MIN + pb as f32 * PERIOD_STEP));
        }
        choice[i] = k;
    }
    let r = bank.iter().flatten().map(|k| k.radius).max().unwrap_or(0);
    // Padded copy with edge replication.
    let pw = w + 2 * r + B;
    let ph = h + 2 * r + B;
    let mut pad = vec![0f32; pw * ph];
    for y in 0..ph {
        let sy_ = (y as isize - r as isize).clamp(0, h as isize - 1) as usize;
        for x in 0..pw {
            let sx_ = (x as isize - r as isize).clamp(0, w as isize - 1) as usize;
            pad[y * pw + x] = px[sy_ * w + sx_];
        }
    }
    let mut out = vec![0f32; w * h];
    let mut resp_sum = 0.0f32;
    let mut dev_sum = 0.0f32;
    for by in 0..f.bh {
        for bx in 0..f.bw {
            let bi = by * f.bw + bx;
            let Some(k) = bank.get(choice[bi]).and_then(|k| k.as_ref()) else {
                continue;
            };
            let ks = 2 * k.radius + 1;
            // Offset of this kernel's window inside the padding made for the widest kernel.
            let off = r - k.radius;
            let mut acc = [[0f32; B]; B];
            for ky in 0..ks {
                for kx in 0..ks {
                    let kv = k.taps[ky * ks + kx];
                    for (yy, row) in acc.iter_mut().enumerate() {
                        let base = (by * B + yy + ky + off) * pw + bx * B + kx + off;
                        let src = &pad[base..base + B];
                        for xx in 0..B {
                            row[xx] += kv * src[xx];
                        }
                    }
                }
            }
            let mut bmean = 0.0;
            for yy in 0..B {
                for xx in 0..B {
                    bmean += pad[(by * B + yy + r) * pw + bx * B + xx + r];
                }
            }
            bmean /= (B * B) as f32;
            for (yy, row) in acc.iter().enumerate() {
                let y = by * B + yy;
                if y >= h {
                    break;
                }
                for (xx, &v) in row.iter().enumerate() {
                    let x = bx * B + xx;
                    if x >= w {
                        break;
                    }
                    out[y * w + x] = v;
                    // For a clean sinusoid, mean|resp| = gain*A*2/π and mean|dev| = A*2/π.
                    resp_sum += v.abs() / k.gain;
                    dev_sum += (pad[(y + r) * pw + x + r] - bmean).abs();
                }
            }
        }
    }
    let clarity = if dev_sum > 0.0 {
        (resp_sum / dev_sum).clamp(0.0, 1.0)
    } else {
        0.0
    };
    (out, clarity)
}

/// Fills single-pixel holes and removes single-pixel specks.
fn smooth_binary(m: &mut [u8], w: usize, h: usize) {
    let src = m.to_vec();
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let mut c = 0;
            for dy in 0..3 {
                for dx in 0..3 {
                    c += src[(y + dy - 1) * w + x + dx - 1];
                }
            }
            let v = src[y * w + x];
            let n = c - v;
            if v == 0 && n >= 7 {
                m[y * w + x] = 1;
            } else if v == 1 && n <= 1 {
                m[y * w + x] = 0;
            }
        }
    }
}

/// 8-neighbour code: bit 0 = N, then clockwise NE, E, SE, S, SW, W, NW.
#[inline]
fn code(m: &[u8], w: usize, x: usize, y: usize) -> u8 {
    let i = y * w + x;
    m[i - w]
        | m[i - w + 1] << 1
        | m[i + 1] << 2
        | m[i + w + 1] << 3
        | m[i + w] << 4
        | m[i + w - 1] << 5
        | m[i - 1] << 6
        | m[i - w - 1] << 7
}

/// Guo–Hall deletion tables for the two sub-iterations.
fn guo_hall_tables() -> [[bool; 256]; 2] {
    let mut t = [[false; 256]; 2];
    for c in 0..256usize {
        let p = |k: usize| (c >> k) & 1 == 1;
        // P2..P9 = N, NE, E, SE, S, SW, W, NW.
        let (p2, p3, p4, p5, p6, p7, p8, p9) = (p(0), p(1), p(2), p(3), p(4), p(5), p(6), p(7));
        let cc = (!p2 && (p3 || p4)) as u8
            + (!p4 && (p5 || p6)) as u8
            + (!p6 && (p7 || p8)) as u8
            + (!p8 && (p9 || p2)) as u8;
        let n1 = (p9 || p2) as u8 + (p3 || p4) as u8 + (p5 || p6) as u8 + (p7 || p8) as u8;
        let n2 = (p2 || p3) as u8 + (p4 || p5) as u8 + (p6 || p7) as u8 + (p8 || p9) as u8;
        let n = n1.min(n2);
        for (it, table) in t.iter_mut().enumerate() {
            let m = if it == 0 {
                (p6 || p7 || !p9) && p8
            } else {
                (p2 || p3 || !p5) && p4
            };
            table[c] = cc == 1 && (2..=3).contains(&n) && !m;
        }
    }
    t
}

/// Thins the binary ridge map to one-pixel-wide skeletons in place.
fn thin(m: &mut [u8], w: usize, h: usize) {
    static TABLES: std::sync::OnceLock<[[bool; 256]; 2]> = std::sync::OnceLock::new();
    let t = TABLES.get_or_init(guo_hall_tables);
    // Keep a one-pixel empty frame.
    for x in 0..w {
        m[x] = 0;
        m[(h - 1) * w + x] = 0;
    }
    for y in 0..h {
        m[y * w] = 0;
        m[y * w + w - 1] = 0;
    }
    let mut del = Vec::new();
    loop {
        let mut changed = false;
        for table in t.iter() {
            del.clear();
            for y in 1..h - 1 {
                for x in 1..w - 1 {
                    if m[y * w + x] == 1 && table[code(m, w, x, y) as usize] {
                        del.push(y * w + x);
                    }
                }
            }
            for &i in &del {
                m[i] = 0;
            }
            changed |= !del.is_empty();
        }
        if !changed {
            break;
        }
    }
}

const OFFS: [(isize, isize); 8] = [
    (0, -1),
    (1, -1),
    (1, 0),
    (1, 1),
    (0, 1),
    (-1, 1),
    (-1, 0),
    (-1, -1),
];

/// Crossing number of a skeleton pixel.
#[inline]
fn crossing(c: u8) -> u32 {
    let mut t = 0;
    for k in 0..8 {
        let a = (c >> k) & 1;
        let b = (c >> ((k + 1) % 8)) & 1;
        t += (a ^ b) as u32;
    }
    t / 2
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stop {
    Length,
    Ending,
    Junction,
}

/// Follows the skeleton from `start` through `first` for at most `len` steps.
/// Returns the last pixel, the steps taken and why it stopped.
fn trace(
    sk: &[u8],
    w: usize,
    start: (usize, usize),
    first: (usize, usize),
    len: usize,
    avoid: &[(usize, usize)],
) -> ((usize, usize), usize, Stop) {
    let mut visited: Vec<(usize, usize)> = Vec::with_capacity(len + 8);
    visited.push(start);
    visited.extend_from_slice(avoid);
    let mut prev = start;
    let mut cur = first;
    for step in 1..=len {
        visited.push(cur);
        let c = code(sk, w, cur.0, cur.1);
        let cn = crossing(c);
        if cn == 1 && step > 0 {
            return (cur, step, Stop::Ending);
        }
        if cn >= 3 {
            return (cur, step, Stop::Junction);
        }
        let mut cands: Vec<(usize, usize)> = Vec::with_capacity(3);
        for (k, (dx, dy)) in OFFS.iter().enumerate() {
            if (c >> k) & 1 == 1 {
                let q = (
                    (cur.0 as isize + dx) as usize,
                    (cur.1 as isize + dy) as usize,
                );
                if !visited.contains(&q) {
                    cands.push(q);
                }
            }
        }
        if cands.is_empty() {
            return (cur, step, Stop::Ending);
        }
        let far = |q: &(usize, usize)| {
            let (dx, dy) = (
                q.0 as isize - prev.0 as isize,
                q.1 as isize - prev.1 as isize,
            );
            dx * dx + dy * dy
        };
        let next = *cands.iter().max_by_key(|q| far(q)).unwrap_or(&cands[0]);
        for q in &cands {
            if *q != next {
                visited.push(*q);
            }
        }
        prev = cur;
        cur = next;
    }
    (cur, len, Stop::Length)
}

struct Raw {
    x: usize,
    y: usize,
    kind: MinutiaKind,
    /// Direction in image coordinates (y down).
    dir: f32,
    drop: bool,
}

fn find_minutiae(sk: &[u8], w: usize, h: usize, f: &Field, period: f32) -> Vec<Minutia> {
    let trace_len = (1.3 * period).round() as usize;
    let short = (0.9 * period).round() as usize;
    let mut raw: Vec<Raw> = Vec::new();
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            if sk[y * w + x] == 0 {
                continue;
            }
            let bi = (y / B) * f.bw + x / B;
            if f.depth[bi] < 2 {
                continue;
            }
            let c = code(sk, w, x, y);
            let cn = crossing(c);
            if cn == 1 {
                let k = (0..8).find(|&k| (c >> k) & 1 == 1).unwrap_or(0);
                let first = (
                    (x as isize + OFFS[k].0) as usize,
                    (y as isize + OFFS[k].1) as usize,
                );
                let (end, steps, stop) = trace(sk, w, (x, y), first, trace_len, &[]);
                let drop = stop != Stop::Length && steps < short;
                let dir = (y as f32 - end.1 as f32).atan2(x as f32 - end.0 as f32);
                raw.push(Raw {
                    x,
                    y,
                    kind: MinutiaKind::Ending,
                    dir,
                    drop,
                });
            } else if cn == 3 {
                // One representative neighbour per run of set bits.
                let mut firsts = Vec::with_capacity(3);
                let mut all = Vec::with_capacity(8);
                for k in 0..8 {
                    let on = (c >> k) & 1 == 1;
                    let prev_on = (c >> ((k + 7) % 8)) & 1 == 1;
                    if on {
                        all.push((
                            (x as isize + OFFS[k].0) as usize,
                            (y as isize + OFFS[k].1) as usize,
                        ));
                        if !prev_on {
                            // Prefer the 4-neighbour of the run when it starts on a diagonal.
                            let mut kk = k;
                            if k % 2 == 1 && (c >> ((k + 1) % 8)) & 1 == 1 {
                                kk = (k + 1) % 8;
                            }
                            firsts.push((
                                (x as isize + OFFS[kk].0) as usize,
                                (y as isize + OFFS[kk].1) as usize,
                            ));
                        }
                    }
                }
                if firsts.len() != 3 {
                    continue;
                }
                let mut dirs = [0f32; 3];
                let mut drop = false;
                for (bi_, &fst) in firsts.iter().enumerate() {
                    let avoid: Vec<(usize, usize)> =
                        all.iter().copied().filter(|&q| q != fst).collect();
                    let (end, steps, stop) = trace(sk, w, (x, y), fst, trace_len, &avoid);
                    if stop != Stop::Length && steps < short {
                        drop = true;
                    }
                    dirs[bi_] = (end.1 as f32 - y as f32).atan2(end.0 as f32 - x as f32);
                }
                // The stem is the branch farthest in angle from the other two.
                let d = |a: f32, b: f32| crate::mcc::dphi(a - b).abs();
                let pairs = [
                    d(dirs[1], dirs[2]),
                    d(dirs[0], dirs[2]),
                    d(dirs[0], dirs[1]),
                ];
                let stem = (0..3)
                    .min_by(|&a, &b| {
                        pairs[a]
                            .partial_cmp(&pairs[b])
                            .unwrap_or(std::cmp::Ordering::Equal)
                    })
                    .unwrap_or(0);
                raw.push(Raw {
                    x,
                    y,
                    kind: MinutiaKind::Bifurcation,
                    dir: dirs[stem],
                    drop,
                });
            }
        }
    }
    // Refine directions with the orientation field where they agree.
    for m in raw.iter_mut() {
        let bi = (m.y / B) * f.bw + m.x / B;
        let o = f.theta[bi];
        let cands = [o, o + PI];
        let best = if crate::mcc::dphi(cands[0] - m.dir).abs()
            < crate::mcc::dphi(cands[1] - m.dir).abs()
        {
            cands[0]
        } else {
            cands[1]
        };
        if crate::mcc::dphi(best - m.dir).abs() < PI / 6.0 {
            m.dir = best;
        }
    }
    let n = raw.len();
    let close = (0.9 * period).powi(2);
    let brk = (1.8 * period).powi(2);
    let mut drop: Vec<bool> = raw.iter().map(|m| m.drop).collect();
    for i in 0..n {
        for j in (i + 1)..n {
            let (dx, dy) = (
                raw[j].x as f32 - raw[i].x as f32,
                raw[j].y as f32 - raw[i].y as f32,
            );
            let d2 = dx * dx + dy * dy;
            if d2 > brk {
                continue;
            }
            if d2 < close {
                drop[i] = true;
                drop[j] = true;
                continue;
            }
            // Broken ridge: two endings facing each other.
            if raw[i].kind == MinutiaKind::Ending && raw[j].kind == MinutiaKind::Ending {
                let facing = crate::mcc::dphi(raw[i].dir - raw[j].dir).abs() > 2.4;
                let line = dy.atan2(dx);
                let aligned = crate::mcc::dphi(raw[i].dir - line).abs() < 0.8;
                if facing && aligned {
                    drop[i] = true;
                    drop[j] = true;
                }
            }
        }
    }
    // Endings whose ridge runs out of the foreground are cut by the print's border.
    let out_reach = 2.5 * period;
    for (i, m) in raw.iter().enumerate() {
        if m.kind != MinutiaKind::Ending || drop[i] {
            continue;
        }
        let (s, c) = m.dir.sin_cos();
        let mut t = 2.0;
        while t <= out_reach {
            let (x, y) = (m.x as f32 + t * c, m.y as f32 + t * s);
            if x < 0.0
                || y < 0.0
                || x >= w as f32
                || y >= h as f32
                || !f.fg[(y as usize / B) * f.bw + x as usize / B]
            {
                drop[i] = true;
                break;
            }
            t += 2.0;
        }
    }
    raw.iter()
        .zip(drop)
        .filter(|(_, d)| !d)
        .map(|(m, _)| {
            let bi = (m.y / B) * f.bw + m.x / B;
            let border = (f32::from(f.depth[bi]) / 5.0).min(1.0);
            let q = (f.coherence[bi].sqrt() * border * 100.0)
                .round()
                .clamp(1.0, 100.0) as u8;
            Minutia {
                x: m.x as u16,
                y: m.y as u16,
                // Image y points down: negate for the y-up convention, then turn by π to the
                // ISO direction (measured: the commercial FVC templates agree with this).
                angle: (PI - m.dir).rem_euclid(2.0 * PI),
                kind: m.kind,
                quality: q,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: u32, h: u32, mut f: impl FnMut(u32, u32) -> u8) -> GrayImage {
        let mut p = Vec::with_capacity((w * h) as usize);
        for y in 0..h {
            for x in 0..w {
                p.push(f(x, y));
            }
        }
        GrayImage::new(w, h, p)
    }

    /// Concentric-ish synthetic ridges with one break, inside an elliptical print.
    fn synthetic_print() -> GrayImage {
        img(300, 360, |x, y| {
            let (dx, dy) = (x as f32 - 150.0, y as f32 - 190.0);
            if (dx / 120.0).powi(2) + (dy / 160.0).powi(2) > 1.0 {
                return 230;
            }
            // A scar: ridges end on both sides of it.
            if (dx - 30.0).powi(2) + (dy + 20.0).powi(2) < 15.0f32.powi(2) {
                return 200;
            }
            let r = (dx * dx + dy * dy * 0.8).sqrt() + 4.0 * (dx / 37.0).sin();
            let v = (2.0 * PI * r / 9.0).cos();
            (128.0 + 90.0 * v) as u8
        })
    }

    #[test]
    fn flat_images_are_rejected_with_a_clear_error() {
        let e = Extractor::default();
        assert_eq!(
            e.extract(&img(300, 300, |_, _| 255)).unwrap_err(),
            ExtractError::NoContrast
        );
        assert_eq!(
            e.extract(&img(300, 300, |_, _| 0)).unwrap_err(),
            ExtractError::NoContrast
        );
    }

    #[test]
    fn wrong_sizes_and_resolutions_are_rejected() {
        let e = Extractor::default();
        assert!(matches!(
            e.extract(&img(100, 300, |_, _| 9)),
            Err(ExtractError::Size { .. })
        ));
        assert!(matches!(
            e.extract(&img(1200, 300, |_, _| 9)),
            Err(ExtractError::Size { .. })
        ));
        let mut i = img(300, 300, |x, _| (x % 9 * 25) as u8);
        i.dpi = 100;
        assert!(matches!(
            e.extract(&i),
            Err(ExtractError::Resolution { dpi: 100 })
        ));
        i.pixels.pop();
        i.dpi = 500;
        assert!(matches!(
            e.extract(&i),
            Err(ExtractError::BufferSize { .. })
        ));
        assert!(ExtractError::Size {
            width: 1,
            height: 2
        }
        .to_string()
        .contains("150x150"));
    }

    #[test]
    fn noise_gives_an_error_or_zero_ish_quality_never_a_panic() {
        let mut s = 12345u32;
        let noise = img(320, 320, |_, _| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 256) as u8
        });
        match Extractor::default().extract(&noise) {
            Ok(x) => assert!(x.quality.score < 25.0, "noise scored {}", x.quality.score),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn synthetic_ridges_give_a_sane_period_and_quality() {
        let x = Extractor::default().extract(&synthetic_print()).unwrap();
        assert!(
            (8.0..=10.5).contains(&x.ridge_period),
            "period {}",
            x.ridge_period
        );
        assert!(x.quality.orientation_certainty > 0.5, "{:?}", x.quality);
        assert!(x.quality.ridge_clarity > 0.6, "{:?}", x.quality);
    }

    #[test]
    fn other_resolutions_are_rescaled_to_500_dpi() {
        let base = synthetic_print();
        let mut half = base.rescaled_to(250);
        half.dpi = 250;
        assert_eq!(half.width, 150);
        let x = Extractor::default().extract(&half).unwrap();
        assert_eq!(x.template.width(), 300);
    }

    fn fvc(db: &str, name: &str) -> GrayImage {
        let root = std::env::var_os("APG_SHARED_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from("/work/shared"));
        let p = root.join("data/fingerprint/fvc2002").join(db).join(name);
        let f = std::fs::File::open(&p).unwrap_or_else(|e| {
            panic!(
                "cannot open {} ({e}); set APG_SHARED_DIR to the shared data directory",
                p.display()
            )
        });
        let mut d = tiff::decoder::Decoder::new(std::io::BufReader::new(f)).expect("tiff");
        let (w, h) = d.dimensions().expect("dimensions");
        match d.read_image().expect("pixels") {
            tiff::decoder::DecodingResult::U8(v) => GrayImage::new(w, h, v),
            _ => panic!("{} is not 8-bit", p.display()),
        }
    }

    #[test]
    fn real_prints_give_minutiae_that_match_their_mate_only() {
        let e = Extractor::default();
        let a = e.extract(&fvc("DB1_B", "101_1.tif")).unwrap();
        let b = e.extract(&fvc("DB1_B", "101_2.tif")).unwrap();
        let c = e.extract(&fvc("DB1_B", "102_1.tif")).unwrap();
        for x in [&a, &b, &c] {
            assert!(
                (15..=80).contains(&x.template.minutiae_count()),
                "{:?}",
                x.quality
            );
            assert!(x.quality.score > 20.0, "{:?}", x.quality);
            assert!(x
                .template
                .minutiae()
                .iter()
                .all(|m| m.quality >= 1 && m.quality <= 100));
        }
        let m = crate::Matcher;
        let genuine = m.compare(&a.template, &b.template);
        let impostor = m.compare(&a.template, &c.template);
        assert!(genuine > crate::THRESHOLD_FMR_1E4, "genuine {genuine}");
        assert!(impostor < crate::THRESHOLD_FMR_1E4, "impostor {impostor}");
    }

    #[test]
    fn crossing_number_counts_branches() {
        assert_eq!(crossing(0b0000_0001), 1);
        assert_eq!(crossing(0b0001_0001), 2);
        assert_eq!(crossing(0b0101_0001), 3);
        assert_eq!(crossing(0b0000_0011), 1);
    }

    #[test]
    fn thinning_reduces_a_bar_to_a_line() {
        let (w, h) = (40, 20);
        let mut m = vec![0u8; w * h];
        for y in 7..13 {
            for x in 5..35 {
                m[y * w + x] = 1;
            }
        }
        thin(&mut m, w, h);
        for x in 10..30 {
            let col: u8 = (0..h).map(|y| m[y * w + x]).sum();
            assert_eq!(col, 1, "column {x}");
        }
    }
}
