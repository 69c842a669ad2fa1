//! Verification error rates from genuine and impostor score lists.

/// (threshold, FMR, FNMR) points, thresholds ascending.
pub type Curve = Vec<(f64, f64, f64)>;

/// Error rates of one comparison experiment (scores: higher = more similar).
#[derive(Clone, Debug)]
pub struct Rates {
    pub genuine: usize,
    pub impostor: usize,
    pub eer: f64,
    pub fmr100: f64,
    pub fmr1000: f64,
    pub zero_fmr: f64,
    /// FNMR at FMR = 1e-4, only when there are at least 10,000 impostor scores.
    pub fmr10000: Option<f64>,
}

/// FMR and FNMR at threshold `t` (accept when score >= t).
pub fn at(gen: &[f64], imp: &[f64], t: f64) -> (f64, f64) {
    let fmr = imp.iter().filter(|&&s| s >= t).count() as f64 / imp.len().max(1) as f64;
    let fnmr = gen.iter().filter(|&&s| s < t).count() as f64 / gen.len().max(1) as f64;
    (fmr, fnmr)
}

/// All distinct thresholds worth testing, ascending, plus one above the maximum.
fn thresholds(gen: &[f64], imp: &[f64]) -> Vec<f64> {
    let mut t: Vec<f64> = gen.iter().chain(imp).copied().collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    t.dedup();
    let top = t.last().copied().unwrap_or(0.0);
    t.push(top + 1e-6);
    t
}

/// (FMR, FNMR) at every threshold, thresholds ascending.
pub fn curve(gen: &[f64], imp: &[f64]) -> Curve {
    let mut g = gen.to_vec();
    let mut i = imp.to_vec();
    g.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    i.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    thresholds(gen, imp)
        .into_iter()
        .map(|t| {
            let gl = g.partition_point(|&s| s < t);
            let il = i.partition_point(|&s| s < t);
            let fnmr = gl as f64 / g.len().max(1) as f64;
            let fmr = (i.len() - il) as f64 / i.len().max(1) as f64;
            (t, fmr, fnmr)
        })
        .collect()
}

/// Lowest FNMR with FMR <= `limit`.
pub fn fnmr_at_fmr(c: &[(f64, f64, f64)], limit: f64) -> f64 {
    c.iter()
        .filter(|p| p.1 <= limit)
        .map(|p| p.2)
        .fold(1.0, f64::min)
}

/// Lowest threshold with FMR <= `limit`.
pub fn threshold_at_fmr(c: &[(f64, f64, f64)], limit: f64) -> f64 {
    c.iter()
        .find(|p| p.1 <= limit)
        .map(|p| p.0)
        .unwrap_or(f64::INFINITY)
}

pub fn rates(gen: &[f64], imp: &[f64]) -> Rates {
    let c = curve(gen, imp);
    // EER as in FVC: where the FMR and FNMR curves cross, taking the mean of the bracketing
    // values.
    let mut eer = 1.0;
    for w in c.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a.1 >= a.2 && b.1 <= b.2 {
            let lo = a.1.min(a.2).max(b.1.min(b.2));
            let hi = a.1.max(a.2).min(b.1.max(b.2));
            eer = f64::min(eer, (lo + hi) / 2.0);
        }
    }
    for p in &c {
        if (p.1 - p.2).abs() < 1e-12 {
            eer = eer.min(p.1);
        }
    }
    Rates {
        genuine: gen.len(),
        impostor: imp.len(),
        eer,
        fmr100: fnmr_at_fmr(&c, 0.01),
        fmr1000: fnmr_at_fmr(&c, 0.001),
        zero_fmr: fnmr_at_fmr(&c, 0.0),
        fmr10000: (imp.len() >= 10_000).then(|| fnmr_at_fmr(&c, 1e-4)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_scores_have_zero_error() {
        let r = rates(&[0.9, 0.8, 0.7], &[0.1, 0.2, 0.3]);
        assert_eq!(r.eer, 0.0);
        assert_eq!(r.zero_fmr, 0.0);
    }

    #[test]
    fn overlapping_scores_give_the_crossing_point() {
        // One genuine below one impostor out of four each.
        let r = rates(&[0.9, 0.8, 0.7, 0.2], &[0.1, 0.15, 0.25, 0.75]);
        assert!((r.eer - 0.25).abs() < 1e-9, "{}", r.eer);
        // No impostor may pass: the threshold goes above 0.75, which also rejects 0.7 and 0.2.
        assert_eq!(r.zero_fmr, 0.5);
        assert_eq!(r.fmr10000, None);
    }
}
