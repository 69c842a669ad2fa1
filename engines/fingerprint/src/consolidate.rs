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
/// Position tolerance where the prints are pinned together, and its growth with the distance
/// from there (skin stretches more the farther it is from the pin). Tight, because the motion
/// is refitted to the pairs; tuned on FVC2002 (9 px + 6 % suited the single-anchor alignment).
const TOL_BASE: f32 = 5.0;
const TOL_GROWTH: f32 = 0.05;
/// Direction tolerance, radians (about 29 degrees): minutia directions wobble more than
/// positions, most of all on dry and noisy prints.
const TOL_ANGLE: f32 = 0.5;
/// Margin inside which a point counts as within the other print's area.
const AREA_MARGIN: f32 = 8.0;

/// A rigid motion of A's frame onto B's: turn by `rot` about `from`, then move `from` to `to`.
#[derive(Clone, Copy, Debug)]
struct Rigid {
    rot: f32,
    sin: f32,
    cos: f32,
    from: (f32, f32),
    to: (f32, f32),
}

impl Rigid {
    fn new(rot: f32, from: (f32, f32), to: (f32, f32)) -> Self {
        let (sin, cos) = rot.sin_cos();
        Rigid {
            rot,
            sin,
            cos,
            from,
            to,
        }
    }

    fn apply(&self, (x, y): (f32, f32)) -> (f32, f32) {
        let (dx, dy) = (x - self.from.0, y - self.from.1);
        (
            self.to.0 + dx * self.cos - dy * self.sin,
            self.to.1 + dx * self.sin + dy * self.cos,
        )
    }

    fn invert(&self, (x, y): (f32, f32)) -> (f32, f32) {
        let (dx, dy) = (x - self.to.0, y - self.to.1);
        (
            self.from.0 + dx * self.cos + dy * self.sin,
            self.from.1 - dx * self.sin + dy * self.cos,
        )
    }

    /// Least-squares rigid motion taking the paired minutiae of A onto their partners in B
    /// (2-D Procrustes: centroids, then the rotation that best lines up the spreads).
    fn fit(a: &Geometry, b: &Geometry, pairs: &[(f32, usize, usize)]) -> Self {
        let n = pairs.len() as f32;
        let centroid = |pos: &[(f32, f32)], side_b: bool| {
            let (sx, sy) = pairs.iter().fold((0.0, 0.0), |acc, &(_, i, j)| {
                let p = pos[if side_b { j } else { i }];
                (acc.0 + p.0, acc.1 + p.1)
            });
            (sx / n, sy / n)
        };
        let ca = centroid(&a.pos, false);
        let cb = centroid(&b.pos, true);
        let (mut dot, mut cross) = (0.0, 0.0);
        for &(_, i, j) in pairs {
            let (ax, ay) = (a.pos[i].0 - ca.0, a.pos[i].1 - ca.1);
            let (bx, by) = (b.pos[j].0 - cb.0, b.pos[j].1 - cb.1);
            dot += ax * bx + ay * by;
            cross += ax * by - ay * bx;
        }
        Rigid::new(cross.atan2(dot), ca, cb)
    }
}

/// Rounds of refitting the motion to the pairs it found; the first fit does most of the work.
const REFITS: usize = 2;

/// Tries each anchor pair `(minutia of a, minutia of b)` as the rigid alignment, refits the
/// motion to the minutiae it pairs (one minutia's direction is only good to a few degrees,
/// which throws far minutiae out of tolerance), and keeps the alignment under which most
/// minutiae agree.
pub(crate) fn best_agreement(a: &Geometry, b: &Geometry, anchors: &[(usize, usize)]) -> Agreement {
    let mut best = Agreement::default();
    let mut work = Work::default();
    for &(ia, ib) in anchors {
        let mut motion = Rigid::new(dphi(b.ang[ib] - a.ang[ia]), a.pos[ia], b.pos[ib]);
        let mut pairs = work.pairs_under(a, b, &motion);
        for _ in 0..REFITS {
            if pairs.len() < 3 {
                break;
            }
            let refit = Rigid::fit(a, b, &pairs);
            let more = work.pairs_under(a, b, &refit);
            if more.len() <= pairs.len() {
                break;
            }
            motion = refit;
            pairs = more;
        }
        if pairs.len() <= best.matched {
            continue;
        }
        let overlap_a = a
            .pos
            .iter()
            .filter(|&&p| crate::mcc::near_hull(&b.hull, motion.apply(p), AREA_MARGIN))
            .count();
        let overlap_b = b
            .pos
            .iter()
            .filter(|&&p| crate::mcc::near_hull(&a.hull, motion.invert(p), AREA_MARGIN))
            .count();
        best = Agreement {
            matched: pairs.len(),
            overlap_a,
            overlap_b,
        };
    }
    best
}

/// Scratch buffers reused across alignments.
#[derive(Default)]
struct Work {
    moved: Vec<(f32, f32)>,
    cand: Vec<(f32, u16, u16)>,
}

impl Work {
    /// Minutiae paired one-to-one under `motion`, closest first; the position tolerance grows
    /// with the distance from where the prints are pinned together.
    fn pairs_under(
        &mut self,
        a: &Geometry,
        b: &Geometry,
        motion: &Rigid,
    ) -> Vec<(f32, usize, usize)> {
        self.moved.clear();
        self.moved.extend(a.pos.iter().map(|&p| motion.apply(p)));
        self.cand.clear();
        let pin = motion.to;
        for (i, &(x, y)) in self.moved.iter().enumerate() {
            let r = ((x - pin.0).powi(2) + (y - pin.1).powi(2)).sqrt();
            let tol = TOL_BASE + TOL_GROWTH * r;
            for (j, &(qx, qy)) in b.pos.iter().enumerate() {
                let d2 = (x - qx).powi(2) + (y - qy).powi(2);
                if d2 > tol * tol {
                    continue;
                }
                if dphi(a.ang[i] + motion.rot - b.ang[j]).abs() > TOL_ANGLE {
                    continue;
                }
                self.cand.push((d2, i as u16, j as u16));
            }
        }
        self.cand
            .sort_unstable_by(|x, y| x.0.partial_cmp(&y.0).unwrap_or(std::cmp::Ordering::Equal));
        assign_one_to_one(&self.cand, a.pos.len(), b.pos.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(pos: Vec<(f32, f32)>, ang: Vec<f32>) -> Geometry {
        let hull = crate::mcc::convex_hull(&pos);
        Geometry { pos, ang, hull }
    }

    /// A spread of 30 minutiae, and the same turned by 2.5 rad and moved; `anchor_error` is
    /// added to the direction of the second print's minutia 0.
    fn print_and_turned_copy(anchor_error: f32) -> (Geometry, Geometry) {
        let pos: Vec<(f32, f32)> = (0..30)
            .map(|k| ((k * 37 % 200) as f32, -((k * 53 % 260) as f32)))
            .collect();
        let ang: Vec<f32> = (0..30).map(|k| (k as f32 * 0.7) % 6.2).collect();
        let rot = 2.5f32;
        let (s, c) = rot.sin_cos();
        let bpos = pos
            .iter()
            .map(|&(x, y)| (x * c - y * s + 40.0, x * s + y * c - 10.0))
            .collect();
        let mut bang: Vec<f32> = ang
            .iter()
            .map(|t| (t + rot).rem_euclid(std::f32::consts::TAU))
            .collect();
        bang[0] += anchor_error;
        (geometry(pos, ang), geometry(bpos, bang))
    }

    #[test]
    fn a_rotated_copy_agrees_everywhere() {
        let (a, b) = print_and_turned_copy(0.0);
        let g = best_agreement(&a, &b, &[(3, 3)]);
        assert_eq!(g.matched, 30);
        assert_eq!((g.overlap_a, g.overlap_b), (30, 30));
        assert!((g.score() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn the_refit_corrects_an_anchor_whose_direction_is_off() {
        // The anchor minutia's direction is 0.1 rad off (minutia directions are only good to
        // a few degrees): aligned on it alone, the minutiae more than 100 px away land beyond
        // the tolerance.
        let (a, b) = print_and_turned_copy(0.1);
        let single = Rigid::new(dphi(b.ang[0] - a.ang[0]), a.pos[0], b.pos[0]);
        let unrefined = Work::default().pairs_under(&a, &b, &single).len();
        assert!((3..25).contains(&unrefined), "{unrefined}");
        let g = best_agreement(&a, &b, &[(0, 0)]);
        assert_eq!(g.matched, 30);
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
