//! Presentation-attack detection: the interface a model plugs into.
//!
//! We have no spoof data set, so this crate claims no software PAD. What it does provide:
//! [`crate::ReplayDetector`] (a capture that is a near-exact copy of an earlier one is
//! rejected) and this trait, which a future PAD model (or a sensor's own liveness verdict,
//! passed through by the agent) implements.

use crate::GrayImage;

/// Verdict of a presentation-attack detector.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PadVerdict {
    /// Probability-like score that the presentation is a bona fide finger, 0..1.
    pub bona_fide: f32,
    /// Whether the detector accepts the presentation at its own operating point.
    pub accepted: bool,
}

/// Error of a presentation-attack detector (model missing, input unsupported).
#[derive(Debug, thiserror::Error)]
#[error("presentation-attack detector {detector} failed: {reason}")]
pub struct PadError {
    /// Detector name.
    pub detector: String,
    /// What went wrong and what to do.
    pub reason: String,
}

/// A presentation-attack detector working on the captured image.
pub trait PresentationAttackDetector: Send + Sync {
    /// Short stable name, for logs and audit records.
    fn name(&self) -> &str;
    /// Judges one capture.
    fn assess(&self, img: &GrayImage) -> Result<PadVerdict, PadError>;
}
