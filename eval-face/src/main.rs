//! Evaluation and benchmarks of the face engine on the real data in `../shared`.
//!
//! ```text
//! apg-eval-face pairs [--data DIR] [--det det.png]   # accuracy, EER, DET curve on master.csv
//! apg-eval-face pad [--data DIR]                     # PAD verdicts on pad-samples/
//! apg-eval-face bench [--data DIR] [--iterations N]  # per-stage time at 640x480, 1:N over 100,000
//! ```
//!
//! `--data` defaults to `$APG_SHARED_DIR/data/face` (or `/work/shared/data/face`). Run the bench
//! on one core with `taskset -c 0`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use apg_face::{Embedding, FaceAnalysis, FaceEngine, Gallery, Range};
use image::{ImageDecoder, RgbImage};

/// Unified quality below which a sample is rejected (the agent's default 0.85).
const QUALITY_THRESHOLD: f32 = 85.0;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().map(String::as_str).unwrap_or("");
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let data = option("--data").map_or_else(default_data, PathBuf::from);
    if !data.is_dir() {
        bail!(
            "face data directory {} is missing; pass --data or set APG_SHARED_DIR",
            data.display()
        );
    }
    let engine = FaceEngine::load_default().context("loading the face models")?;
    match command {
        "pairs" => pairs(&engine, &data, option("--det").map(PathBuf::from)),
        "pad" => pad(&engine, &data),
        "bench" => {
            let iterations = option("--iterations")
                .map_or(Ok(50), |v| v.parse())
                .context("--iterations")?;
            bench(&engine, &data, iterations)
        }
        _ => bail!(
            "usage: apg-eval-face pairs|pad|bench [--data DIR] [--det FILE.png] [--iterations N]"
        ),
    }
}

fn default_data() -> PathBuf {
    let shared = std::env::var_os("APG_SHARED_DIR")
        .map_or_else(|| PathBuf::from("/work/shared"), PathBuf::from);
    shared.join("data/face")
}

/// Loads an image, applying its EXIF orientation.
fn load(path: &Path) -> Result<RgbImage> {
    let reader = image::ImageReader::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("reading {}", path.display()))?;
    let mut decoder = reader
        .into_decoder()
        .with_context(|| format!("decoding {}", path.display()))?;
    let orientation = decoder.orientation().ok();
    let mut img = image::DynamicImage::from_decoder(decoder)
        .with_context(|| format!("decoding {}", path.display()))?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(img.into_rgb8())
}

fn pairs(engine: &FaceEngine, data: &Path, det_png: Option<PathBuf>) -> Result<()> {
    let dir = data.join("deepface");
    let csv = std::fs::read_to_string(dir.join("master.csv"))
        .with_context(|| format!("reading {}/master.csv", dir.display()))?;
    let mut list = Vec::new();
    for (n, line) in csv
        .lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() < 3 {
            bail!("master.csv line {}: expected file_x,file_y,Decision", n + 1);
        }
        list.push((f[0].to_owned(), f[1].to_owned(), f[2] == "Yes"));
    }
    let mut analyses: HashMap<String, Option<FaceAnalysis>> = HashMap::new();
    let mut no_face = Vec::new();
    let mut low_quality: HashMap<&'static str, Vec<String>> = HashMap::new();
    let mut names: Vec<&String> = list.iter().flat_map(|(a, b, _)| [a, b]).collect();
    names.sort();
    names.dedup();
    for name in &names {
        let img = load(&dir.join(name))?;
        let result = match engine.analyze(&img) {
            Ok(a) => {
                if a.quality.unified < QUALITY_THRESHOLD {
                    let weakest = a.quality.weakest().map_or("none", |m| m.name);
                    low_quality.entry(weakest).or_default().push(format!(
                        "{name} ({:.0}: {})",
                        a.quality.unified,
                        a.quality
                            .weakest()
                            .map_or(String::new(), |m| m.reason.clone())
                    ));
                }
                Some(a)
            }
            Err(e) => {
                no_face.push(format!("{name}: {e}"));
                None
            }
        };
        analyses.insert((*name).clone(), result);
    }
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    let mut skipped = 0;
    for (a, b, same) in &list {
        match (&analyses[a], &analyses[b]) {
            (Some(x), Some(y)) => {
                let s = x.embedding.cosine(&y.embedding);
                if *same {
                    genuine.push(s)
                } else {
                    impostor.push(s)
                }
            }
            _ => skipped += 1,
        }
    }
    println!(
        "deepface pairs: {} ({} genuine, {} impostor), {} images",
        list.len(),
        genuine.len(),
        impostor.len(),
        names.len()
    );
    println!("images without a detected face: {}", no_face.len());
    for line in &no_face {
        println!("  {line}");
    }
    let lq: usize = low_quality.values().map(Vec::len).sum();
    println!("images below unified quality {QUALITY_THRESHOLD}: {lq}");
    let mut reasons: Vec<_> = low_quality.iter().collect();
    reasons.sort_by_key(|(k, _)| *k);
    for (measure, items) in reasons {
        println!("  weakest measure {measure}: {}", items.len());
        for item in items {
            println!("    {item}");
        }
    }
    println!("pairs skipped (no face): {skipped}");
    let (eer, eer_threshold) = eer(&genuine, &impostor);
    println!("EER: {:.2} % (threshold {eer_threshold:.3})", eer * 100.0);
    let (best_acc, best_t) = best_accuracy(&genuine, &impostor);
    println!(
        "best accuracy: {:.2} % at threshold {best_t:.3}",
        best_acc * 100.0
    );
    let t = apg_face::MATCH_THRESHOLD;
    let fnmr = genuine.iter().filter(|s| **s < t).count() as f64 / genuine.len().max(1) as f64;
    let fmr = impostor.iter().filter(|s| **s >= t).count() as f64 / impostor.len().max(1) as f64;
    let acc = (genuine.iter().filter(|s| **s >= t).count()
        + impostor.iter().filter(|s| **s < t).count()) as f64
        / (genuine.len() + impostor.len()).max(1) as f64;
    println!(
        "at the engine threshold {t:.2}: accuracy {:.2} %, FMR {:.2} %, FNMR {:.2} %",
        acc * 100.0,
        fmr * 100.0,
        fnmr * 100.0
    );
    let stats = |v: &[f32]| {
        let min = v.iter().copied().fold(f32::MAX, f32::min);
        let max = v.iter().copied().fold(f32::MIN, f32::max);
        format!(
            "min {min:.3} mean {:.3} max {max:.3}",
            v.iter().sum::<f32>() / v.len().max(1) as f32
        )
    };
    println!("genuine scores: {}", stats(&genuine));
    println!("impostor scores: {}", stats(&impostor));
    if let Some(path) = det_png {
        det_plot(&genuine, &impostor, &path)?;
        println!("DET curve written to {}", path.display());
    }
    Ok(())
}

/// Equal error rate by sweeping every observed score as a threshold.
fn eer(genuine: &[f32], impostor: &[f32]) -> (f64, f32) {
    let mut thresholds: Vec<f32> = genuine.iter().chain(impostor).copied().collect();
    thresholds.sort_by(f32::total_cmp);
    let mut best = (f64::MAX, 0.0, 0.0f32);
    for &t in &thresholds {
        let fnmr = genuine.iter().filter(|s| **s < t).count() as f64 / genuine.len().max(1) as f64;
        let fmr =
            impostor.iter().filter(|s| **s >= t).count() as f64 / impostor.len().max(1) as f64;
        if (fmr - fnmr).abs() < best.0 {
            best = ((fmr - fnmr).abs(), (fmr + fnmr) / 2.0, t);
        }
    }
    (best.1, best.2)
}

fn best_accuracy(genuine: &[f32], impostor: &[f32]) -> (f64, f32) {
    let mut best = (0.0, 0.0f32);
    for &t in genuine.iter().chain(impostor) {
        let ok = genuine.iter().filter(|s| **s >= t).count()
            + impostor.iter().filter(|s| **s < t).count();
        let acc = ok as f64 / (genuine.len() + impostor.len()).max(1) as f64;
        if acc > best.0 {
            best = (acc, t);
        }
    }
    best
}

/// Draws the DET curve (FNMR against FMR, both on log axes from 0.1 % to 100 %).
fn det_plot(genuine: &[f32], impostor: &[f32], path: &Path) -> Result<()> {
    let (w, h, margin) = (480u32, 480u32, 40u32);
    let mut img = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let span = (w - 2 * margin) as f64;
    let floor = 1e-3f64;
    let to_px =
        |rate: f64| (rate.max(floor).log10() - floor.log10()) / (0.0 - floor.log10()) * span;
    let mut put = |x: f64, y: f64, c: [u8; 3]| {
        let (px, py) = (margin as f64 + x, (h - margin) as f64 - y);
        if px >= 0.0 && py >= 0.0 && (px as u32) < w && (py as u32) < h {
            img.put_pixel(px as u32, py as u32, image::Rgb(c));
        }
    };
    // Grid at 0.1 %, 1 %, 10 %, 100 %.
    for decade in [1e-3, 1e-2, 1e-1, 1.0] {
        let p = to_px(decade);
        for i in 0..=span as u32 {
            put(p, f64::from(i), [200, 200, 200]);
            put(f64::from(i), p, [200, 200, 200]);
        }
    }
    // The equal-error diagonal.
    for i in 0..=span as u32 {
        put(f64::from(i), f64::from(i), [230, 180, 180]);
    }
    let mut thresholds: Vec<f32> = genuine.iter().chain(impostor).copied().collect();
    thresholds.sort_by(f32::total_cmp);
    thresholds.dedup();
    let mut last: Option<(f64, f64)> = None;
    for t in thresholds {
        let fnmr = genuine.iter().filter(|s| **s < t).count() as f64 / genuine.len().max(1) as f64;
        let fmr =
            impostor.iter().filter(|s| **s >= t).count() as f64 / impostor.len().max(1) as f64;
        let p = (to_px(fmr), to_px(fnmr));
        if let Some(q) = last {
            let steps = ((p.0 - q.0).abs().max((p.1 - q.1).abs()) as usize).max(1);
            for s in 0..=steps {
                let f = s as f64 / steps as f64;
                for d in [-1.0, 0.0, 1.0] {
                    put(
                        q.0 + (p.0 - q.0) * f + d,
                        q.1 + (p.1 - q.1) * f,
                        [20, 60, 200],
                    );
                }
            }
        }
        last = Some(p);
    }
    img.save(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn pad(engine: &FaceEngine, data: &Path) -> Result<()> {
    let dir = data.join("pad-samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg")))
        .collect();
    files.sort();
    let mut correct = 0;
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Silent-Face naming: image_T* are real faces, image_F* are attacks.
        let expected_live = name.contains("_T");
        let img = load(path)?;
        let analysis = engine.analyze(&img)?;
        let verdict = engine.passive_pad(&img, &analysis.detection)?;
        let ok = verdict.live == expected_live;
        correct += usize::from(ok);
        println!(
            "{name}: expected {}, verdict {} ({}) {}",
            if expected_live { "live" } else { "attack" },
            if verdict.live { "live" } else { "attack" },
            verdict.detail,
            if ok { "ok" } else { "WRONG" }
        );
    }
    println!("PAD: {correct}/{} samples judged correctly", files.len());
    if correct != files.len() {
        bail!("some PAD verdicts are wrong");
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench(engine: &FaceEngine, data: &Path, iterations: usize) -> Result<()> {
    let source = load(&data.join("deepface/img1.jpg"))?;
    // A 640x480 frame: the photo scaled to 480 rows and centred, as a kiosk camera sees it.
    let scaled = image::imageops::resize(
        &source,
        480 * source.width() / source.height(),
        480,
        image::imageops::FilterType::Triangle,
    );
    let mut frame = RgbImage::from_pixel(640, 480, image::Rgb([90, 90, 90]));
    let x = (640i64 - i64::from(scaled.width())) / 2;
    image::imageops::overlay(&mut frame, &scaled, x, 0);
    let warm = engine.analyze(&frame)?;
    engine.passive_pad(&frame, &warm.detection)?;
    let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<Duration> {
        let mut v = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let t = Instant::now();
            f()?;
            v.push(t.elapsed());
        }
        Ok(median(v))
    };
    let detection = time(&mut || {
        engine
            .detect(&frame, Range::Short)
            .map(|_| ())
            .map_err(Into::into)
    })?;
    let detection_full = time(&mut || {
        engine
            .detect(&frame, Range::Full)
            .map(|_| ())
            .map_err(Into::into)
    })?;
    let landmarks = time(&mut || {
        engine
            .landmarks(&frame, &warm.detection)
            .map(|_| ())
            .map_err(Into::into)
    })?;
    let quality = time(&mut || {
        apg_face::quality::assess(&frame, &warm.landmarks, 1);
        Ok(())
    })?;
    let embedding = time(&mut || {
        let aligned = engine.align(&frame, &warm.landmarks)?;
        engine.embed(&aligned)?;
        Ok(())
    })?;
    let pad = time(&mut || {
        engine
            .passive_pad(&frame, &warm.detection)
            .map(|_| ())
            .map_err(Into::into)
    })?;
    let pipeline = time(&mut || engine.analyze(&frame).map(|_| ()).map_err(Into::into))?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("640x480 frame, median of {iterations} runs:");
    println!("  detection (short range)  {:8.2} ms", ms(detection));
    println!("  detection (full range)   {:8.2} ms", ms(detection_full));
    println!("  landmarks (2 passes)     {:8.2} ms", ms(landmarks));
    println!("  quality                  {:8.2} ms", ms(quality));
    println!("  align + embedding        {:8.2} ms", ms(embedding));
    println!("  passive PAD              {:8.2} ms", ms(pad));
    println!(
        "  pipeline (analyze)       {:8.2} ms  (detection, landmarks, quality, embedding)",
        ms(pipeline)
    );
    println!("  pipeline + PAD           {:8.2} ms", ms(pipeline + pad));

    // 1:N: 100,000 unit vectors from a fixed xorshift sequence (search speed does not depend
    // on what the vectors mean), then the real embedding as the probe.
    let n = 100_000;
    let mut gallery = Gallery::new();
    let mut state = 0x9E37_79B9u32;
    for i in 0..n {
        let values = (0..apg_face::embed::DIM)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 20_000) as f32 / 10_000.0 - 1.0
            })
            .collect();
        let e = Embedding::normalised(values).context("random embedding")?;
        gallery.insert(i, &e);
    }
    gallery.insert(n, &warm.embedding);
    let mut hits = Vec::new();
    let search = time(&mut || {
        hits = gallery.search(&warm.embedding, 5);
        Ok(())
    })?;
    if hits.first().map(|h| h.0) != Some(n) {
        bail!("1:N search did not return the enrolled probe first");
    }
    println!(
        "1:N search, top 5 of {} embeddings: {:.2} ms",
        gallery.len(),
        ms(search)
    );
    Ok(())
}
