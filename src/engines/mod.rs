//! The agent's view of the biometric engines.
//!
//! The engine crates in `engines/` are pure libraries with their own types; the adapters here
//! turn a driver's [`Sample`] into an engine input, map the configuration's 0..1 quality
//! threshold onto the engine's own scale, and keep per-modality galleries behind one trait, so
//! the decision code in [`crate::decision`] is the same for every modality.

use std::fmt;
use std::sync::Arc;

use apg_device::Sample;
use serde::Serialize;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::modality::Modality;

pub mod face;
pub mod fingerprint;

/// Modalities this build has an engine for.
pub fn available(modality: Modality) -> bool {
    matches!(modality, Modality::Fingerprint | Modality::Face)
}

/// Names of the available modalities, for error messages.
pub fn available_list() -> String {
    Modality::ALL
        .iter()
        .filter(|m| available(**m))
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Loads the engine of a modality.
pub fn load(modality: Modality) -> Result<Arc<dyn Engine>, EngineError> {
    match modality {
        Modality::Fingerprint => Ok(Arc::new(fingerprint::FingerprintEngine::new())),
        Modality::Face => Ok(Arc::new(face::FaceEngine::load()?)),
        other => Err(EngineError::Unavailable { modality: other }),
    }
}

/// Why a sample is taken (enrollment asks more of a sample than verification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// Making a reference template.
    Enroll,
    /// Comparing against references.
    Verify,
}

/// What the configuration asks of each sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplePolicy {
    /// Minimum quality, 0..1.
    pub quality_threshold: f64,
    /// Apply liveness checks (sensor verdicts, challenges).
    pub liveness_detection: bool,
    /// Apply presentation-attack checks (replay detection, PAD models).
    pub anti_spoofing: bool,
    /// Why the sample is taken.
    pub purpose: Purpose,
}

/// One quality measure, for telling the person what to change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityMeasure {
    /// Measure name (`clarity`, `minutiae_count`, `sharpness`, ...).
    pub name: String,
    /// 0..100.
    pub value: f64,
}

/// Quality of a sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quality {
    /// Unified score on the configuration's 0..1 scale.
    pub score: f64,
    /// The engine's own score (e.g. 0..100 for fingerprints).
    pub native: f64,
    /// Individual measures.
    pub measures: Vec<QualityMeasure>,
}

/// One liveness or presentation-attack check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LivenessCheck {
    /// Check name (`replay`, `sensor`, `pad_model`, `blink`, ...).
    pub name: String,
    /// True when the check passed.
    pub passed: bool,
    /// Score where the check has one.
    pub score: Option<f64>,
}

/// A judged sample and its template.
pub struct Processed {
    /// Template bytes in the engine's format.
    pub template: Zeroizing<Vec<u8>>,
    /// Quality.
    pub quality: Quality,
    /// Checks that ran.
    pub liveness: Vec<LivenessCheck>,
}

impl fmt::Debug for Processed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Processed")
            .field("template_bytes", &self.template.len())
            .field("quality", &self.quality)
            .field("liveness", &self.liveness)
            .finish()
    }
}

/// Why an engine refused a sample or a template.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The sample is too poor; the person can try again.
    #[error("sample quality {score:.2} is below the threshold {threshold:.2}: {hint}")]
    LowQuality {
        /// Unified score.
        score: f64,
        /// Threshold in effect.
        threshold: f64,
        /// What the person should change.
        hint: String,
    },
    /// A liveness or anti-spoofing check failed.
    #[error("presentation rejected by the {check} check: {detail}")]
    NotLive {
        /// Check name.
        check: String,
        /// Explanation.
        detail: String,
    },
    /// The sample is of the wrong kind for this engine.
    #[error("a {got} sample cannot be used for {modality}")]
    WrongSample {
        /// Engine modality.
        modality: Modality,
        /// Kind received.
        got: &'static str,
    },
    /// The sample is unusable (garbage, wrong size).
    #[error("unusable sample: {detail}")]
    InvalidSample {
        /// What is wrong.
        detail: String,
    },
    /// Template bytes that do not parse.
    #[error("invalid {modality} template: {detail}")]
    InvalidTemplate {
        /// Modality.
        modality: Modality,
        /// What is wrong.
        detail: String,
    },
    /// The engine's models or runtime are not installed.
    #[error("the {modality} engine cannot load its models: {detail}")]
    ModelsMissing {
        /// Modality.
        modality: Modality,
        /// What is missing and how to install it.
        detail: String,
    },
    /// This build has no engine for the modality.
    #[error("no {modality} engine in this build (available: {})", available_list())]
    Unavailable {
        /// Modality asked for.
        modality: Modality,
    },
}

impl EngineError {
    /// True when presenting again may succeed.
    pub fn is_retry(&self) -> bool {
        matches!(self, Self::LowQuality { .. })
    }

    /// Short machine-readable label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::LowQuality { .. } => "low_quality",
            Self::NotLive { .. } => "not_live",
            Self::WrongSample { .. } => "wrong_sample",
            Self::InvalidSample { .. } => "invalid_sample",
            Self::InvalidTemplate { .. } => "invalid_template",
            Self::ModelsMissing { .. } => "models_missing",
            Self::Unavailable { .. } => "unavailable",
        }
    }
}

/// A biometric engine as the agent uses it.
pub trait Engine: Send + Sync {
    /// Modality served.
    fn modality(&self) -> Modality;

    /// Template format and version written into each template row, e.g. `apg-fp/1`.
    fn template_format(&self) -> &'static str;

    /// Judges a sample (quality, liveness) and makes a template from it.
    fn process(&self, sample: &Sample, policy: &SamplePolicy) -> Result<Processed, EngineError>;

    /// Score threshold for a false match rate of 1 in 10,000, measured on real data.
    fn default_threshold(&self) -> f64;

    /// Checks that template bytes parse (before storing an imported template).
    fn check_template(&self, template: &[u8]) -> Result<(), EngineError>;

    /// An empty in-memory gallery for this engine's templates.
    fn new_gallery(&self) -> Box<dyn Gallery>;
}

/// Decrypted templates of one modality, held in memory for fast 1:1 and 1:N comparison.
pub trait Gallery: Send + Sync {
    /// Adds a template.
    fn insert(
        &mut self,
        template_id: Uuid,
        subject_id: Uuid,
        template: &[u8],
    ) -> Result<(), EngineError>;

    /// Removes every template of a subject; returns how many.
    fn remove_subject(&mut self, subject_id: Uuid) -> usize;

    /// Number of templates.
    fn len(&self) -> usize;

    /// True when empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Best score of `probe` against the subject's templates; `None` when it has none.
    fn verify(&self, subject_id: Uuid, probe: &[u8]) -> Result<Option<f64>, EngineError>;

    /// Best-scoring subjects (each once), highest first, at most `max`.
    fn identify(&self, probe: &[u8], max: usize) -> Result<Vec<(Uuid, f64)>, EngineError>;
}
