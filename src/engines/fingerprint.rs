//! Adapter between the agent and `apg-fingerprint`.
//!
//! It checks the sample kind, applies the replay check and the sensor's own liveness verdict
//! when the configuration asks for them, maps the engine's 0..100 quality onto the
//! configuration's 0..1 scale, and keeps a per-modality gallery of decrypted templates.

use std::collections::HashMap;
use std::sync::Mutex;

use apg_device::{FingerprintImage, Sample};
use apg_fingerprint as fp;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{
    Engine, EngineError, Gallery, LivenessCheck, Processed, Purpose, Quality, QualityMeasure,
    SamplePolicy,
};
use crate::modality::Modality;

/// Written into each template row so a future format change can be detected.
const TEMPLATE_FORMAT: &str = "apg-fp/1";

/// Recent captures remembered by the replay check: enough for a busy door over several minutes.
const REPLAY_MEMORY: usize = 256;

/// Enrollment needs enough minutiae for later comparisons to be meaningful.
const MIN_ENROLL_MINUTIAE: usize = 12;

/// The fingerprint engine as the agent sees it.
pub struct FingerprintEngine {
    extractor: fp::Extractor,
    matcher: fp::Matcher,
    replay: Mutex<fp::ReplayDetector>,
}

impl FingerprintEngine {
    /// Builds the engine with its default extraction settings.
    pub fn new() -> Self {
        Self {
            extractor: fp::Extractor::new(fp::ExtractorConfig::default()),
            matcher: fp::Matcher,
            replay: Mutex::new(fp::ReplayDetector::new(REPLAY_MEMORY)),
        }
    }

    fn sensor_check(image: &FingerprintImage) -> Option<LivenessCheck> {
        image.sensor_liveness.as_ref().map(|verdict| LivenessCheck {
            name: "sensor".to_owned(),
            passed: verdict.live,
            score: verdict.score.map(f64::from),
        })
    }
}

impl Default for FingerprintEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine for FingerprintEngine {
    fn modality(&self) -> Modality {
        Modality::Fingerprint
    }

    fn template_format(&self) -> &'static str {
        TEMPLATE_FORMAT
    }

    fn process(&self, sample: &Sample, policy: &SamplePolicy) -> Result<Processed, EngineError> {
        let Sample::Fingerprint(image) = sample else {
            return Err(EngineError::WrongSample {
                modality: Modality::Fingerprint,
                got: sample.kind().label(),
            });
        };
        let gray = fp::GrayImage {
            width: image.width,
            height: image.height,
            dpi: image.dpi,
            pixels: image.pixels.clone(),
        };

        let mut liveness = Vec::new();
        if policy.liveness_detection {
            if let Some(check) = Self::sensor_check(image) {
                if !check.passed {
                    return Err(EngineError::NotLive {
                        check: "sensor".to_owned(),
                        detail: "the reader reported the presentation as not live".to_owned(),
                    });
                }
                liveness.push(check);
            }
        }

        let extraction =
            self.extractor
                .extract(&gray)
                .map_err(|error| EngineError::InvalidSample {
                    detail: error.to_string(),
                })?;
        let native = f64::from(extraction.quality.score);
        let score = f64::from(extraction.quality.normalised());
        let minutiae = extraction.template.minutiae_count();
        let quality = Quality {
            score,
            native,
            measures: vec![
                QualityMeasure {
                    name: "nfiq_like".to_owned(),
                    value: native,
                },
                QualityMeasure {
                    name: "minutiae_count".to_owned(),
                    value: minutiae as f64,
                },
            ],
        };
        if score < policy.quality_threshold {
            return Err(EngineError::LowQuality {
                score,
                threshold: policy.quality_threshold,
                hint: "press the finger flat and centred, clean and dry the sensor, and try again"
                    .to_owned(),
            });
        }
        if policy.purpose == Purpose::Enroll && minutiae < MIN_ENROLL_MINUTIAE {
            return Err(EngineError::LowQuality {
                score,
                threshold: policy.quality_threshold,
                hint: format!(
                    "only {minutiae} minutiae found; press more of the finger onto the sensor"
                ),
            });
        }

        // Replay is checked after quality so a rejected smudge does not poison the memory.
        if policy.anti_spoofing {
            let mut replay = self
                .replay
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            replay
                .check(&gray)
                .map_err(|rejected| EngineError::NotLive {
                    check: "replay".to_owned(),
                    detail: format!("{rejected}; a real finger never gives the same image twice"),
                })?;
            liveness.push(LivenessCheck {
                name: "replay".to_owned(),
                passed: true,
                score: None,
            });
        }

        Ok(Processed {
            template: Zeroizing::new(extraction.template.to_bytes()),
            quality,
            liveness,
        })
    }

    fn default_threshold(&self) -> f64 {
        f64::from(fp::THRESHOLD_FMR_1E4)
    }

    fn check_template(&self, template: &[u8]) -> Result<(), EngineError> {
        parse(template).map(|_| ())
    }

    fn new_gallery(&self) -> Box<dyn Gallery> {
        Box::new(FingerprintGallery::new(self.matcher.clone()))
    }
}

fn parse(bytes: &[u8]) -> Result<fp::Template, EngineError> {
    fp::Template::from_bytes(bytes).map_err(|error| EngineError::InvalidTemplate {
        modality: Modality::Fingerprint,
        detail: error.to_string(),
    })
}

/// Decrypted fingerprint templates: per subject for 1:1, and the engine's parallel gallery
/// for 1:N.
struct FingerprintGallery {
    matcher: fp::Matcher,
    by_subject: HashMap<Uuid, Vec<(Uuid, fp::Template)>>,
    search: fp::Gallery<Uuid>,
    subject_of: HashMap<Uuid, Uuid>,
}

impl FingerprintGallery {
    fn new(matcher: fp::Matcher) -> Self {
        Self {
            search: fp::Gallery::new(),
            matcher,
            by_subject: HashMap::new(),
            subject_of: HashMap::new(),
        }
    }
}

impl Gallery for FingerprintGallery {
    fn insert(
        &mut self,
        template_id: Uuid,
        subject_id: Uuid,
        template: &[u8],
    ) -> Result<(), EngineError> {
        let template = parse(template)?;
        if let Some(previous) = self.subject_of.insert(template_id, subject_id) {
            // Re-inserting a template (after rotation or import) replaces the old copy.
            if let Some(list) = self.by_subject.get_mut(&previous) {
                list.retain(|(id, _)| *id != template_id);
            }
            self.search.remove(&template_id);
        }
        self.search.insert(template_id, template.clone());
        self.by_subject
            .entry(subject_id)
            .or_default()
            .push((template_id, template));
        Ok(())
    }

    fn remove_subject(&mut self, subject_id: Uuid) -> usize {
        let Some(list) = self.by_subject.remove(&subject_id) else {
            return 0;
        };
        for (template_id, _) in &list {
            self.search.remove(template_id);
            self.subject_of.remove(template_id);
        }
        list.len()
    }

    fn len(&self) -> usize {
        self.subject_of.len()
    }

    fn verify(&self, subject_id: Uuid, probe: &[u8]) -> Result<Option<f64>, EngineError> {
        let probe = parse(probe)?;
        let Some(list) = self.by_subject.get(&subject_id) else {
            return Ok(None);
        };
        Ok(list
            .iter()
            .map(|(_, reference)| f64::from(self.matcher.compare(&probe, reference)))
            .fold(None, |best: Option<f64>, score| {
                Some(best.map_or(score, |b| b.max(score)))
            }))
    }

    fn identify(&self, probe: &[u8], max: usize) -> Result<Vec<(Uuid, f64)>, EngineError> {
        let probe = parse(probe)?;
        // Ask for more template hits than subjects wanted: a subject may hold several templates.
        let hits = self.search.search(&probe, max.saturating_mul(4).max(max));
        let mut best: Vec<(Uuid, f64)> = Vec::with_capacity(max);
        for (template_id, score) in hits {
            let Some(subject) = self.subject_of.get(&template_id) else {
                continue;
            };
            if best.iter().any(|(seen, _)| seen == subject) {
                continue;
            }
            best.push((*subject, f64::from(score)));
            if best.len() == max {
                break;
            }
        }
        Ok(best)
    }
}
