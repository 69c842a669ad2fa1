//! `apg-biometric-eval`: accuracy evaluation and speed benchmarks on real data sets.

mod bench;
mod data;
mod det;
mod metrics;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use apg_fingerprint::{iso, Extractor, ExtractorConfig, Matcher, Template};
use clap::{Parser, Subcommand};
use rayon::prelude::*;

use crate::data::DataSet;
use crate::metrics::Rates;

#[derive(Parser)]
#[command(
    name = "apg-biometric-eval",
    about = "Accuracy evaluation and benchmarks of the apg-biometric engines"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// FVC protocol and all cross-finger pairs on every DB*_B folder: EER, FMR100, FMR1000,
    /// ZeroFMR, FNMR at FMR 1e-4 (pooled), DET plots, quality error-versus-reject, ISO
    /// interoperability, and NIST NBIS side by side (feature `nbis`).
    Fingerprint {
        /// Folder holding DB1_B .. DB4_B (or one such folder).
        #[arg(long, default_value = "../shared/data/fingerprint/fvc2002")]
        dataset: PathBuf,
        /// Output folder for the DET plots and summary.md.
        #[arg(long, default_value = "eval-out/fingerprint")]
        out: PathBuf,
        /// Skip NBIS even when built with it.
        #[arg(long)]
        no_nbis: bool,
        /// List the errors behind each set's EER: the strongest FVC impostor pairs and the
        /// genuine pairs scoring below the strongest one.
        #[arg(long)]
        errors: bool,
    },
    /// Speed: extraction per image, 1:1 comparison, 1:N search over a gallery of perturbed
    /// templates on one core and all cores, memory per gallery template.
    FingerprintBench {
        /// Folder holding DB1_B .. DB4_B.
        #[arg(long, default_value = "../shared/data/fingerprint/fvc2002")]
        dataset: PathBuf,
        /// Gallery size for 1:N.
        #[arg(long, default_value_t = 100_000)]
        gallery: usize,
        /// Shortlist of the second (MCC) stage as a fraction of the gallery, with no minimum;
        /// the engine's default (0.2 %, at least 100) when absent.
        #[arg(long)]
        shortlist: Option<f32>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Fingerprint {
            dataset,
            out,
            no_nbis,
            errors,
        } => fingerprint(&dataset, &out, no_nbis, errors),
        Cmd::FingerprintBench {
            dataset,
            gallery,
            shortlist,
        } => bench::run(&dataset, gallery, shortlist),
    }
}

/// Maps a record's minutiae from the image size its header states onto the real image.
///
/// The commercial FVC2002 records state a 300x400 image for every data set, whatever the real
/// size (388x374 in DB1, 296x560 in DB2, 300x300 in DB3): that extractor worked on images
/// resized to 300x400, so its coordinates are stretched differently along x and y. Matching
/// them against minutiae from the real image needs them stretched back; directions change
/// with the stretch too.
/// Our templates are in 500 dpi pixels, so the target is the image's size at 500 dpi.
fn onto_image(t: &Template, image: &apg_fingerprint::GrayImage) -> Template {
    let at_500 = |px: u32| (f64::from(px) * 500.0 / f64::from(image.dpi)).round() as u32;
    let (width, height) = (at_500(image.width), at_500(image.height));
    let (tw, th) = (f32::from(t.width()), f32::from(t.height()));
    if tw == 0.0 || th == 0.0 || (u32::from(t.width()), u32::from(t.height())) == (width, height) {
        return t.clone();
    }
    let (sx, sy) = (width as f32 / tw, height as f32 / th);
    let minutiae = t
        .minutiae()
        .iter()
        .map(|m| {
            let (s, c) = m.angle.sin_cos();
            apg_fingerprint::Minutia {
                x: (f32::from(m.x) * sx).round() as u16,
                y: (f32::from(m.y) * sy).round() as u16,
                angle: (sy * s).atan2(sx * c).rem_euclid(std::f32::consts::TAU),
                ..*m
            }
        })
        .collect();
    Template::from_minutiae(width as u16, height as u16, t.quality(), minutiae)
}

/// Comparison pairs (indices into the sample list) of one data set.
struct Pairs {
    genuine: Vec<(usize, usize)>,
    fvc_impostor: Vec<(usize, usize)>,
    cross_impostor: Vec<(usize, usize)>,
}

fn pairs(ds: &DataSet) -> Pairs {
    let s = &ds.samples;
    let mut p = Pairs {
        genuine: vec![],
        fvc_impostor: vec![],
        cross_impostor: vec![],
    };
    for i in 0..s.len() {
        for j in (i + 1)..s.len() {
            if s[i].finger == s[j].finger {
                p.genuine.push((i, j));
            } else {
                p.cross_impostor.push((i, j));
                let first = |k: usize| {
                    s.iter()
                        .filter(|x| x.finger == s[k].finger)
                        .map(|x| x.impression)
                        .min()
                        == Some(s[k].impression)
                };
                if first(i) && first(j) {
                    p.fvc_impostor.push((i, j));
                }
            }
        }
    }
    p
}

/// Prints the pairs behind a set's FVC EER: the three strongest impostor pairs and every
/// genuine pair scoring below the strongest impostor, weakest first.
fn print_errors(
    ds: &DataSet,
    templates: &[Template],
    quality: &[f32],
    p: &Pairs,
    gen: &[f64],
    imp: &[f64],
) {
    let name = |i: usize| {
        let s = &ds.samples[i];
        format!(
            "{}_{} ({} minutiae, quality {:.0})",
            s.finger,
            s.impression,
            templates[i].minutiae_count(),
            quality[i]
        )
    };
    let mut top: Vec<(f64, (usize, usize))> = imp
        .iter()
        .copied()
        .zip(p.fvc_impostor.iter().copied())
        .collect();
    top.sort_by(|a, b| b.0.total_cmp(&a.0));
    let strongest = top.first().map_or(0.0, |t| t.0);
    for (s, (i, j)) in top.iter().take(3) {
        eprintln!("{} impostor {s:.4}: {} vs {}", ds.name, name(*i), name(*j));
    }
    let mut weak: Vec<(f64, (usize, usize))> = gen
        .iter()
        .copied()
        .zip(p.genuine.iter().copied())
        .filter(|g| g.0 < strongest)
        .collect();
    weak.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (s, (i, j)) in &weak {
        eprintln!("{} genuine {s:.4}: {} vs {}", ds.name, name(*i), name(*j));
    }
}

fn score_all<T: Sync>(
    items: &[T],
    list: &[(usize, usize)],
    f: impl Fn(&T, &T) -> f64 + Sync,
) -> Vec<f64> {
    list.par_iter()
        .map(|&(i, j)| f(&items[i], &items[j]))
        .collect()
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn row(name: &str, set: &str, r: &Rates) -> String {
    format!(
        "| {set} | {name} | {} | {} | {} | {} | {} | {} | {} |\n",
        r.genuine,
        r.impostor,
        pct(r.eer),
        pct(r.fmr100),
        pct(r.fmr1000),
        pct(r.zero_fmr),
        r.fmr10000.map(pct).unwrap_or_else(|| "n/a".into())
    )
}

const HEADER: &str = "| set | system | genuine | impostor | EER | FMR100 | FMR1000 | ZeroFMR | FNMR@FMR1e-4 |\n|---|---|---|---|---|---|---|---|---|\n";

#[derive(Default)]
struct Pool {
    gen: Vec<f64>,
    imp: Vec<f64>,
}

fn fingerprint(root: &Path, out: &Path, no_nbis: bool, errors: bool) -> Result<()> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("creating output folder {}", out.display()))?;
    let dirs = data::discover(root)?;
    let extractor = Extractor::new(ExtractorConfig::default());
    let matcher = Matcher;
    let mut fvc_table = String::from(HEADER);
    let mut cross_table = String::from(HEADER);
    let mut interop = String::from("| set | ours vs ours | theirs vs theirs (our matcher) | ours vs theirs |\n|---|---|---|---|\n");
    let mut pools: std::collections::BTreeMap<&'static str, Pool> = Default::default();
    let mut eer_sum_123 = 0.0;
    #[cfg_attr(not(feature = "nbis"), allow(unused_mut))]
    let mut nbis_eer_sum_123 = 0.0;
    // Quality: (pair quality, genuine score, threshold at FMR 1% of its data set).
    let mut quality_pairs: Vec<(f32, f64, f64)> = Vec::new();
    let mut failures = 0usize;
    for dir in &dirs {
        let ds = data::load(dir)?;
        let p = pairs(&ds);
        let t0 = Instant::now();
        let ext: Vec<Option<(Template, f32)>> = ds
            .samples
            .par_iter()
            .map(|s| match extractor.extract(&s.image) {
                Ok(x) => Some((x.template, x.quality.score)),
                Err(e) => {
                    eprintln!("Extraction failed. file={} error={e}", s.path.display());
                    None
                }
            })
            .collect();
        failures += ext.iter().filter(|e| e.is_none()).count();
        let empty = Template::from_minutiae(0, 0, 0, vec![]);
        let ours: Vec<Template> = ext
            .iter()
            .map(|e| {
                e.as_ref()
                    .map(|x| x.0.clone())
                    .unwrap_or_else(|| empty.clone())
            })
            .collect();
        let qual: Vec<f32> = ext
            .iter()
            .map(|e| e.as_ref().map(|x| x.1).unwrap_or(0.0))
            .collect();
        let mean_min =
            ours.iter().map(|t| t.minutiae_count()).sum::<usize>() as f64 / ours.len() as f64;
        eprintln!(
            "{}: extracted {} images in {:.1} s, {:.1} minutiae on average",
            ds.name,
            ours.len(),
            t0.elapsed().as_secs_f64(),
            mean_min
        );
        let cmp = |a: &Template, b: &Template| f64::from(matcher.compare(a, b));
        let gen = score_all(&ours, &p.genuine, cmp);
        let fvc_imp = score_all(&ours, &p.fvc_impostor, cmp);
        let cross_imp = score_all(&ours, &p.cross_impostor, cmp);
        let r_fvc = metrics::rates(&gen, &fvc_imp);
        if errors {
            print_errors(&ds, &ours, &qual, &p, &gen, &fvc_imp);
        }
        let r_cross = metrics::rates(&gen, &cross_imp);
        fvc_table.push_str(&row("apg", &ds.name, &r_fvc));
        cross_table.push_str(&row("apg", &ds.name, &r_cross));
        if ds.name != "DB4_B" {
            eer_sum_123 += r_fvc.eer;
        }
        let pool = pools.entry("apg").or_default();
        pool.gen.extend(&gen);
        pool.imp.extend(&cross_imp);
        let cross_curve = metrics::curve(&gen, &cross_imp);
        let t1 = metrics::threshold_at_fmr(&cross_curve, 0.01);
        for (k, &(i, j)) in p.genuine.iter().enumerate() {
            quality_pairs.push((qual[i].min(qual[j]), gen[k], t1));
        }
        let mut curves: Vec<(&str, metrics::Curve)> = vec![("apg (ours)", cross_curve)];

        // Interoperability with the ISO templates of the commercial extractor.
        if ds.samples.iter().all(|s| s.iso.is_some()) {
            let theirs: Vec<Template> = ds
                .samples
                .iter()
                .map(|s| {
                    iso::import(s.iso.as_deref().unwrap_or_default())
                        .with_context(|| {
                            format!("importing {}", s.path.with_extension("iso").display())
                        })
                        .map(|t| onto_image(&t, &s.image))
                })
                .collect::<Result<_>>()?;
            let tg = score_all(&theirs, &p.genuine, cmp);
            let ti = score_all(&theirs, &p.fvc_impostor, cmp);
            let both: Vec<(&Template, &Template)> = ours.iter().zip(&theirs).collect();
            let mixed = |a: &(&Template, &Template), b: &(&Template, &Template)| {
                f64::from(matcher.compare(a.0, b.1))
            };
            let mg = score_all(&both, &p.genuine, mixed);
            let mi = score_all(&both, &p.fvc_impostor, mixed);
            let rt = metrics::rates(&tg, &ti);
            let rm = metrics::rates(&mg, &mi);
            let _ = writeln!(
                interop,
                "| {} | {} | {} | {} |",
                ds.name,
                pct(r_fvc.eer),
                pct(rt.eer),
                pct(rm.eer)
            );
            let tic = score_all(&theirs, &p.cross_impostor, cmp);
            curves.push((
                "commercial ISO templates, our matcher",
                metrics::curve(&tg, &tic),
            ));
        }

        #[cfg(feature = "nbis")]
        if !no_nbis {
            let t = Instant::now();
            // NBIS keeps its working state in C globals (bozorth3's pair tables, mindtct's
            // maps): calling it from several threads at once corrupts the scores, so it runs
            // on this thread only.
            let nb: Vec<Option<nbis::Minutiae>> = ds
                .samples
                .iter()
                .map(|s| nbis::extract_minutiae(&s.file_bytes, Some(f64::from(s.image.dpi))).ok())
                .collect();
            let nbis_failures = nb.iter().filter(|m| m.is_none()).count();
            if nbis_failures > 0 {
                eprintln!("{}: NBIS failed on {nbis_failures} images", ds.name);
            }
            let nbis_scores = |list: &[(usize, usize)]| -> Vec<f64> {
                list.iter()
                    .map(|&(i, j)| match (&nb[i], &nb[j]) {
                        (Some(a), Some(b)) => f64::from(a.compare(b)),
                        _ => 0.0,
                    })
                    .collect()
            };
            let g = nbis_scores(&p.genuine);
            let fi = nbis_scores(&p.fvc_impostor);
            let ci = nbis_scores(&p.cross_impostor);
            eprintln!(
                "{}: NBIS done in {:.1} s",
                ds.name,
                t.elapsed().as_secs_f64()
            );
            let rf = metrics::rates(&g, &fi);
            if ds.name != "DB4_B" {
                nbis_eer_sum_123 += rf.eer;
            }
            fvc_table.push_str(&row("NBIS mindtct+bozorth3", &ds.name, &rf));
            cross_table.push_str(&row(
                "NBIS mindtct+bozorth3",
                &ds.name,
                &metrics::rates(&g, &ci),
            ));
            let pool = pools.entry("nbis").or_default();
            pool.gen.extend(&g);
            pool.imp.extend(&ci);
            curves.push(("NIST NBIS", metrics::curve(&g, &ci)));
        }
        #[cfg(not(feature = "nbis"))]
        let _ = no_nbis;

        let png = out.join(format!("det_{}.png", ds.name));
        det::write(&png, &curves)?;
        let legend: Vec<String> = curves
            .iter()
            .enumerate()
            .map(|(k, c)| {
                format!(
                    "{} = {}",
                    ["red", "blue", "green", "orange", "purple"][k % 5],
                    c.0
                )
            })
            .collect();
        eprintln!(
            "{}: DET plot {} ({})",
            ds.name,
            png.display(),
            legend.join(", ")
        );
    }

    let mut md = String::new();
    let _ = writeln!(md, "## FVC protocol (genuine: all impression pairs; impostor: first impressions of different fingers)\n\n{fvc_table}");
    let n123 = dirs
        .iter()
        .filter(|d| d.file_name().is_some_and(|n| n != "DB4_B"))
        .count()
        .max(1) as f64;
    let _ = write!(
        md,
        "Average EER over DB1_B..DB3_B: apg {}",
        pct(eer_sum_123 / n123)
    );
    if nbis_eer_sum_123 > 0.0 {
        let _ = write!(md, ", NBIS {}", pct(nbis_eer_sum_123 / n123));
    }
    md.push('\n');
    let _ = writeln!(md, "\n## All cross-finger impostor pairs\n\n{cross_table}");
    let mut pooled = String::from(HEADER);
    for (name, p) in &pools {
        pooled.push_str(&row(name, "pooled DB1-4", &metrics::rates(&p.gen, &p.imp)));
    }
    let _ = writeln!(
        md,
        "## Pooled over the data sets (cross-finger impostors)\n\n{pooled}"
    );
    if let Some(p) = pools.get("apg") {
        let c = metrics::curve(&p.gen, &p.imp);
        let _ = writeln!(md, "## Score to FMR (apg, pooled cross-finger impostors: {} scores)\n\n| FMR | threshold | FNMR |\n|---|---|---|", p.imp.len());
        for f in [1e-2, 1e-3, 1e-4] {
            let t = metrics::threshold_at_fmr(&c, f);
            let _ = writeln!(
                md,
                "| {f:e} | {t:.4} | {} |",
                pct(metrics::fnmr_at_fmr(&c, f))
            );
        }
        let t = f64::from(apg_fingerprint::THRESHOLD_FMR_1E4);
        let (fmr, fnmr) = metrics::at(&p.gen, &p.imp, t);
        let _ = writeln!(
            md,
            "\nAt the shipped THRESHOLD_FMR_1E4 = {t:.4}: FMR {fmr:.2e}, FNMR {}\n",
            pct(fnmr)
        );
    }
    // Error versus reject: drop the lowest-quality fraction of genuine pairs, FNMR at each
    // data set's FMR = 1% threshold.
    quality_pairs.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    let _ = writeln!(md, "## Quality: error versus reject (FNMR at FMR = 1%, pair quality = min of the two samples)\n\n| rejected | FNMR |\n|---|---|");
    for frac in [0.0, 0.05, 0.10, 0.20, 0.30] {
        let skip = (quality_pairs.len() as f64 * frac).round() as usize;
        let rest = &quality_pairs[skip..];
        let fnmr = rest.iter().filter(|(_, s, t)| s < t).count() as f64 / rest.len().max(1) as f64;
        let _ = writeln!(md, "| {:.0}% | {} |", frac * 100.0, pct(fnmr));
    }
    let _ = writeln!(md, "\n## Interoperability with the commercial ISO/IEC 19794-2 templates (FVC protocol EER)\n\n{interop}");
    let _ = writeln!(md, "Extraction failures: {failures}");
    println!("{md}");
    std::fs::write(out.join("summary.md"), &md)
        .with_context(|| format!("writing {}", out.join("summary.md").display()))?;
    Ok(())
}
