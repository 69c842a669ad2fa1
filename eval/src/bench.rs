//! Speed benchmarks of the fingerprint engine.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use apg_fingerprint::{Extractor, ExtractorConfig, Gallery, Matcher, Minutia, Template};
use rayon::prelude::*;

use crate::data;

/// Deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() % 1_000_000) as f32 / 1_000_000.0
    }
}

/// A distinct synthetic identity from a real template: mirrored left to right, then rotation,
/// translation, per-minutia jitter, dropped and added minutiae. The mirror is what makes it
/// another identity: no rotation brings a mirrored print back onto the original, so the copies
/// made from the probe's own finger are impostors like the rest (unmirrored, they were near
/// copies of the probe and crowded the true mate out of the shortlist), while the minutiae
/// keep the spacing and density of real prints.
fn perturb(t: &Template, rng: &mut Rng) -> Template {
    let rot = (rng.unit() - 0.5) * 2.0 * std::f32::consts::PI;
    let (s, c) = rot.sin_cos();
    let (cx, cy) = (f32::from(t.width()) / 2.0, f32::from(t.height()) / 2.0);
    let mut ms: Vec<Minutia> = Vec::new();
    for m in t.minutiae() {
        if rng.unit() < 0.25 {
            continue;
        }
        let (x, y) = (cx - f32::from(m.x), -(f32::from(m.y) - cy));
        let (rx, ry) = (x * c - y * s, x * s + y * c);
        let jx = (rng.unit() - 0.5) * 30.0;
        let jy = (rng.unit() - 0.5) * 30.0;
        ms.push(Minutia {
            x: (rx + cx + 100.0 + jx).max(0.0) as u16,
            y: (-ry + cy + 100.0 + jy).max(0.0) as u16,
            angle: std::f32::consts::PI - m.angle + rot + (rng.unit() - 0.5) * 1.0,
            ..*m
        });
    }
    for _ in 0..(rng.next() % 10) {
        ms.push(Minutia {
            x: (100.0 + rng.unit() * f32::from(t.width())) as u16,
            y: (100.0 + rng.unit() * f32::from(t.height())) as u16,
            angle: rng.unit() * std::f32::consts::TAU,
            kind: apg_fingerprint::MinutiaKind::Ending,
            quality: 50,
        });
    }
    Template::from_minutiae(t.width() + 200, t.height() + 200, t.quality(), ms)
}

pub fn run(root: &Path, gallery_size: usize, shortlist: Option<f32>) -> Result<()> {
    let dirs = data::discover(root)?;
    let mut samples = Vec::new();
    for d in &dirs {
        samples.extend(data::load(d)?.samples.into_iter().map(|s| {
            (
                d.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("")
                    .to_string(),
                s,
            )
        }));
    }
    let extractor = Extractor::new(ExtractorConfig::default());
    // Extraction, one core, every image once after one warm-up.
    extractor.extract(&samples[0].1.image).ok();
    let t = Instant::now();
    let mut templates = Vec::new();
    for (_, s) in &samples {
        let x = extractor
            .extract(&s.image)
            .with_context(|| format!("extracting {}", s.path.display()))?;
        templates.push(x.template);
    }
    let ext_ms = t.elapsed().as_secs_f64() * 1000.0 / samples.len() as f64;
    let sizes: Vec<usize> = templates.iter().map(|t| t.to_bytes().len()).collect();
    let mean_size = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    let max_size = sizes.iter().max().copied().unwrap_or(0);
    println!(
        "extraction: {ext_ms:.2} ms/image (one core, {} FVC2002 images)",
        samples.len()
    );
    println!("template size: mean {mean_size:.0} B, max {max_size} B");

    // Preparing the matcher data of a template (done once per template at load).
    let t = Instant::now();
    let fresh: Vec<Template> = templates
        .iter()
        .map(|t| Template::from_bytes(&t.to_bytes()).expect("own template"))
        .collect();
    let m = Matcher;
    for f in &fresh {
        std::hint::black_box(m.compare(f, f));
    }
    let prep_us = t.elapsed().as_secs_f64() * 1e6 / fresh.len() as f64;

    // 1:1 on prepared templates: every pair of the first data set's templates.
    let n = templates.len().min(80);
    let t = Instant::now();
    let mut k = 0usize;
    let mut acc = 0.0f32;
    for i in 0..n {
        for j in 0..n {
            if i != j {
                acc += m.compare(&templates[i], &templates[j]);
                k += 1;
            }
        }
    }
    std::hint::black_box(acc);
    let one_us = t.elapsed().as_secs_f64() * 1e6 / k as f64;
    println!("1:1 compare: {one_us:.1} us per comparison (prepared templates), template preparation + self-compare {prep_us:.0} us");

    // Gallery: true mates (first impression of every finger) plus perturbed identities.
    let mut g: Gallery<u64> = Gallery::new();
    if let Some(fraction) = shortlist {
        g.set_shortlist(fraction, 1);
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut mates = Vec::new();
    for (i, (db, s)) in samples.iter().enumerate() {
        if s.impression == 1 {
            let key = (1u64 << 40) | i as u64;
            mates.push((db.clone(), s.finger, key));
            g.insert(key, templates[i].clone());
        }
    }
    let base: Vec<&Template> = templates.iter().collect();
    let synthetic: Vec<Template> = (0..gallery_size.saturating_sub(mates.len()))
        .into_par_iter()
        .map(|k| {
            let mut r = Rng(0x1234_5678 ^ (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let t = perturb(base[k % base.len()], &mut r);
            t.minutiae_count();
            t
        })
        .collect();
    let _ = rng.next();
    // Insert in bulk (keys are unique, so no replacement scan is needed).
    let t = Instant::now();
    for (k, s) in synthetic.into_iter().enumerate() {
        g.insert_unique(k as u64, s);
    }
    println!(
        "gallery: {} templates built in {:.1} s, {} bytes per template in memory",
        g.len(),
        t.elapsed().as_secs_f64(),
        g.bytes_per_template()
    );

    // Probes: impressions 2..8 of every finger.
    let probes: Vec<(usize, u64)> = samples
        .iter()
        .enumerate()
        .filter(|(_, (_, s))| s.impression != 1)
        .filter_map(|(i, (db, s))| {
            mates
                .iter()
                .find(|m| &m.0 == db && m.1 == s.finger)
                .map(|m| (i, m.2))
        })
        .collect();
    let mut missed = 0;
    let mut rank1 = 0;
    let mut ranks = Vec::with_capacity(probes.len());
    for &(i, key) in &probes {
        let (rank, inside) = g
            .prefilter_rank(&templates[i], &key)
            .expect("mate enrolled");
        ranks.push(rank);
        if !inside {
            missed += 1;
        }
        if g.search(&templates[i], 1).first().map(|r| r.0) == Some(key) {
            rank1 += 1;
        }
    }
    println!(
        "1:N prefilter: true mate outside the shortlist for {missed} of {} probes ({:.2}%), rank-1 identification {:.2}%",
        probes.len(),
        missed as f64 * 100.0 / probes.len() as f64,
        rank1 as f64 * 100.0 / probes.len() as f64
    );
    // How deep the shortlist would have to be: the share of true mates within the first
    // stage's top fraction of the gallery.
    let within: Vec<String> = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05]
        .iter()
        .map(|&f| {
            let depth = (g.len() as f64 * f).ceil() as usize;
            let inside = ranks.iter().filter(|&&r| r < depth).count();
            format!(
                "top {:.1}%: {:.1}%",
                f * 100.0,
                inside as f64 * 100.0 / ranks.len().max(1) as f64
            )
        })
        .collect();
    println!("1:N prefilter: true mates within {}", within.join(", "));
    for threads in [1usize, rayon::current_num_threads()] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        let runs = 20.min(probes.len());
        let t = Instant::now();
        pool.install(|| {
            for &(i, _) in probes.iter().take(runs) {
                std::hint::black_box(g.search(&templates[i], 10));
            }
        });
        let per = t.elapsed().as_secs_f64() / runs as f64;
        println!(
            "1:N search on {threads} core(s): {:.1} ms per search, {:.2} M comparisons/s",
            per * 1000.0,
            g.len() as f64 / per / 1e6
        );
    }
    Ok(())
}
