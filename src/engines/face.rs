//! Adapter between the agent and `apg-face`.
//!
//! A face sample is one or more video frames. Every frame is analysed (detection, landmarks,
//! quality, embedding) and the frame of best quality makes the template. The configuration
//! selects the liveness checks:
//!
//! - `anti_spoofing`: the passive PAD model on the chosen frame, and for near-infrared frames
//!   the IR skin-reflectance check;
//! - `liveness_detection`: with three or more frames, the active challenge (a blink or a head
//!   turn across the frames); with a single frame, the passive PAD model, which is the only
//!   liveness evidence one frame can give.
//!
//! Quality is the engine's unified score (0..100) mapped onto the configuration's 0..1; a
//! rejected sample names the weakest measure and what to change.

use std::collections::HashMap;

use apg_device::{PixelFormat, Sample, VideoFrame};
use apg_face as face;
use image::RgbImage;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{
    Engine, EngineError, Gallery, LivenessCheck, Processed, Purpose, Quality, QualityMeasure,
    SamplePolicy,
};
use crate::modality::Modality;

/// Written into each template row so a future format change can be detected.
const TEMPLATE_FORMAT: &str = "apg-face/1";

/// Frames needed before an active challenge can be judged.
const CHALLENGE_FRAMES: usize = 3;

/// The face engine as the agent sees it.
pub struct FaceEngine {
    engine: face::FaceEngine,
}

impl std::fmt::Debug for FaceEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceEngine").finish_non_exhaustive()
    }
}

impl FaceEngine {
    /// Loads the face models (see [`apg_face::locate_models`]).
    pub fn load() -> Result<Self, EngineError> {
        let engine =
            face::FaceEngine::load_default().map_err(|error| EngineError::ModelsMissing {
                modality: Modality::Face,
                detail: error.to_string(),
            })?;
        Ok(Self { engine })
    }
}

/// Converts a frame to RGB: gray frames are replicated, 16-bit gray keeps its high byte.
fn to_rgb(frame: &VideoFrame) -> Result<RgbImage, EngineError> {
    let invalid = || EngineError::InvalidSample {
        detail: format!(
            "a {}x{} {:?} frame has {} bytes",
            frame.width,
            frame.height,
            frame.format,
            frame.data.len()
        ),
    };
    let expected = frame.width as usize * frame.height as usize * frame.format.bytes_per_pixel();
    if frame.data.len() != expected || frame.width == 0 || frame.height == 0 {
        return Err(invalid());
    }
    let rgb = match frame.format {
        PixelFormat::Rgb8 => frame.data.clone(),
        PixelFormat::Gray8 => frame.data.iter().flat_map(|&g| [g, g, g]).collect(),
        PixelFormat::Gray16 => frame
            .data
            .chunks_exact(2)
            .flat_map(|c| [c[1], c[1], c[1]])
            .collect(),
    };
    RgbImage::from_raw(frame.width, frame.height, rgb).ok_or_else(invalid)
}

fn not_live(verdict: &face::Verdict, what: &str) -> EngineError {
    EngineError::NotLive {
        check: verdict.check.to_owned(),
        detail: format!("{what}: {}", verdict.detail),
    }
}

fn check_of(verdict: &face::Verdict) -> LivenessCheck {
    LivenessCheck {
        name: verdict.check.to_owned(),
        passed: verdict.live,
        score: Some(f64::from(verdict.score)),
    }
}

impl Engine for FaceEngine {
    fn modality(&self) -> Modality {
        Modality::Face
    }

    fn template_format(&self) -> &'static str {
        TEMPLATE_FORMAT
    }

    fn process(&self, sample: &Sample, policy: &SamplePolicy) -> Result<Processed, EngineError> {
        let Sample::Video(frames) = sample else {
            return Err(EngineError::WrongSample {
                modality: Modality::Face,
                got: sample.kind().label(),
            });
        };
        if frames.is_empty() {
            return Err(EngineError::InvalidSample {
                detail: "the sample holds no frames".to_owned(),
            });
        }
        let images = frames.iter().map(to_rgb).collect::<Result<Vec<_>, _>>()?;
        let mut analyses = Vec::with_capacity(images.len());
        let mut last_error = None;
        for image in &images {
            match self.engine.analyze(image) {
                Ok(a) => analyses.push(Some(a)),
                Err(face::FaceError::NoFace { detail }) => {
                    last_error = Some(detail);
                    analyses.push(None);
                }
                Err(other) => {
                    return Err(EngineError::InvalidSample {
                        detail: other.to_string(),
                    })
                }
            }
        }
        let best = analyses
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.as_ref().map(|a| (i, a)))
            .max_by(|x, y| x.1.quality.unified.total_cmp(&y.1.quality.unified));
        let Some((best_index, chosen)) = best else {
            return Err(EngineError::LowQuality {
                score: 0.0,
                threshold: policy.quality_threshold,
                hint: format!(
                    "no face found ({}); look straight at the camera",
                    last_error.unwrap_or_else(|| "empty frames".to_owned())
                ),
            });
        };

        let report = &chosen.quality;
        let score = f64::from(report.unified) / 100.0;
        let quality = Quality {
            score,
            native: f64::from(report.unified),
            measures: report
                .measures
                .iter()
                .map(|m| QualityMeasure {
                    name: m.name.to_owned(),
                    value: f64::from(m.score),
                })
                .collect(),
        };
        if score < policy.quality_threshold {
            let hint = report.weakest().map_or_else(
                || "face the camera".to_owned(),
                |m| format!("{}: {}", m.name, m.reason),
            );
            return Err(EngineError::LowQuality {
                score,
                threshold: policy.quality_threshold,
                hint,
            });
        }
        if policy.purpose == Purpose::Enroll && chosen.faces_in_view > 1 {
            return Err(EngineError::LowQuality {
                score,
                threshold: policy.quality_threshold,
                hint: format!(
                    "{} faces in view; only the person enrolling may face the camera",
                    chosen.faces_in_view
                ),
            });
        }

        let image = &images[best_index];
        let infrared = frames[best_index].infrared;
        let mut liveness = Vec::new();
        let mut pad_done = false;
        let run_pad = |liveness: &mut Vec<LivenessCheck>| -> Result<(), EngineError> {
            let verdict = self
                .engine
                .passive_pad(image, &chosen.detection)
                .map_err(|e| EngineError::InvalidSample {
                    detail: e.to_string(),
                })?;
            if !verdict.live {
                return Err(not_live(
                    &verdict,
                    "the face looks like a photo or a screen",
                ));
            }
            liveness.push(check_of(&verdict));
            Ok(())
        };
        if policy.anti_spoofing {
            if infrared {
                let verdict = self.engine.nir_check(image, &chosen.detection);
                if !verdict.live {
                    return Err(not_live(
                        &verdict,
                        "the face does not reflect infrared light as skin does",
                    ));
                }
                liveness.push(check_of(&verdict));
            } else {
                run_pad(&mut liveness)?;
                pad_done = true;
            }
        }
        if policy.liveness_detection {
            let observations: Vec<face::FrameObservation> = analyses
                .iter()
                .flatten()
                .map(|a| face::FrameObservation::of(&a.landmarks))
                .collect();
            if observations.len() >= CHALLENGE_FRAMES {
                let blink =
                    face::liveness::evaluate_challenge(face::Challenge::Blink, &observations);
                let turn =
                    face::liveness::evaluate_challenge(face::Challenge::TurnHead, &observations);
                let passed = if blink.live { blink } else { turn.clone() };
                if !passed.live {
                    return Err(EngineError::NotLive {
                        check: "challenge".to_owned(),
                        detail: format!(
                            "no blink or head turn across the frames ({}; {})",
                            passed.detail, turn.detail
                        ),
                    });
                }
                liveness.push(check_of(&passed));
            } else if !pad_done && !infrared {
                run_pad(&mut liveness)?;
            }
        }

        let template = face::Template {
            embedding: chosen.embedding.clone(),
            quality: report.unified.round().clamp(0.0, 100.0) as u8,
        };
        Ok(Processed {
            template: Zeroizing::new(template.to_bytes()),
            quality,
            liveness,
        })
    }

    fn default_threshold(&self) -> f64 {
        f64::from(face::MATCH_THRESHOLD)
    }

    fn check_template(&self, template: &[u8]) -> Result<(), EngineError> {
        parse(template).map(|_| ())
    }

    fn new_gallery(&self) -> Box<dyn Gallery> {
        Box::new(FaceGallery::default())
    }
}

fn parse(bytes: &[u8]) -> Result<face::Template, EngineError> {
    face::Template::from_bytes(bytes).map_err(|error| EngineError::InvalidTemplate {
        modality: Modality::Face,
        detail: error.to_string(),
    })
}

/// Decrypted face embeddings: per subject for 1:1, one contiguous matrix for 1:N.
#[derive(Default)]
struct FaceGallery {
    by_subject: HashMap<Uuid, Vec<(Uuid, face::Embedding)>>,
    search: face::Gallery<Uuid>,
    subject_of: HashMap<Uuid, Uuid>,
}

impl Gallery for FaceGallery {
    fn insert(
        &mut self,
        template_id: Uuid,
        subject_id: Uuid,
        template: &[u8],
    ) -> Result<(), EngineError> {
        let template = parse(template)?;
        if let Some(previous) = self.subject_of.insert(template_id, subject_id) {
            if let Some(list) = self.by_subject.get_mut(&previous) {
                list.retain(|(id, _)| *id != template_id);
            }
            self.search.remove(&template_id);
        }
        self.search.insert(template_id, &template.embedding);
        self.by_subject
            .entry(subject_id)
            .or_default()
            .push((template_id, template.embedding));
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
            .map(|(_, reference)| f64::from(probe.embedding.cosine(reference)))
            .reduce(f64::max))
    }

    fn identify(&self, probe: &[u8], max: usize) -> Result<Vec<(Uuid, f64)>, EngineError> {
        let probe = parse(probe)?;
        let hits = self
            .search
            .search(&probe.embedding, max.saturating_mul(4).max(max));
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::OnceLock;

    use super::*;

    fn data(rel: &str) -> PathBuf {
        let shared = std::env::var_os("APG_SHARED_DIR")
            .map_or_else(|| PathBuf::from("/work/shared"), PathBuf::from);
        let path = shared.join("data/face").join(rel);
        assert!(
            path.is_file(),
            "{} is missing; set APG_SHARED_DIR",
            path.display()
        );
        path
    }

    fn engine() -> &'static FaceEngine {
        static ENGINE: OnceLock<FaceEngine> = OnceLock::new();
        ENGINE.get_or_init(|| {
            FaceEngine::load().expect("face models: run models/fetch or set APG_FACE_MODELS")
        })
    }

    fn frame(rel: &str) -> VideoFrame {
        let img = image::open(data(rel)).unwrap().into_rgb8();
        VideoFrame::new(img.width(), img.height(), PixelFormat::Rgb8, img.into_raw()).unwrap()
    }

    fn policy(purpose: Purpose, anti_spoofing: bool) -> SamplePolicy {
        SamplePolicy {
            quality_threshold: 0.85,
            liveness_detection: false,
            anti_spoofing,
            purpose,
        }
    }

    fn template(rel: &str) -> Vec<u8> {
        engine()
            .process(
                &Sample::Video(vec![frame(rel)]),
                &policy(Purpose::Enroll, false),
            )
            .unwrap()
            .template
            .to_vec()
    }

    #[test]
    fn enrolled_faces_verify_and_identify_the_right_person() {
        // img20/img21 are the same person (a genuine pair in master.csv); img19 is another.
        let alice = Uuid::now_v7();
        let bob = Uuid::now_v7();
        let mut gallery = engine().new_gallery();
        gallery
            .insert(Uuid::now_v7(), alice, &template("deepface/img20.jpg"))
            .unwrap();
        gallery
            .insert(Uuid::now_v7(), bob, &template("deepface/img19.jpg"))
            .unwrap();
        let probe = template("deepface/img21.jpg");
        let threshold = engine().default_threshold();
        assert!(gallery.verify(alice, &probe).unwrap().unwrap() >= threshold);
        assert!(gallery.verify(bob, &probe).unwrap().unwrap() < threshold);
        assert_eq!(gallery.identify(&probe, 2).unwrap()[0].0, alice);
        assert_eq!(gallery.remove_subject(alice), 1);
        assert_eq!(gallery.len(), 1);
    }

    #[test]
    fn a_printed_face_is_rejected_when_anti_spoofing_is_on() {
        // These photos carry an EXIF rotation that `image::open` does not apply, so the head
        // looks tilted; quality is not what this test is about.
        let mut pad_only = policy(Purpose::Verify, true);
        pad_only.quality_threshold = 0.0;
        let sample = Sample::Video(vec![frame("pad-samples/image_F1.jpg")]);
        let err = engine().process(&sample, &pad_only).unwrap_err();
        assert!(matches!(err, EngineError::NotLive { .. }), "{err}");
        let live = Sample::Video(vec![frame("pad-samples/image_T1.jpg")]);
        let processed = engine().process(&live, &pad_only).unwrap();
        assert_eq!(processed.liveness[0].name, "pad_model");
    }

    #[test]
    fn a_still_photo_repeated_fails_the_active_challenge() {
        let f = frame("deepface/img1.jpg");
        let sample = Sample::Video(vec![f.clone(), f.clone(), f]);
        let mut p = policy(Purpose::Verify, false);
        p.liveness_detection = true;
        let err = engine().process(&sample, &p).unwrap_err();
        assert!(
            matches!(&err, EngineError::NotLive { check, .. } if check == "challenge"),
            "{err}"
        );
    }

    #[test]
    fn a_group_photo_cannot_enrol_and_the_hint_says_why() {
        let err = engine()
            .process(
                &Sample::Video(vec![frame("deepface/couple.jpg")]),
                &policy(Purpose::Enroll, false),
            )
            .unwrap_err();
        assert!(err.is_retry(), "{err}");
        assert!(
            err.to_string().contains("single_face") || err.to_string().contains("faces in view"),
            "{err}"
        );
    }

    #[test]
    fn gray_frames_are_accepted_and_other_samples_refused() {
        let img = image::open(data("deepface/img2.jpg")).unwrap().into_luma8();
        let gray = VideoFrame::new(
            img.width(),
            img.height(),
            PixelFormat::Gray8,
            img.into_raw(),
        )
        .unwrap();
        engine()
            .process(&Sample::Video(vec![gray]), &policy(Purpose::Verify, false))
            .unwrap();
        let audio = Sample::Audio(apg_device::AudioChunk {
            sample_rate: 16000,
            samples: vec![0.0; 10],
            captured_at: std::time::SystemTime::now(),
        });
        assert!(matches!(
            engine().process(&audio, &policy(Purpose::Verify, false)),
            Err(EngineError::WrongSample { .. })
        ));
    }

    #[test]
    fn corrupt_templates_are_refused() {
        let mut t = template("deepface/img2.jpg");
        assert!(engine().check_template(&t).is_ok());
        t.truncate(50);
        assert!(matches!(
            engine().check_template(&t),
            Err(EngineError::InvalidTemplate { .. })
        ));
    }
}
