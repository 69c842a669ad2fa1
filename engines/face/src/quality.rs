//! Face image quality in the spirit of ISO/IEC 29794-5 and BSI's OFIQ.
//!
//! Each measure maps a physical quantity onto 0..100 (100 = no reason for concern) and says,
//! in words a kiosk can show, what to change. The unified score is the geometric mean of the
//! measures: one poor measure pulls it down hard, several slightly imperfect ones only a
//! little.

use image::RgbImage;

use crate::embed::{alignment, ALIGNED};
use crate::geometry::warp_gray;
use crate::mesh::Landmarks;

/// One quality measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Measure {
    /// Stable name (`face_size`, `sharpness`, ...).
    pub name: &'static str,
    /// 0..100.
    pub score: f32,
    /// The measured quantity, in the unit of `reason`.
    pub raw: f32,
    /// What was measured and, when the score is low, what to do.
    pub reason: String,
}

/// All measures and the unified score.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityReport {
    /// Individual measures.
    pub measures: Vec<Measure>,
    /// Geometric mean of the measures, 0..100.
    pub unified: f32,
}

impl QualityReport {
    /// The weakest measure, which is what the person should fix first.
    pub fn weakest(&self) -> Option<&Measure> {
        self.measures
            .iter()
            .min_by(|a, b| a.score.total_cmp(&b.score))
    }

    /// A measure by name.
    pub fn get(&self, name: &str) -> Option<&Measure> {
        self.measures.iter().find(|m| m.name == name)
    }
}

/// Linear ramp: 0 at `zero`, 100 at `full` (either order).
fn ramp(value: f32, zero: f32, full: f32) -> f32 {
    (100.0 * (value - zero) / (full - zero)).clamp(0.0, 100.0)
}

fn measure(name: &'static str, score: f32, raw: f32, ok: String, fix: &str) -> Measure {
    let reason = if score >= 85.0 {
        ok
    } else {
        format!("{ok}; {fix}")
    };
    Measure {
        name,
        score,
        raw,
        reason,
    }
}

/// Inter-eye distance that counts as fully sufficient (pixels).
pub const GOOD_EYE_DISTANCE: f32 = 60.0;

/// Measures the quality of one face: its landmarks, the source image, and how many faces the
/// detector saw.
pub fn assess(image: &RgbImage, face: &Landmarks, faces_in_view: usize) -> QualityReport {
    let mut measures = Vec::with_capacity(9);

    let eyes = face.inter_eye_distance();
    measures.push(measure(
        "face_size",
        ramp(eyes, 20.0, GOOD_EYE_DISTANCE),
        eyes,
        format!("{eyes:.0} px between the eyes"),
        "come closer to the camera",
    ));

    // Photometric measures on the aligned 112x112 face, so they see the same pixels as the
    // embedding model whatever the camera resolution.
    let gray = alignment(&face.five_points())
        .map(|map| warp_gray(image, &map, ALIGNED, ALIGNED))
        .unwrap_or_else(|| vec![0.0; ALIGNED * ALIGNED]);
    let inner: Vec<f32> = (16..96)
        .flat_map(|y| (24..88).map(move |x| (x, y)))
        .map(|(x, y)| gray[y * ALIGNED + x])
        .collect();

    let sharp = laplacian_variance(&gray, ALIGNED, ALIGNED);
    measures.push(measure(
        "sharpness",
        ramp(sharp, 5.0, 60.0),
        sharp,
        format!("Laplacian variance {sharp:.0}"),
        "hold still and check that the lens is clean and in focus",
    ));

    let mean = inner.iter().sum::<f32>() / inner.len() as f32;
    let exposure = if mean < 100.0 {
        ramp(mean, 25.0, 80.0)
    } else {
        ramp(mean, 235.0, 190.0)
    };
    measures.push(measure(
        "exposure",
        exposure,
        mean,
        format!("mean face brightness {mean:.0} of 255"),
        if mean < 100.0 {
            "add light in front of the face"
        } else {
            "reduce the light on the face"
        },
    ));

    let mut sorted = inner.clone();
    sorted.sort_by(f32::total_cmp);
    let pct = |q: f32| sorted[((sorted.len() - 1) as f32 * q) as usize];
    let range = pct(0.95) - pct(0.05);
    measures.push(measure(
        "dynamic_range",
        ramp(range, 25.0, 70.0),
        range,
        format!("5-95 % brightness spread {range:.0}"),
        "avoid flat, hazy or backlit light",
    ));

    let half = |x0: usize, x1: usize| {
        let v: Vec<f32> = (20..92)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .map(|(x, y)| gray[y * ALIGNED + x])
            .collect();
        v.iter().sum::<f32>() / v.len() as f32
    };
    let (left, right) = (half(20, 56), half(56, 92));
    let ratio = left.min(right) / left.max(right).max(1.0);
    measures.push(measure(
        "illumination_uniformity",
        ramp(ratio, 0.45, 0.8),
        ratio,
        format!("darker/brighter face half {ratio:.2}"),
        "light the face evenly from the front",
    ));

    let pose = face.pose();
    let (yaw, pitch, roll) = (pose.yaw.abs(), pose.pitch.abs(), pose.roll.abs());
    let pose_score = ramp(yaw, 45.0, 15.0)
        .min(ramp(pitch, 45.0, 20.0))
        .min(ramp(roll, 40.0, 15.0));
    let worst = [
        (yaw, "turn the head towards the camera"),
        (pitch, "raise or lower the chin to face the camera"),
        (roll, "hold the head upright"),
    ]
    .into_iter()
    .max_by(|a, b| a.0.total_cmp(&b.0))
    .map_or("", |w| w.1);
    measures.push(measure(
        "head_pose",
        pose_score,
        yaw.max(pitch).max(roll),
        format!(
            "yaw {:.0}°, pitch {:.0}°, roll {:.0}°",
            pose.yaw, pose.pitch, pose.roll
        ),
        worst,
    ));

    let ear = face.eye_openness();
    measures.push(measure(
        "eyes_open",
        ramp(ear, 0.12, 0.22),
        ear,
        format!("eye aspect ratio {ear:.2}"),
        "open the eyes and look at the camera",
    ));

    let mar = face.mouth_openness();
    measures.push(measure(
        "mouth_closed",
        ramp(mar, 0.45, 0.2),
        mar,
        format!("lip gap {mar:.2} of mouth width"),
        "close the mouth",
    ));

    let single = if faces_in_view <= 1 { 100.0 } else { 0.0 };
    measures.push(measure(
        "single_face",
        single,
        faces_in_view as f32,
        format!("{faces_in_view} face(s) in view"),
        "only one person should stand in front of the camera",
    ));

    let unified = unify(&measures);
    QualityReport { measures, unified }
}

/// Geometric mean of the measure scores, with each floored at 1 so that one zero does not
/// hide how good the rest are.
pub fn unify(measures: &[Measure]) -> f32 {
    if measures.is_empty() {
        return 0.0;
    }
    let log_sum: f32 = measures
        .iter()
        .map(|m| (m.score.max(1.0) / 100.0).ln())
        .sum();
    100.0 * (log_sum / measures.len() as f32).exp()
}

/// Variance of the 4-neighbour Laplacian: low for blurred images.
pub fn laplacian_variance(gray: &[f32], width: usize, height: usize) -> f32 {
    let mut values = Vec::with_capacity(width * height);
    for y in 1..height - 1 {
        for x in 1..width - 1 {
            let i = y * width + x;
            values.push(
                gray[i - 1] + gray[i + 1] + gray[i - width] + gray[i + width] - 4.0 * gray[i],
            );
        }
    }
    let n = values.len().max(1) as f32;
    let mean = values.iter().sum::<f32>() / n;
    values.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkerboard_is_sharper_than_its_blur() {
        let (w, h) = (32, 32);
        let sharp: Vec<f32> = (0..w * h)
            .map(|i| {
                if (i % w / 2 + i / w / 2) % 2 == 0 {
                    0.0
                } else {
                    255.0
                }
            })
            .collect();
        let blurred: Vec<f32> = (0..w * h)
            .map(|i| 127.0 + ((i % w) as f32 * 0.3).sin() * 5.0)
            .collect();
        assert!(laplacian_variance(&sharp, w, h) > 100.0 * laplacian_variance(&blurred, w, h));
    }

    #[test]
    fn one_bad_measure_pulls_the_unified_score_below_the_default_threshold() {
        let m = |score| Measure {
            name: "x",
            score,
            raw: 0.0,
            reason: String::new(),
        };
        let good: Vec<Measure> = (0..9).map(|_| m(100.0)).collect();
        assert!((unify(&good) - 100.0).abs() < 1e-3);
        let mut one_bad = good.clone();
        one_bad[3] = m(0.0);
        assert!(unify(&one_bad) < 85.0, "{}", unify(&one_bad));
        let mut slightly = good;
        slightly[0] = m(80.0);
        slightly[1] = m(90.0);
        assert!(unify(&slightly) > 95.0);
    }

    #[test]
    fn ramps_clamp_and_run_in_either_direction() {
        assert_eq!(ramp(10.0, 20.0, 60.0), 0.0);
        assert_eq!(ramp(40.0, 20.0, 60.0), 50.0);
        assert_eq!(ramp(0.1, 0.45, 0.2), 100.0);
        assert_eq!(ramp(0.5, 0.45, 0.2), 0.0);
    }
}
