//! Minutia Cylinder-Code matching (Cappelli, Maio, Maltoni, IEEE TPAMI 2010), bit version,
//! with a greedy one-to-one pair assignment and relaxation-based consolidation (LSA-R style),
//! plus a cheap rotation/translation-invariant pair-feature bit vector used as the first stage
//! of 1:N search.

use std::f32::consts::PI;

use crate::consolidate::{best_agreement, Geometry};
use crate::template::{Minutia, Template};

const R: f32 = 70.0;
const NS: usize = 16;
const ND: usize = 6;
const DS: f32 = 2.0 * R / NS as f32;
const DD: f32 = 2.0 * PI / ND as f32;
const SIGMA_S: f32 = 28.0 / 3.0;
const SIGMA_D: f32 = 2.0 * PI / 9.0;
const MU_PSI: f32 = 0.01;
const OMEGA: f32 = 50.0;
const MIN_VC_FRAC: f32 = 0.75;
const MIN_M: usize = 2;
const MIN_ME_FRAC: f32 = 0.60;
const MIN_NP: f32 = 4.0;
const MAX_NP: f32 = 12.0;
const MU_P: f32 = 20.0;
const TAU_P: f32 = 0.4;
const N_REL: usize = 5;
const W_R: f32 = 0.5;
const RHO: [(f32, f32); 3] = [(5.0, -1.6), (PI / 12.0, -30.0), (PI / 12.0, -30.0)];

/// Words of one cylinder: NS*NS*ND bits.
const CYL_WORDS: usize = NS * NS * ND / 64;
/// Words of the spatial validity mask: NS*NS bits.
const MASK_WORDS: usize = NS * NS / 64;

/// Data derived from a template once and reused by every comparison.
pub(crate) struct Prepared {
    /// Every minutia, for the global consolidation.
    geometry: Geometry,
    /// Index in `geometry` of each valid cylinder's minutia.
    minutia: Vec<u16>,
    /// Positions in a y-up frame and angles, per valid cylinder.
    pos: Vec<(f32, f32)>,
    ang: Vec<f32>,
    bits: Vec<[u64; CYL_WORDS]>,
    mask: Vec<[u64; MASK_WORDS]>,
}

/// Cells whose centre lies inside the cylinder's circle.
fn cells_in_circle() -> u32 {
    let mut c = 0;
    for i in 0..NS {
        for j in 0..NS {
            let u = (i as f32 - (NS as f32 - 1.0) / 2.0) * DS;
            let v = (j as f32 - (NS as f32 - 1.0) / 2.0) * DS;
            if u * u + v * v <= R * R {
                c += 1;
            }
        }
    }
    c
}

/// Wraps an angle difference into `[-π, π)`.
#[inline]
pub(crate) fn dphi(a: f32) -> f32 {
    let mut d = (a + PI).rem_euclid(2.0 * PI) - PI;
    if d >= PI {
        d -= 2.0 * PI;
    }
    d
}

/// Error function, Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
fn erf(x: f32) -> f32 {
    let s = x.signum();
    let x = x.abs() as f64;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    s * y as f32
}

#[inline]
fn sigmoid(v: f32, mu: f32, tau: f32) -> f32 {
    1.0 / (1.0 + (-tau * (v - mu)).exp())
}

/// Convex hull (counter-clockwise) of points, Andrew's monotone chain.
pub(crate) fn convex_hull(pts: &[(f32, f32)]) -> Vec<(f32, f32)> {
    let mut p: Vec<(f32, f32)> = pts.to_vec();
    p.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    p.dedup();
    if p.len() < 3 {
        return p;
    }
    let cross = |o: (f32, f32), a: (f32, f32), b: (f32, f32)| {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    let mut lower: Vec<(f32, f32)> = Vec::with_capacity(p.len());
    for &q in &p {
        while lower.len() >= 2 && cross(lower[lower.len() - 2], lower[lower.len() - 1], q) <= 0.0 {
            lower.pop();
        }
        lower.push(q);
    }
    let mut upper: Vec<(f32, f32)> = Vec::with_capacity(p.len());
    for &q in p.iter().rev() {
        while upper.len() >= 2 && cross(upper[upper.len() - 2], upper[upper.len() - 1], q) <= 0.0 {
            upper.pop();
        }
        upper.push(q);
    }
    lower.pop();
    upper.pop();
    lower.extend(upper);
    lower
}

/// True when `q` is inside the hull or within `omega` of it.
pub(crate) fn near_hull(hull: &[(f32, f32)], q: (f32, f32), omega: f32) -> bool {
    if hull.is_empty() {
        return false;
    }
    if hull.len() < 3 {
        return hull
            .iter()
            .any(|h| (h.0 - q.0).powi(2) + (h.1 - q.1).powi(2) <= omega * omega);
    }
    let mut inside = true;
    let mut best = f32::MAX;
    for k in 0..hull.len() {
        let a = hull[k];
        let b = hull[(k + 1) % hull.len()];
        let (ex, ey) = (b.0 - a.0, b.1 - a.1);
        let (qx, qy) = (q.0 - a.0, q.1 - a.1);
        if ex * qy - ey * qx < 0.0 {
            inside = false;
        }
        let l2 = ex * ex + ey * ey;
        let t = if l2 > 0.0 {
            ((qx * ex + qy * ey) / l2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let (dx, dy) = (qx - t * ex, qy - t * ey);
        best = best.min(dx * dx + dy * dy);
    }
    inside || best <= omega * omega
}

/// Minutiae positions in a y-up frame, the frame their directions are measured in.
pub(crate) fn positions_y_up(ms: &[Minutia]) -> Vec<(f32, f32)> {
    ms.iter()
        .map(|m| (f32::from(m.x), -f32::from(m.y)))
        .collect()
}

impl Prepared {
    pub(crate) fn new(ms: &[Minutia]) -> Self {
        let all_pos = positions_y_up(ms);
        let hull = convex_hull(&all_pos);
        let circle = cells_in_circle();
        let min_vc = (MIN_VC_FRAC * circle as f32).ceil() as u32;
        let gs_norm = 1.0 / (SIGMA_S * (2.0 * PI).sqrt());
        let reach = 3.0 * SIGMA_S;
        let half = (NS as f32 - 1.0) / 2.0;
        let mut pos = Vec::new();
        let mut minutia = Vec::new();
        let mut ang = Vec::new();
        let mut bits = Vec::new();
        let mut mask = Vec::new();
        let mut cells = vec![0f32; NS * NS * ND];
        for (mi, m) in ms.iter().enumerate() {
            let (px, py) = all_pos[mi];
            let (s, c) = m.angle.sin_cos();
            // Spatial validity.
            let mut mk = [0u64; MASK_WORDS];
            let mut valid_cells = 0;
            for i in 0..NS {
                for j in 0..NS {
                    let u = (i as f32 - half) * DS;
                    let v = (j as f32 - half) * DS;
                    if u * u + v * v > R * R {
                        continue;
                    }
                    let wx = px + u * c - v * s;
                    let wy = py + u * s + v * c;
                    if near_hull(&hull, (wx, wy), OMEGA) {
                        let idx = i * NS + j;
                        mk[idx / 64] |= 1 << (idx % 64);
                        valid_cells += 1;
                    }
                }
            }
            let neighbours = all_pos
                .iter()
                .enumerate()
                .filter(|&(t, &(tx, ty))| {
                    t != mi && (tx - px).powi(2) + (ty - py).powi(2) <= (R + reach).powi(2)
                })
                .count();
            if valid_cells < min_vc || neighbours < MIN_M {
                continue;
            }
            cells.iter_mut().for_each(|v| *v = 0.0);
            for (t, mt) in ms.iter().enumerate() {
                if t == mi {
                    continue;
                }
                let (dx, dy) = (all_pos[t].0 - px, all_pos[t].1 - py);
                if dx * dx + dy * dy > (R + reach).powi(2) {
                    continue;
                }
                // Neighbour in the cylinder's frame, in cell units.
                let u = (dx * c + dy * s) / DS + half;
                let v = (-dx * s + dy * c) / DS + half;
                let dtheta = dphi(mt.angle - m.angle);
                let mut gd = [0f32; ND];
                for (k, g) in gd.iter_mut().enumerate() {
                    let centre = -PI + (k as f32 + 0.5) * DD;
                    let alpha = dphi(centre - dtheta);
                    let k2 = std::f32::consts::SQRT_2 * SIGMA_D;
                    *g = 0.5 * (erf((alpha + DD / 2.0) / k2) - erf((alpha - DD / 2.0) / k2));
                }
                let r_cells = reach / DS;
                let i0 = (u - r_cells).ceil().max(0.0) as usize;
                let i1 = (u + r_cells).floor().min(NS as f32 - 1.0);
                let j0 = (v - r_cells).ceil().max(0.0) as usize;
                let j1 = (v + r_cells).floor().min(NS as f32 - 1.0);
                if i1 < 0.0 || j1 < 0.0 {
                    continue;
                }
                for i in i0..=i1 as usize {
                    for j in j0..=j1 as usize {
                        let d2 = ((i as f32 - u).powi(2) + (j as f32 - v).powi(2)) * DS * DS;
                        if d2 > reach * reach {
                            continue;
                        }
                        let gsv = gs_norm * (-d2 / (2.0 * SIGMA_S * SIGMA_S)).exp();
                        let base = i * NS + j;
                        for k in 0..ND {
                            cells[k * NS * NS + base] += gsv * gd[k];
                        }
                    }
                }
            }
            let mut b = [0u64; CYL_WORDS];
            for k in 0..ND {
                for idx in 0..NS * NS {
                    let valid = mk[idx / 64] >> (idx % 64) & 1 == 1;
                    if valid && cells[k * NS * NS + idx] > MU_PSI {
                        let bit = k * NS * NS + idx;
                        b[bit / 64] |= 1 << (bit % 64);
                    }
                }
            }
            pos.push((px, py));
            minutia.push(mi as u16);
            ang.push(m.angle);
            bits.push(b);
            mask.push(mk);
        }
        Prepared {
            geometry: Geometry {
                ang: ms.iter().map(|m| m.angle).collect(),
                pos: all_pos,
                hull,
            },
            minutia,
            pos,
            ang,
            bits,
            mask,
        }
    }

    /// Valid cylinders.
    pub(crate) fn len(&self) -> usize {
        self.bits.len()
    }

    /// Bytes held in memory for this template's matcher data.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bits.len() * (CYL_WORDS * 8 + MASK_WORDS * 8 + 12 + 2)
            + (self.geometry.pos.len() + self.geometry.hull.len()) * 8
            + self.geometry.ang.len() * 4
            + std::mem::size_of::<Self>()
    }
}

/// Every matchable cylinder pair of `a` and `b` with its similarity.
#[allow(unsafe_code)]
fn all_similarities(a: &Prepared, b: &Prepared, min_me: u32) -> Vec<(f32, u16, u16)> {
    #[cfg(target_arch = "x86_64")]
    if crate::popcount::available() {
        // SAFETY: the CPU has POPCNT, checked at run time.
        return unsafe { all_similarities_popcnt(a, b, min_me) };
    }
    all_similarities_body(a, b, min_me)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn all_similarities_popcnt(a: &Prepared, b: &Prepared, min_me: u32) -> Vec<(f32, u16, u16)> {
    all_similarities_body(a, b, min_me)
}

#[inline(always)]
fn all_similarities_body(a: &Prepared, b: &Prepared, min_me: u32) -> Vec<(f32, u16, u16)> {
    let (na, nb) = (a.len(), b.len());
    let mut sims = Vec::with_capacity(na * nb / 2);
    for i in 0..na {
        for j in 0..nb {
            let s = cylinder_similarity(a, i, b, j, min_me);
            if s > 0.0 {
                sims.push((s, i as u16, j as u16));
            }
        }
    }
    sims
}

/// Similarity of two bit cylinders, 0 when they are not matchable. Unlike the original MCC
/// there is no limit on the direction difference: prints may be rotated by any angle.
#[inline(always)]
fn cylinder_similarity(a: &Prepared, i: usize, b: &Prepared, j: usize, min_me: u32) -> f32 {
    let (ma, mb) = (&a.mask[i], &b.mask[j]);
    let mut m = [0u64; MASK_WORDS];
    let mut pm = 0;
    for w in 0..MASK_WORDS {
        m[w] = ma[w] & mb[w];
        pm += m[w].count_ones();
    }
    if pm < min_me {
        return 0.0;
    }
    let (ca, cb) = (&a.bits[i], &b.bits[j]);
    let (mut na, mut nb, mut nx) = (0u32, 0u32, 0u32);
    for w in 0..CYL_WORDS {
        let mw = m[w % MASK_WORDS];
        let x = ca[w] & mw;
        let y = cb[w] & mw;
        na += x.count_ones();
        nb += y.count_ones();
        nx += (x ^ y).count_ones();
    }
    let den = (na as f32).sqrt() + (nb as f32).sqrt();
    if den == 0.0 {
        return 0.0;
    }
    1.0 - (nx as f32).sqrt() / den
}

/// 1:1 comparison of minutiae templates. Scores are in `[0, 1]`; higher is more similar.
/// See [`crate::THRESHOLD_FMR_1E4`] for the decision threshold.
#[derive(Clone, Debug, Default)]
pub struct Matcher;

impl Matcher {
    /// Compares a probe with a reference; symmetric up to floating-point rounding.
    pub fn compare(&self, probe: &Template, reference: &Template) -> f32 {
        compare_prepared(probe.prepared(), reference.prepared())
    }
}

/// Greedy one-to-one assignment: walks `ranked` (best first) and keeps each pair whose two
/// sides, out of `na` and `nb`, are both still free.
pub(crate) fn assign_one_to_one(
    ranked: &[(f32, u16, u16)],
    na: usize,
    nb: usize,
) -> Vec<(f32, usize, usize)> {
    let most = na.min(nb);
    let mut used_a = vec![false; na];
    let mut used_b = vec![false; nb];
    let mut pairs = Vec::with_capacity(most);
    for &(s, i, j) in ranked {
        let (i, j) = (usize::from(i), usize::from(j));
        if !used_a[i] && !used_b[j] {
            used_a[i] = true;
            used_b[j] = true;
            pairs.push((s, i, j));
            if pairs.len() == most {
                break;
            }
        }
    }
    pairs
}

pub(crate) fn compare_prepared(a: &Prepared, b: &Prepared) -> f32 {
    let (na, nb) = (a.len(), b.len());
    if na == 0 || nb == 0 {
        return 0.0;
    }
    let min_me = (MIN_ME_FRAC * cells_in_circle_cached() as f32).ceil() as u32;
    let mut sims = all_similarities(a, b, min_me);
    if sims.is_empty() {
        return 0.0;
    }
    sims.sort_unstable_by(|x, y| y.0.partial_cmp(&x.0).unwrap_or(std::cmp::Ordering::Equal));
    let pairs = assign_one_to_one(&sims, na, nb);
    let np =
        (MIN_NP + (sigmoid(na.min(nb) as f32, MU_P, TAU_P) * (MAX_NP - MIN_NP)).round()) as usize;
    let p = pairs.len();
    if p < 2 {
        // One pair anchors no alignment that other minutiae could confirm: no global agreement.
        return 0.0;
    }
    // Relaxation: pairs that are geometrically compatible with other strong pairs keep their
    // similarity, isolated ones fade.
    let mut rho = vec![0f32; p * p];
    for t in 0..p {
        let (_, at, bt) = pairs[t];
        for k in (t + 1)..p {
            let (_, ak, bk) = pairs[k];
            let (ax, ay) = (a.pos[at].0 - a.pos[ak].0, a.pos[at].1 - a.pos[ak].1);
            let (bx, by) = (b.pos[bt].0 - b.pos[bk].0, b.pos[bt].1 - b.pos[bk].1);
            let da = (ax * ax + ay * ay).sqrt();
            let db = (bx * bx + by * by).sqrt();
            let d1 = (da - db).abs();
            let r1 = sigmoid(d1, RHO[0].0, RHO[0].1);
            if r1 < 1e-4 {
                continue;
            }
            let d2 = dphi(dphi(a.ang[at] - a.ang[ak]) - dphi(b.ang[bt] - b.ang[bk])).abs();
            let ra = dphi(a.ang[at] - ay.atan2(ax));
            let rb = dphi(b.ang[bt] - by.atan2(bx));
            let d3 = dphi(ra - rb).abs();
            let v = r1 * sigmoid(d2, RHO[1].0, RHO[1].1) * sigmoid(d3, RHO[2].0, RHO[2].1);
            rho[t * p + k] = v;
            rho[k * p + t] = v;
        }
    }
    let lambda0: Vec<f32> = pairs.iter().map(|x| x.0).collect();
    let mut lambda = lambda0.clone();
    let mut next = vec![0f32; p];
    for _ in 0..N_REL {
        for t in 0..p {
            let row = &rho[t * p..(t + 1) * p];
            let mut acc = 0.0;
            for k in 0..p {
                acc += row[k] * lambda[k];
            }
            next[t] = W_R * lambda[t] + (1.0 - W_R) * acc / (p - 1) as f32;
        }
        std::mem::swap(&mut lambda, &mut next);
    }
    let mut order: Vec<usize> = (0..p).collect();
    order.sort_unstable_by(|&x, &y| {
        let ex = lambda[x] / lambda0[x];
        let ey = lambda[y] / lambda0[y];
        ey.partial_cmp(&ex).unwrap_or(std::cmp::Ordering::Equal)
    });
    let take = np.min(p);
    let s: f32 = order[..take].iter().map(|&t| lambda[t]).sum();
    let local = (s / np as f32).clamp(0.0, 1.0);
    let anchors: Vec<(usize, usize)> = order[..take.min(ANCHORS)]
        .iter()
        .map(|&t| {
            let (_, i, j) = pairs[t];
            (usize::from(a.minutia[i]), usize::from(b.minutia[j]))
        })
        .collect();
    fuse(
        local,
        best_agreement(&a.geometry, &b.geometry, &anchors).score(),
    )
}

/// Relaxed pairs tried as the anchor of the global alignment.
const ANCHORS: usize = 6;

/// The final score: the local (MCC) score, weighted by the share of the common area that
/// agrees. Both must be high. (With the tight tolerances of the refitted alignment the plain
/// product separates best; the square root suited the looser single-anchor alignment.)
fn fuse(local: f32, global: f32) -> f32 {
    local * global
}

fn cells_in_circle_cached() -> u32 {
    static C: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *C.get_or_init(cells_in_circle)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::template::MinutiaKind;

    /// A pseudo-random but fixed minutiae set.
    pub(crate) fn synthetic(seed: u32, n: usize) -> Vec<Minutia> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        (0..n)
            .map(|_| Minutia {
                x: (40 + next() % 220) as u16,
                y: (40 + next() % 300) as u16,
                angle: (next() % 6283) as f32 / 1000.0,
                kind: if next() % 2 == 0 {
                    MinutiaKind::Ending
                } else {
                    MinutiaKind::Bifurcation
                },
                quality: 80,
            })
            .collect()
    }

    pub(crate) fn transformed(ms: &[Minutia], rot: f32, tx: f32, ty: f32) -> Vec<Minutia> {
        let (cx, cy) = (150.0, 200.0);
        let (s, c) = rot.sin_cos();
        ms.iter()
            .map(|m| {
                // Rotate in the y-up frame about (cx, cy).
                let x = f32::from(m.x) - cx;
                let y = -(f32::from(m.y) - cy);
                let (rx, ry) = (x * c - y * s, x * s + y * c);
                Minutia {
                    x: (rx + cx + tx + 200.0) as u16,
                    y: (-ry + cy + ty + 200.0) as u16,
                    angle: (m.angle + rot).rem_euclid(2.0 * PI),
                    ..*m
                }
            })
            .collect()
    }

    #[test]
    fn erf_is_accurate() {
        assert!((erf(0.5) - 0.520_499_9).abs() < 1e-5);
        assert!((erf(-1.0) + 0.842_700_8).abs() < 1e-5);
    }

    #[test]
    fn hull_contains_interior_points() {
        let pts = [
            (0.0, 0.0),
            (10.0, 0.0),
            (10.0, 10.0),
            (0.0, 10.0),
            (5.0, 5.0),
        ];
        let h = convex_hull(&pts);
        assert_eq!(h.len(), 4);
        assert!(near_hull(&h, (5.0, 5.0), 0.0));
        assert!(near_hull(&h, (13.0, 5.0), 5.0));
        assert!(!near_hull(&h, (30.0, 5.0), 5.0));
    }

    #[test]
    fn score_is_invariant_to_rotation_and_translation() {
        let a = Template::from_minutiae(400, 500, 80, synthetic(7, 40));
        for &rot in &[0.0f32, 0.7, 2.0, PI, 4.5] {
            let b =
                Template::from_minutiae(1000, 1000, 80, transformed(&a.minutiae, rot, 30.0, -20.0));
            let s = Matcher.compare(&a, &b);
            assert!(s > 0.6, "rotation {rot}: score {s}");
        }
    }

    #[test]
    fn different_minutiae_sets_score_low() {
        let a = Template::from_minutiae(400, 500, 80, synthetic(7, 40));
        let b = Template::from_minutiae(400, 500, 80, synthetic(99, 40));
        let same = Matcher.compare(&a, &a);
        let diff = Matcher.compare(&a, &b);
        assert!(same > 0.8, "{same}");
        assert!(diff < 0.25, "{diff}");
    }

    #[test]
    fn empty_templates_score_zero() {
        let a = Template::from_minutiae(400, 500, 0, vec![]);
        let b = Template::from_minutiae(400, 500, 80, synthetic(7, 40));
        assert_eq!(Matcher.compare(&a, &b), 0.0);
        assert_eq!(Matcher.compare(&b, &a), 0.0);
    }

    #[test]
    fn the_popcnt_copy_gives_the_same_similarities_as_the_portable_code() {
        let a = Template::from_minutiae(400, 500, 80, synthetic(7, 40));
        let b = Template::from_minutiae(400, 500, 80, transformed(&a.minutiae, 0.4, 12.0, 3.0));
        let (pa, pb) = (a.prepared(), b.prepared());
        let min_me = (MIN_ME_FRAC * cells_in_circle_cached() as f32).ceil() as u32;
        let portable = all_similarities_body(pa, pb, min_me);
        assert!(!portable.is_empty());
        assert_eq!(all_similarities(pa, pb, min_me), portable);
    }
}
