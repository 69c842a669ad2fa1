//! Alignment to the 112x112 template, MobileFaceNet embeddings, the template format, and
//! 1:1 and 1:N matching.

use std::path::Path;

use apg_tflite::Model;

use crate::geometry::{similarity, Affine, Point};
use crate::FaceError;

/// Model file name.
pub const MODEL_FILE: &str = "MobileFaceNet.tflite";
/// Side of the aligned face.
pub const ALIGNED: usize = 112;
/// Embedding length.
pub const DIM: usize = 192;

/// Where the five alignment points land in the 112x112 crop (the template used by the
/// ArcFace family of models): eyes, nose tip, mouth corners, image left before image right.
pub const TEMPLATE_POINTS: [Point; 5] = [
    Point::new(38.2946, 51.6963),
    Point::new(73.5318, 51.5014),
    Point::new(56.0252, 71.7366),
    Point::new(41.5493, 92.3655),
    Point::new(70.7299, 92.2041),
];

/// The map from aligned-crop pixels to source pixels for five landmark points.
pub fn alignment(points: &[Point; 5]) -> Option<Affine> {
    similarity(&TEMPLATE_POINTS, points)
}

/// A loaded MobileFaceNet.
#[derive(Debug)]
pub struct Embedder {
    model: Model,
}

impl Embedder {
    /// Loads `MobileFaceNet.tflite` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, FaceError> {
        let model = Model::load(dir.join(MODEL_FILE))?;
        model.expect_input(0, &[2, ALIGNED, ALIGNED, 3])?;
        if model.outputs().first().map(|t| t.shape.as_slice()) != Some(&[2, DIM][..]) {
            return Err(FaceError::Model(apg_tflite::Error::Shape {
                model: model.name().to_owned(),
                detail: format!("output {:?} is not 2 x {DIM}", model.outputs().first()),
            }));
        }
        Ok(Self { model })
    }

    /// Embedding of an aligned face (`ALIGNED`x`ALIGNED` RGB, HWC, 0..255 floats).
    ///
    /// The model takes a batch of two; the second slot holds the mirrored face and the two
    /// embeddings are summed before normalising, which makes the result less sensitive to
    /// which side of the face the light comes from.
    pub fn embed(&self, aligned: &[f32]) -> Result<Embedding, FaceError> {
        let n = ALIGNED * ALIGNED * 3;
        if aligned.len() != n {
            return Err(FaceError::Model(apg_tflite::Error::Shape {
                model: self.model.name().to_owned(),
                detail: format!("aligned face has {} values, expected {n}", aligned.len()),
            }));
        }
        let mut batch = Vec::with_capacity(2 * n);
        batch.extend(aligned.iter().map(|v| (v - 127.5) / 128.0));
        for row in aligned.chunks_exact(ALIGNED * 3) {
            for px in row.chunks_exact(3).rev() {
                batch.extend(px.iter().map(|v| (v - 127.5) / 128.0));
            }
        }
        let out = self.model.run(&[&batch])?;
        let raw = &out[0];
        let sum: Vec<f32> = (0..DIM).map(|i| raw[i] + raw[DIM + i]).collect();
        Embedding::normalised(sum).ok_or(FaceError::NoFace {
            detail: "the embedding of this face is zero".to_owned(),
        })
    }
}

/// An L2-normalised 192-d face embedding.
#[derive(Clone, PartialEq)]
pub struct Embedding(Vec<f32>);

impl std::fmt::Debug for Embedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Embedding({} dims)", self.0.len())
    }
}

impl Embedding {
    /// Normalises `values` to unit length; `None` for a zero or non-finite vector or a wrong
    /// length.
    pub fn normalised(mut values: Vec<f32>) -> Option<Self> {
        if values.len() != DIM || values.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm < 1e-6 {
            return None;
        }
        values.iter_mut().for_each(|v| *v /= norm);
        Some(Self(values))
    }

    /// The values.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// Cosine similarity, -1..1 (a dot product, both being unit length).
    pub fn cosine(&self, other: &Embedding) -> f32 {
        dot(&self.0, &other.0)
    }
}

/// Dot product written as eight independent lanes so the compiler vectorises it.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// Template format magic.
const MAGIC: &[u8; 4] = b"APGF";
/// Current template version.
pub const TEMPLATE_VERSION: u8 = 1;
/// Embedding model id written into templates: 1 = MobileFaceNet 192-d, aligned 112x112.
const MODEL_MOBILEFACENET: u8 = 1;
const HEADER: usize = 4 + 1 + 1 + 2 + 1;

/// Why template bytes do not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// Too short, or the length does not match the header.
    #[error("template is {got} bytes, expected {expected}")]
    Length {
        /// Bytes given.
        got: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// Not a face template.
    #[error("not an apg face template (bad magic)")]
    Magic,
    /// A version or model this build does not know.
    #[error("template version {version} / model {model} is not supported (this build reads version 1, model 1)")]
    Unsupported {
        /// Version byte.
        version: u8,
        /// Model byte.
        model: u8,
    },
    /// The embedding is not unit length or not finite.
    #[error("template embedding is not a unit vector")]
    NotNormalised,
}

/// A face template: the embedding plus the quality of the sample it came from.
///
/// Layout (little-endian): `APGF`, version `u8` (1), model `u8` (1 = MobileFaceNet),
/// dimension `u16` (192), quality `u8` (0..100), then `dimension` `f32` values.
#[derive(Clone, PartialEq)]
pub struct Template {
    /// The embedding.
    pub embedding: Embedding,
    /// Unified quality of the source sample, 0..100.
    pub quality: u8,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("quality", &self.quality)
            .finish_non_exhaustive()
    }
}

impl Template {
    /// Serialises the template.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + DIM * 4);
        out.extend_from_slice(MAGIC);
        out.push(TEMPLATE_VERSION);
        out.push(MODEL_MOBILEFACENET);
        out.extend_from_slice(&(DIM as u16).to_le_bytes());
        out.push(self.quality);
        for v in self.embedding.as_slice() {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Parses and checks template bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TemplateError> {
        let expected = HEADER + DIM * 4;
        if bytes.len() < HEADER {
            return Err(TemplateError::Length {
                got: bytes.len(),
                expected,
            });
        }
        if &bytes[..4] != MAGIC {
            return Err(TemplateError::Magic);
        }
        let (version, model) = (bytes[4], bytes[5]);
        let dim = u16::from_le_bytes([bytes[6], bytes[7]]) as usize;
        if version != TEMPLATE_VERSION || model != MODEL_MOBILEFACENET || dim != DIM {
            return Err(TemplateError::Unsupported { version, model });
        }
        if bytes.len() != expected {
            return Err(TemplateError::Length {
                got: bytes.len(),
                expected,
            });
        }
        let values: Vec<f32> = bytes[HEADER..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let norm = values.iter().map(|v| v * v).sum::<f32>();
        if !norm.is_finite() || (norm - 1.0).abs() > 1e-3 {
            return Err(TemplateError::NotNormalised);
        }
        Ok(Self {
            embedding: Embedding(values),
            quality: bytes[8].min(100),
        })
    }
}

/// Embeddings held in one contiguous matrix for 1:N search.
#[derive(Debug, Clone)]
pub struct Gallery<K> {
    keys: Vec<K>,
    rows: Vec<f32>,
}

impl<K> Default for Gallery<K> {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            rows: Vec::new(),
        }
    }
}

impl<K: Clone + PartialEq> Gallery<K> {
    /// An empty gallery.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of embeddings.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds an embedding under `key` (a key may hold several).
    pub fn insert(&mut self, key: K, embedding: &Embedding) {
        self.keys.push(key);
        self.rows.extend_from_slice(embedding.as_slice());
    }

    /// Removes every embedding under `key`; returns how many.
    pub fn remove(&mut self, key: &K) -> usize {
        let mut removed = 0;
        let mut i = 0;
        while i < self.keys.len() {
            if self.keys[i] == *key {
                self.keys.swap_remove(i);
                let last = self.keys.len();
                if i != last {
                    let (head, tail) = self.rows.split_at_mut(last * DIM);
                    head[i * DIM..(i + 1) * DIM].copy_from_slice(&tail[..DIM]);
                }
                self.rows.truncate(last * DIM);
                removed += 1;
            } else {
                i += 1;
            }
        }
        removed
    }

    /// The `max` best-scoring entries (cosine), highest first.
    pub fn search(&self, probe: &Embedding, max: usize) -> Vec<(K, f32)> {
        if max == 0 {
            return Vec::new();
        }
        let p = probe.as_slice();
        let mut best: Vec<(usize, f32)> = Vec::with_capacity(max + 1);
        for (i, row) in self.rows.chunks_exact(DIM).enumerate() {
            let score = dot(p, row);
            if best.len() == max && score <= best[max - 1].1 {
                continue;
            }
            let at = best.partition_point(|(_, s)| *s >= score);
            best.insert(at, (i, score));
            best.truncate(max);
        }
        best.into_iter()
            .map(|(i, s)| (self.keys[i].clone(), s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u32) -> Embedding {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let values = (0..DIM)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 2000) as f32 / 1000.0 - 1.0
            })
            .collect();
        Embedding::normalised(values).unwrap()
    }

    #[test]
    fn a_template_round_trips_and_rejects_tampering() {
        let t = Template {
            embedding: unit(7),
            quality: 88,
        };
        let bytes = t.to_bytes();
        assert_eq!(bytes.len(), 9 + 768);
        assert_eq!(Template::from_bytes(&bytes).unwrap(), t);
        assert_eq!(
            Template::from_bytes(&bytes[..100]).unwrap_err(),
            TemplateError::Length {
                got: 100,
                expected: 777
            }
        );
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(
            Template::from_bytes(&bad).unwrap_err(),
            TemplateError::Magic
        );
        let mut bad = bytes.clone();
        bad[4] = 2;
        assert!(matches!(
            Template::from_bytes(&bad),
            Err(TemplateError::Unsupported { version: 2, .. })
        ));
        let mut bad = bytes;
        bad[20] ^= 0x40;
        assert_eq!(
            Template::from_bytes(&bad).unwrap_err(),
            TemplateError::NotNormalised
        );
    }

    #[test]
    fn the_gallery_finds_the_exact_embedding_first_and_removes_by_key() {
        let mut g = Gallery::new();
        for k in 0..50u32 {
            g.insert(k, &unit(k));
        }
        g.insert(7, &unit(1000));
        let hits = g.search(&unit(7), 3);
        assert_eq!(hits[0].0, 7);
        assert!((hits[0].1 - 1.0).abs() < 1e-5);
        assert!(hits[1].1 <= hits[0].1 && hits[2].1 <= hits[1].1);
        assert_eq!(g.remove(&7), 2);
        assert_eq!(g.len(), 49);
        assert!(g.search(&unit(7), 5).iter().all(|(k, _)| *k != 7));
        // Rows stayed with their keys after the swap-removes.
        assert!((g.search(&unit(49), 1)[0].1 - 1.0).abs() < 1e-5);
    }

    #[test]
    fn dot_handles_lengths_that_are_not_multiples_of_eight() {
        let a: Vec<f32> = (0..13).map(|i| i as f32).collect();
        assert_eq!(dot(&a, &a), (0..13).map(|i| (i * i) as f32).sum::<f32>());
    }
}
