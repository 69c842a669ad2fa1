//! Global consolidation of a local (MCC) match: align the two prints on the strongest
//! minutia pairs and count the minutiae that agree over the whole overlap.
//!
//! MCC's score averages the best few local similarities, so it cannot tell a print that
//! agrees everywhere the two impressions overlap from one that agrees in one small patch.
//! Counting agreeing minutiae against the minutiae inside the common area can: a genuine
//! pair with little overlap still matches most of what it shares, an impostor does not.

use crate::mcc::{assign_one_to_one, dphi};

/// Positions (y up) and directions of all of a template's minutiae, and its convex hull.
pub(crate) struct Geometry {
    pub pos: Vec<(f32, f32)>,
    pub ang: Vec<f32>,
    pub hull: Vec<(f32, f32)>,
}

/// Result of the best alignment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Agreement {
    /// Minutiae paired one-to-one within the position and direction tolerances.
    pub matched: usize,
    /// Minutiae of each print inside the other's area after alignment.
    pub overlap_a: usize,
    pub overlap_b: usize,
}

impl Agreement {
    /// Share of the common minutiae that agree, damped when few minutiae are in common so a
    /// tiny overlap cannot look perfect by chance.
    pub fn score(&self) -> f32 {
        if self.matched == 0 {
            return 0.0;
        }
        let m = self.matched as f32;
        let floor = MIN_COMMON as f32;
        let na = (self.overlap_a as f32).max(floor).max(m);
        let nb = (self.overlap_b as f32).max(floor).max(m);
        m * m / (na * nb)
    }
}

/// Fewest minutiae the common area is taken to hold.
const MIN_COMMON: usize = 12;
/// Position tolerance at the anchor, and its growth with the distance from it (skin stretches
/// more the farther it is from where the prints are pinned together).
const TOL_BASE: f32 = 9.0;
const TOL_GROWTH: f32 = 0.06;
/// Direction tolerance, radians (about 23 degrees).
const TOL_ANGLE: f32 = 0.4;
/// Margin inside which a point counts as within the other print's area.
const AREA_MARGIN: f32 = 8.0;

/// Tries each anchor pair `(minutia of a, minutia of b)` as the rigid alignment and keeps the
/// one under which most minutiae agree.
pub(crate) fn best_agreement(a: &Geometry, b: &Geometry, anchors: &[(usize, usize)]) -> Agreement {
    let mut best = Agreement::default();
    let mut cand: Vec<(f32, u16, u16)> = Vec::with_capacity(a.pos.len() * 4);
    let mut moved: Vec<(f32, f32)> = Vec::with_capacity(a.pos.len());
    for &(ia, ib) in anchors {
        let rot = dphi(b.ang[ib] - a.ang[ia]);
        let (s, c) = rot.sin_cos();
        let (ax, ay) = a.pos[ia];
        let (bx, by) = b.pos[ib];
        moved.clear();
        moved.extend(a.pos.iter().map(|&(x, y)| {
            let (dx, dy) = (x - ax, y - ay);
            (bx + dx * c - dy * s, by + dx * s + dy * c)
        }));
        cand.clear();
        for (i, &(x, y)) in moved.iter().enumerate() {
            let r = ((x - bx).powi(2) + (y - by).powi(2)).sqrt();
            let tol = TOL_BASE + TOL_GROWTH * r;
            for (j, &(qx, qy)) in b.pos.iter().enumerate() {
                let d2 = (x - qx).powi(2) + (y - qy).powi(2);
                if d2 > tol * tol {
                    continue;
                }
                if dphi(a.ang[i] + rot - b.ang[j]).abs() > TOL_ANGLE {
                    continue;
                }
                cand.push((d2, i as u16, j as u16));
            }
        }
        // Closest first.
        cand.sort_unstable_by(|x, y| x.0.partial_cmp(&y.0).unwrap_or(std::cmp::Ordering::Equal));
        let matched = assign_one_to_one(&cand, a.pos.len(), b.pos.len()).len();
        if matched <= best.matched {
            continue;
        }
        let overlap_a = moved
            .iter()
            .filter(|&&p| crate::mcc::near_hull(&b.hull, p, AREA_MARGIN))
            .count();
        // B's minutiae in A's area: move them back into A's frame.
        let overlap_b = b
            .pos
            .iter()
            .filter(|&&(x, y)| {
                let (dx, dy) = (x - bx, y - by);
                let p = (ax + dx * c + dy * s, ay - dx * s + dy * c);
                crate::mcc::near_hull(&a.hull, p, AREA_MARGIN)
            })
            .count();
        best = Agreement {
            matched,
            overlap_a,
            overlap_b,
        };
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(pos: Vec<(f32, f32)>, ang: Vec<f32>) -> Geometry {
        let hull = crate::mcc::convex_hull(&pos);
        Geometry { pos, ang, hull }
    }

    #[test]
    fn a_rotated_copy_agrees_everywhere() {
        let pos: Vec<(f32, f32)> = (0..30)
            .map(|k| ((k * 37 % 200) as f32, -((k * 53 % 260) as f32)))
            .collect();
        let ang: Vec<f32> = (0..30).map(|k| (k as f32 * 0.7) % 6.2).collect();
        let a = geometry(pos.clone(), ang.clone());
        let rot = 2.5f32;
        let (s, c) = rot.sin_cos();
        let bpos = pos
            .iter()
            .map(|&(x, y)| (x * c - y * s + 40.0, x * s + y * c - 10.0))
            .collect();
        let bang = ang
            .iter()
            .map(|t| (t + rot).rem_euclid(std::f32::consts::TAU))
            .collect();
        let b = geometry(bpos, bang);
        let g = best_agreement(&a, &b, &[(3, 3)]);
        assert_eq!(g.matched, 30);
        assert_eq!((g.overlap_a, g.overlap_b), (30, 30));
        assert!((g.score() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn few_common_minutiae_cannot_score_high() {
        let g = Agreement {
            matched: 4,
            overlap_a: 4,
            overlap_b: 5,
        };
        assert!(g.score() < 0.12, "{}", g.score());
    }
}
