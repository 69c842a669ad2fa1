//! In-memory 1:N search.
//!
//! Two stages: every gallery template is scored with the cheap pair-feature bit vectors
//! (two ANDs and popcounts per word, both ways, against chance); the best `shortlist` are then
//! compared with the full MCC matcher. Both stages run on all cores (rayon). The shortlist size
//! trades speed for the rate at which true mates are missed; the README reports that rate on
//! FVC2002.

use rayon::prelude::*;

use crate::first_stage::PairFeatures;
use crate::mcc::compare_prepared;
use crate::template::Template;

/// Default shortlist: this fraction of the gallery …
const SHORTLIST_FRACTION: f32 = 0.002;
/// … but never fewer than this many templates.
const SHORTLIST_MIN: usize = 100;

/// A gallery of templates keyed by `K`.
pub struct Gallery<K> {
    keys: Vec<K>,
    templates: Vec<Template>,
    /// First-stage features of each template, side by side so a search streams through them.
    features: Vec<PairFeatures>,
    shortlist_fraction: f32,
    shortlist_min: usize,
}

impl<K: Clone + PartialEq + Send + Sync> Default for Gallery<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + PartialEq + Send + Sync> Gallery<K> {
    /// An empty gallery with the default shortlist (0.2% of the gallery, at least 100).
    pub fn new() -> Self {
        Self {
            keys: Vec::new(),
            templates: Vec::new(),
            features: Vec::new(),
            shortlist_fraction: SHORTLIST_FRACTION,
            shortlist_min: SHORTLIST_MIN,
        }
    }

    /// Sets the shortlist of the second stage: `fraction` of the gallery, at least `min`.
    /// `fraction = 1.0` makes the search exhaustive.
    pub fn set_shortlist(&mut self, fraction: f32, min: usize) {
        self.shortlist_fraction = fraction.clamp(0.0, 1.0);
        self.shortlist_min = min;
    }

    /// Adds a template (replacing an existing one with the same key).
    pub fn insert(&mut self, key: K, t: Template) {
        t.prepared();
        let features = PairFeatures::new(&t.minutiae);
        if let Some(i) = self.keys.iter().position(|k| *k == key) {
            self.templates[i] = t;
            self.features[i] = features;
        } else {
            self.keys.push(key);
            self.templates.push(t);
            self.features.push(features);
        }
    }

    /// Adds a template whose key the caller knows to be new (no duplicate scan: O(1)).
    pub fn insert_unique(&mut self, key: K, t: Template) {
        t.prepared();
        self.features.push(PairFeatures::new(&t.minutiae));
        self.keys.push(key);
        self.templates.push(t);
    }

    /// Removes a template.
    pub fn remove(&mut self, key: &K) -> Option<Template> {
        let i = self.keys.iter().position(|k| k == key)?;
        self.keys.swap_remove(i);
        self.features.swap_remove(i);
        Some(self.templates.swap_remove(i))
    }

    /// Number of templates.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Approximate heap bytes used per template (minutiae plus matcher data), averaged.
    pub fn bytes_per_template(&self) -> usize {
        if self.templates.is_empty() {
            return 0;
        }
        let total: usize = self
            .templates
            .iter()
            .map(|t| {
                std::mem::size_of::<Template>()
                    + std::mem::size_of::<K>()
                    + std::mem::size_of::<PairFeatures>()
                    + t.minutiae.capacity() * std::mem::size_of::<crate::Minutia>()
                    + t.prepared().heap_bytes()
            })
            .sum();
        total / self.templates.len()
    }

    fn shortlist_len(&self) -> usize {
        let n = self.templates.len();
        ((n as f32 * self.shortlist_fraction).ceil() as usize)
            .max(self.shortlist_min)
            .min(n)
    }

    /// The best `max` matches, best first, with their scores.
    pub fn search(&self, probe: &Template, max: usize) -> Vec<(K, f32)> {
        let n = self.templates.len();
        if n == 0 || max == 0 {
            return Vec::new();
        }
        let p = probe.prepared();
        let keep = self.shortlist_len().max(max.min(n));
        let candidates: Vec<usize> = if keep >= n {
            (0..n).collect()
        } else {
            let probe_features = PairFeatures::new(&probe.minutiae);
            let mut first: Vec<(f32, usize)> = self
                .features
                .par_iter()
                .enumerate()
                .map(|(i, f)| (probe_features.score(f), i))
                .collect();
            first.select_nth_unstable_by(keep - 1, |a, b| {
                b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal)
            });
            first.truncate(keep);
            first.into_iter().map(|(_, i)| i).collect()
        };
        let mut scored: Vec<(f32, usize)> = candidates
            .par_iter()
            .map(|&i| (compare_prepared(p, self.templates[i].prepared()), i))
            .collect();
        scored.sort_unstable_by(|a, b| {
            b.0.partial_cmp(&a.0)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.1.cmp(&b.1))
        });
        scored
            .into_iter()
            .take(max)
            .map(|(s, i)| (self.keys[i].clone(), s))
            .collect()
    }

    /// Rank (0 = best) of the template with `key` in the first stage for `probe`, and whether
    /// it falls inside the shortlist. `None` when the key is absent. For evaluation.
    pub fn prefilter_rank(&self, probe: &Template, key: &K) -> Option<(usize, bool)> {
        let i = self.keys.iter().position(|k| k == key)?;
        let probe_features = PairFeatures::new(&probe.minutiae);
        let mine = probe_features.score(&self.features[i]);
        let rank = self
            .features
            .par_iter()
            .enumerate()
            .filter(|&(j, f)| j != i && probe_features.score(f) > mine)
            .count();
        Some((rank, rank < self.shortlist_len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcc::tests::synthetic;

    #[test]
    fn search_finds_the_enrolled_template_first() {
        let mut g = Gallery::new();
        for i in 0..300u32 {
            g.insert(i, Template::from_minutiae(400, 500, 80, synthetic(i, 35)));
        }
        g.set_shortlist(0.01, 5);
        let probe = Template::from_minutiae(400, 500, 80, synthetic(123, 35));
        let r = g.search(&probe, 3);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].0, 123);
        assert!(r[0].1 > r[1].1);
        assert_eq!(g.prefilter_rank(&probe, &123), Some((0, true)));
    }

    #[test]
    fn insert_replaces_and_remove_forgets() {
        let mut g = Gallery::new();
        g.insert("a", Template::from_minutiae(400, 500, 80, synthetic(1, 30)));
        g.insert("a", Template::from_minutiae(400, 500, 80, synthetic(2, 30)));
        g.insert("b", Template::from_minutiae(400, 500, 80, synthetic(3, 30)));
        assert_eq!(g.len(), 2);
        let probe = Template::from_minutiae(400, 500, 80, synthetic(2, 30));
        assert_eq!(g.search(&probe, 1)[0].0, "a");
        assert!(g.remove(&"a").is_some());
        assert!(g.remove(&"a").is_none());
        assert_eq!(g.search(&probe, 5).len(), 1);
        assert!(g.bytes_per_template() > 0);
    }
}
