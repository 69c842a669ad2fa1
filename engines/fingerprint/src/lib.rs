//! Fingerprint engine for apg-biometric.
//!
//! Pipeline: [`GrayImage`] → [`Extractor`] (segmentation, orientation field, ridge frequency,
//! oriented Gabor enhancement, binarisation, thinning, minutiae, false-minutiae removal,
//! quality) → [`Template`] (compact versioned format, ISO/IEC 19794-2 and ANSI/INCITS 378 through
//! [`iso`]) → [`Matcher`] (Minutia Cylinder-Code local similarity with relaxation, then a
//! refitted global alignment that counts agreeing minutiae) and
//! [`Gallery`] (two-stage 1:N search on all cores).
//!
//! The crate is pure: no I/O, no global state. Liveness is honest: [`ReplayDetector`] rejects
//! near-exact copies of earlier captures, and [`pad::PresentationAttackDetector`] is the
//! interface a future presentation-attack model plugs into; no software PAD is claimed.
#![warn(missing_docs)]
#![allow(
    clippy::needless_range_loop,
    reason = "image code indexes several parallel arrays with the same index"
)]

mod consolidate;
mod extract;
mod first_stage;
mod gallery;
mod image;
pub mod iso;
mod mcc;
pub mod pad;
#[cfg(target_arch = "x86_64")]
mod popcount;
mod replay;
mod template;

pub use extract::{ExtractError, Extraction, Extractor, ExtractorConfig, QualityReport};
pub use gallery::Gallery;
pub use image::GrayImage;
pub use mcc::Matcher;
pub use replay::{ReplayDetector, ReplayRejected};
pub use template::{Minutia, MinutiaKind, Template, TemplateError};

/// Score threshold of [`Matcher::compare`] giving a false-match rate of at most 1/10,000,
/// measured on FVC2002 DB1_B..DB4_B (all cross-finger impostor pairs, see the README).
pub const THRESHOLD_FMR_1E4: f32 = 0.0075;
