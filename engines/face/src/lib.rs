//! The face engine of apg-biometric.
//!
//! A pure library: pixels in; faces, quality, liveness verdicts, embeddings and scores out.
//! The pipeline for one frame is
//!
//! 1. **detection** with BlazeFace ([`detect`]), short range for kiosks or full range for
//!    door cameras, with anchor decoding and weighted non-maximum suppression;
//! 2. **landmarks** with FaceMesh ([`mesh`]): 468 points, from which come the five alignment
//!    points, head pose, eye and mouth openness;
//! 3. **quality** ([`quality`]): nine measures 0..100, each with a reason, and a unified score;
//! 4. **alignment** of the face onto the 112x112 template by a least-squares similarity;
//! 5. **embedding** with MobileFaceNet ([`embed`]): 192 values, L2-normalised, compared by
//!    cosine similarity 1:1 or against a [`embed::Gallery`] 1:N;
//! 6. **liveness** ([`liveness`]) when asked: the passive PAD model, active challenges over
//!    frame sequences, and a near-infrared skin check for IR cameras.
//!
//! Models are TFLite files run through `apg-tflite`; [`locate_models`] finds them.
#![warn(missing_docs)]

pub mod detect;
pub mod embed;
pub mod geometry;
pub mod liveness;
pub mod mesh;
pub mod quality;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::RgbImage;

pub use detect::{Detection, Range};
pub use embed::{Embedding, Gallery, Template, TemplateError};
pub use liveness::{Challenge, FrameObservation, Verdict};
pub use mesh::{Landmarks, Pose};
pub use quality::{Measure, QualityReport};

/// Environment variable naming the directory holding the face models.
pub const MODELS_ENV: &str = "APG_FACE_MODELS";
/// Where the packages install the face models.
pub const PACKAGED_MODELS: &str = "/usr/share/apg-biometric/models";

/// Cosine similarity at which two faces are declared the same person: the middle of the gap
/// between the highest impostor score (0.381) and the lowest genuine score (0.521) on the
/// 300 deepface pairs (`apg-eval-face pairs`).
pub const MATCH_THRESHOLD: f32 = 0.45;

/// Why the engine could not produce a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FaceError {
    /// A model or the runtime failed.
    #[error(transparent)]
    Model(#[from] apg_tflite::Error),
    /// No usable face in the frame.
    #[error("no face found: {detail}")]
    NoFace {
        /// What was seen.
        detail: String,
    },
    /// The face models were not found.
    #[error("face models not found (looked at: {tried}); run models/fetch or set {MODELS_ENV}")]
    ModelsNotFound {
        /// Where it looked.
        tried: String,
    },
}

/// Finds the face model directory: `APG_FACE_MODELS`, the packaged directory, then
/// `models/face` (fetched) or `shared/models/face` beside the working directory or one of its
/// ancestors.
pub fn locate_models() -> Result<PathBuf, FaceError> {
    let has_models = |d: &Path| d.join(embed::MODEL_FILE).is_file();
    let mut tried = Vec::new();
    if let Some(dir) = std::env::var_os(MODELS_ENV) {
        let dir = PathBuf::from(dir);
        if has_models(&dir) {
            return Ok(dir);
        }
        tried.push(format!("{} (from {MODELS_ENV})", dir.display()));
    }
    if has_models(Path::new(PACKAGED_MODELS)) {
        return Ok(PathBuf::from(PACKAGED_MODELS));
    }
    tried.push(PACKAGED_MODELS.to_owned());
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            for candidate in [dir.join("models/face"), dir.join("shared/models/face")] {
                if has_models(&candidate) {
                    return Ok(candidate);
                }
            }
        }
        tried.push(format!(
            "models/face and shared/models/face above {}",
            cwd.display()
        ));
    }
    Err(FaceError::ModelsNotFound {
        tried: tried.join(", "),
    })
}

/// Time spent in each stage of [`FaceEngine::analyze`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    /// Detection.
    pub detection: Duration,
    /// Landmarks.
    pub landmarks: Duration,
    /// Quality.
    pub quality: Duration,
    /// Alignment and embedding.
    pub embedding: Duration,
}

/// Everything the engine learned about the main face of a frame.
#[derive(Debug, Clone)]
pub struct FaceAnalysis {
    /// The chosen face (the largest).
    pub detection: Detection,
    /// Number of faces in view.
    pub faces_in_view: usize,
    /// Its landmarks.
    pub landmarks: Landmarks,
    /// Its quality.
    pub quality: QualityReport,
    /// Its embedding.
    pub embedding: Embedding,
    /// Stage timings.
    pub times: StageTimes,
}

/// The loaded face models.
#[derive(Debug)]
pub struct FaceEngine {
    short: detect::Detector,
    full: detect::Detector,
    landmarker: mesh::Landmarker,
    embedder: embed::Embedder,
    pad: liveness::PadModel,
}

impl FaceEngine {
    /// Loads every model from `dir`.
    pub fn load(dir: &Path) -> Result<Self, FaceError> {
        Ok(Self {
            short: detect::Detector::load(dir, Range::Short)?,
            full: detect::Detector::load(dir, Range::Full)?,
            landmarker: mesh::Landmarker::load(dir)?,
            embedder: embed::Embedder::load(dir)?,
            pad: liveness::PadModel::load(dir)?,
        })
    }

    /// Loads the models from [`locate_models`].
    pub fn load_default() -> Result<Self, FaceError> {
        Self::load(&locate_models()?)
    }

    /// Faces found by one detector, best first.
    pub fn detect(&self, image: &RgbImage, range: Range) -> Result<Vec<Detection>, FaceError> {
        match range {
            Range::Short => self.short.detect(image),
            Range::Full => self.full.detect(image),
        }
    }

    /// Faces in the frame: the short-range model first, the full-range model when it finds
    /// none (a face far from the camera or small in a large photo).
    pub fn find_faces(&self, image: &RgbImage) -> Result<Vec<Detection>, FaceError> {
        let faces = self.short.detect(image)?;
        if !faces.is_empty() {
            return Ok(faces);
        }
        self.full.detect(image)
    }

    /// Landmarks of a detected face.
    pub fn landmarks(
        &self,
        image: &RgbImage,
        detection: &Detection,
    ) -> Result<Landmarks, FaceError> {
        self.landmarker.landmarks(image, detection)
    }

    /// The face aligned to 112x112 (RGB, HWC, 0..255 floats).
    pub fn align(&self, image: &RgbImage, landmarks: &Landmarks) -> Result<Vec<f32>, FaceError> {
        let map = embed::alignment(&landmarks.five_points()).ok_or_else(|| FaceError::NoFace {
            detail: "the landmarks are degenerate".to_owned(),
        })?;
        let mut out = Vec::new();
        geometry::warp_to_tensor(image, &map, embed::ALIGNED, 1.0, 0.0, &mut out);
        Ok(out)
    }

    /// Embedding of an aligned face.
    pub fn embed(&self, aligned: &[f32]) -> Result<Embedding, FaceError> {
        self.embedder.embed(aligned)
    }

    /// Detection, landmarks, quality and embedding of the largest face in the frame.
    pub fn analyze(&self, image: &RgbImage) -> Result<FaceAnalysis, FaceError> {
        let t0 = Instant::now();
        let faces = self.find_faces(image)?;
        let t1 = Instant::now();
        let faces_in_view = faces.len();
        let detection = faces
            .into_iter()
            .max_by(|a, b| (a.width * a.height).total_cmp(&(b.width * b.height)))
            .ok_or_else(|| FaceError::NoFace {
                detail: format!(
                    "neither detector found a face in the {}x{} frame",
                    image.width(),
                    image.height()
                ),
            })?;
        let landmarks = self.landmarks(image, &detection)?;
        let t2 = Instant::now();
        let quality = quality::assess(image, &landmarks, faces_in_view);
        let t3 = Instant::now();
        let aligned = self.align(image, &landmarks)?;
        let embedding = self.embed(&aligned)?;
        let t4 = Instant::now();
        Ok(FaceAnalysis {
            detection,
            faces_in_view,
            landmarks,
            quality,
            embedding,
            times: StageTimes {
                detection: t1 - t0,
                landmarks: t2 - t1,
                quality: t3 - t2,
                embedding: t4 - t3,
            },
        })
    }

    /// Passive presentation-attack detection on a detected face.
    pub fn passive_pad(
        &self,
        image: &RgbImage,
        detection: &Detection,
    ) -> Result<Verdict, FaceError> {
        self.pad.check(image, detection)
    }

    /// Runs an active challenge over consecutive frames: landmarks of the largest face in
    /// each frame, then the challenge's rule. Frames without a face are skipped.
    pub fn challenge(
        &self,
        frames: &[RgbImage],
        challenge: Challenge,
    ) -> Result<Verdict, FaceError> {
        let mut observations = Vec::with_capacity(frames.len());
        for frame in frames {
            let faces = self.find_faces(frame)?;
            if let Some(face) = faces
                .iter()
                .max_by(|a, b| (a.width * a.height).total_cmp(&(b.width * b.height)))
            {
                observations.push(FrameObservation::of(&self.landmarks(frame, face)?));
            }
        }
        Ok(liveness::evaluate_challenge(challenge, &observations))
    }

    /// Near-infrared skin check on a detected face in an IR frame.
    pub fn nir_check(&self, image: &RgbImage, detection: &Detection) -> Verdict {
        liveness::nir_skin_check(image, detection)
    }
}
