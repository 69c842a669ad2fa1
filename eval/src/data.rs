//! FVC-style data set loading: `DB*/<finger>_<impression>.tif` with optional `.iso` beside.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use apg_fingerprint::GrayImage;

/// One impression.
pub struct Sample {
    pub finger: u32,
    pub impression: u32,
    pub path: PathBuf,
    pub image: GrayImage,
    /// Bytes of the file itself (for NBIS, which decodes images on its own).
    #[cfg_attr(not(feature = "nbis"), allow(dead_code))]
    pub file_bytes: Vec<u8>,
    /// ISO/IEC 19794-2 record made by another extractor, when present.
    pub iso: Option<Vec<u8>>,
}

/// One data set (one FVC database).
pub struct DataSet {
    pub name: String,
    pub samples: Vec<Sample>,
}

/// Subdirectories of `root` holding `.tif` images, sorted; `root` itself when it holds them.
pub fn discover(root: &Path) -> Result<Vec<PathBuf>> {
    if !root.is_dir() {
        bail!("data set directory {} does not exist; pass --dataset pointing at the FVC2002 folder (e.g. ../shared/data/fingerprint/fvc2002)", root.display());
    }
    let mut dirs = Vec::new();
    let has_tif = |d: &Path| -> bool {
        std::fs::read_dir(d)
            .map(|it| {
                it.flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "tif"))
            })
            .unwrap_or(false)
    };
    if has_tif(root) {
        dirs.push(root.to_path_buf());
    } else {
        for e in std::fs::read_dir(root).with_context(|| format!("reading {}", root.display()))? {
            let p = e?.path();
            if p.is_dir() && has_tif(&p) {
                dirs.push(p);
            }
        }
    }
    dirs.sort();
    if dirs.is_empty() {
        bail!(
            "no .tif images under {}; expected DB*_B folders with <finger>_<impression>.tif files",
            root.display()
        );
    }
    Ok(dirs)
}

pub fn load(dir: &Path) -> Result<DataSet> {
    let mut samples = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = e?.path();
        if path.extension().is_none_or(|x| x != "tif") {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let Some((f, i)) = stem.split_once('_') else {
            bail!(
                "image {} is not named <finger>_<impression>.tif",
                path.display()
            );
        };
        let finger: u32 = f
            .parse()
            .with_context(|| format!("finger number in {}", path.display()))?;
        let impression: u32 = i
            .parse()
            .with_context(|| format!("impression number in {}", path.display()))?;
        let file_bytes =
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let image =
            decode_tiff(&file_bytes).with_context(|| format!("decoding {}", path.display()))?;
        let iso_path = path.with_extension("iso");
        let iso = if iso_path.exists() {
            Some(
                std::fs::read(&iso_path)
                    .with_context(|| format!("reading {}", iso_path.display()))?,
            )
        } else {
            None
        };
        samples.push(Sample {
            finger,
            impression,
            path,
            image,
            file_bytes,
            iso,
        });
    }
    samples.sort_by_key(|s| (s.finger, s.impression));
    let name = dir
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("dataset")
        .to_string();
    // The TIFFs carry no resolution tag; the data set's own description gives it.
    let dpi = resolution(&name);
    for s in &mut samples {
        s.image.dpi = dpi;
    }
    Ok(DataSet { name, samples })
}

/// Scan resolution of an FVC2002 data set, from its published description: DB2's optical
/// sensor scans at 569 dpi; DB1 (optical), DB3 (capacitive) and DB4 (synthetic, SFinGe) are
/// 500 dpi. Other folders are taken as 500 dpi.
pub fn resolution(set_name: &str) -> u16 {
    if set_name.starts_with("DB2") {
        569
    } else {
        500
    }
}

fn decode_tiff(bytes: &[u8]) -> Result<GrayImage> {
    let mut d = tiff::decoder::Decoder::new(std::io::Cursor::new(bytes))?;
    let (w, h) = d.dimensions()?;
    let pixels = match d.read_image()? {
        tiff::decoder::DecodingResult::U8(v) => v,
        _ => bail!("only 8-bit grayscale TIFF is supported"),
    };
    if pixels.len() != (w * h) as usize {
        bail!(
            "only single-channel 8-bit TIFF is supported ({} bytes for {w}x{h})",
            pixels.len()
        );
    }
    Ok(GrayImage::new(w, h, pixels))
}
