//! BlazeFace detection: anchors, box decoding and weighted non-maximum suppression.

use std::path::Path;

use apg_tflite::Model;
use image::RgbImage;

use crate::geometry::{warp_to_tensor, Affine, Point};
use crate::FaceError;

/// Which BlazeFace model to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// `face_detection_short_range.tflite`: faces within about 2 m (kiosks).
    Short,
    /// `face_detection_full_range.tflite`: faces up to about 5 m (door cameras).
    Full,
}

impl Range {
    /// Model file name.
    pub fn file(self) -> &'static str {
        match self {
            Self::Short => "face_detection_short_range.tflite",
            Self::Full => "face_detection_full_range.tflite",
        }
    }

    fn input_size(self) -> usize {
        match self {
            Self::Short => 128,
            Self::Full => 192,
        }
    }

    /// Anchor layout: (stride, anchors per cell) for each distinct stride.
    fn layers(self) -> &'static [(usize, usize)] {
        match self {
            // Four SSD layers with strides 8, 16, 16, 16 and two anchors each: the three
            // stride-16 layers share one 8x8 grid with six anchors per cell.
            Self::Short => &[(8, 2), (16, 6)],
            Self::Full => &[(4, 1)],
        }
    }

    fn min_score(self) -> f32 {
        match self {
            Self::Short => 0.5,
            Self::Full => 0.6,
        }
    }
}

/// Anchor centres in the unit square, in the model's output order.
pub fn anchors(range: Range) -> Vec<Point> {
    let size = range.input_size();
    let mut out = Vec::new();
    for &(stride, per_cell) in range.layers() {
        let cells = size.div_ceil(stride);
        for y in 0..cells {
            for x in 0..cells {
                for _ in 0..per_cell {
                    out.push(Point::new(
                        (x as f32 + 0.5) / cells as f32,
                        (y as f32 + 0.5) / cells as f32,
                    ));
                }
            }
        }
    }
    out
}

/// Keypoints BlazeFace reports, in its order. "Right" is the person's right (image left for
/// a camera facing them).
pub const KEYPOINT_NAMES: [&str; 6] = [
    "right_eye",
    "left_eye",
    "nose_tip",
    "mouth_centre",
    "right_ear",
    "left_ear",
];

/// One detected face, in source image pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub width: f32,
    /// Height.
    pub height: f32,
    /// Confidence 0..1.
    pub score: f32,
    /// The six keypoints of [`KEYPOINT_NAMES`].
    pub keypoints: [Point; 6],
}

impl Detection {
    /// Box centre.
    pub fn centre(&self) -> Point {
        Point::new(self.x + self.width / 2.0, self.y + self.height / 2.0)
    }

    /// Intersection over union with another box.
    pub fn iou(&self, other: &Detection) -> f32 {
        let ix = (self.x + self.width).min(other.x + other.width) - self.x.max(other.x);
        let iy = (self.y + self.height).min(other.y + other.height) - self.y.max(other.y);
        if ix <= 0.0 || iy <= 0.0 {
            return 0.0;
        }
        let inter = ix * iy;
        inter / (self.width * self.height + other.width * other.height - inter)
    }
}

/// Overlap above which two detections are the same face.
const NMS_IOU: f32 = 0.3;

/// Weighted non-maximum suppression (as in MediaPipe): each cluster of overlapping
/// detections becomes the score-weighted mean of its members, with the best member's score.
pub fn weighted_nms(mut candidates: Vec<Detection>) -> Vec<Detection> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    while !candidates.is_empty() {
        let best = candidates[0].clone();
        let (cluster, rest): (Vec<Detection>, Vec<Detection>) =
            candidates.into_iter().partition(|d| d.iou(&best) > NMS_IOU);
        candidates = rest;
        let total: f32 = cluster.iter().map(|d| d.score).sum();
        let mut merged = best.clone();
        if cluster.len() > 1 && total > 0.0 {
            let avg = |f: &dyn Fn(&Detection) -> f32| {
                cluster.iter().map(|d| f(d) * d.score).sum::<f32>() / total
            };
            merged.x = avg(&|d| d.x);
            merged.y = avg(&|d| d.y);
            merged.width = avg(&|d| d.width);
            merged.height = avg(&|d| d.height);
            for k in 0..6 {
                merged.keypoints[k] =
                    Point::new(avg(&|d| d.keypoints[k].x), avg(&|d| d.keypoints[k].y));
            }
        }
        out.push(merged);
    }
    out
}

/// A loaded BlazeFace model.
#[derive(Debug)]
pub struct Detector {
    range: Range,
    model: Model,
    anchors: Vec<Point>,
}

impl Detector {
    /// Loads the model of `range` from `dir`.
    pub fn load(dir: &Path, range: Range) -> Result<Self, FaceError> {
        let model = Model::load(dir.join(range.file()))?;
        let size = range.input_size();
        model.expect_input(0, &[1, size, size, 3])?;
        let anchors = anchors(range);
        let outputs_ok = model.outputs().len() == 2
            && model.outputs()[0].shape == [1, anchors.len(), 16]
            && model.outputs()[1].shape == [1, anchors.len(), 1];
        if !outputs_ok {
            return Err(FaceError::Model(apg_tflite::Error::Shape {
                model: model.name().to_owned(),
                detail: format!(
                    "outputs {:?} do not match {} BlazeFace anchors",
                    model.outputs(),
                    anchors.len()
                ),
            }));
        }
        Ok(Self {
            range,
            model,
            anchors,
        })
    }

    /// Which model this is.
    pub fn range(&self) -> Range {
        self.range
    }

    /// All faces in the image, best first.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>, FaceError> {
        let size = self.range.input_size();
        let map = Affine::letterbox(image.width(), image.height(), size);
        let mut input = Vec::new();
        warp_to_tensor(image, &map, size, 1.0 / 127.5, -1.0, &mut input);
        let outputs = self.model.run(&[&input])?;
        let (boxes, scores) = (&outputs[0], &outputs[1]);
        let scale = size as f32;
        let to_image = |x: f32, y: f32| map.apply(Point::new(x * scale, y * scale));
        let pixel = map.m[0];
        let mut candidates = Vec::new();
        for (i, anchor) in self.anchors.iter().enumerate() {
            let score = 1.0 / (1.0 + (-scores[i].clamp(-100.0, 100.0)).exp());
            if score < self.range.min_score() {
                continue;
            }
            let r = &boxes[i * 16..i * 16 + 16];
            let cx = r[0] / scale + anchor.x;
            let cy = r[1] / scale + anchor.y;
            let (w, h) = (r[2] / scale, r[3] / scale);
            if w <= 0.0 || h <= 0.0 {
                continue;
            }
            let top_left = to_image(cx - w / 2.0, cy - h / 2.0);
            let mut keypoints = [Point::default(); 6];
            for (k, kp) in keypoints.iter_mut().enumerate() {
                *kp = to_image(
                    r[4 + 2 * k] / scale + anchor.x,
                    r[5 + 2 * k] / scale + anchor.y,
                );
            }
            candidates.push(Detection {
                x: top_left.x,
                y: top_left.y,
                width: w * scale * pixel,
                height: h * scale * pixel,
                score,
                keypoints,
            });
        }
        Ok(weighted_nms(candidates))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_counts_match_the_model_outputs() {
        assert_eq!(anchors(Range::Short).len(), 896);
        assert_eq!(anchors(Range::Full).len(), 2304);
        let a = anchors(Range::Short);
        assert_eq!(a[0], Point::new(0.5 / 16.0, 0.5 / 16.0));
        assert_eq!(a[1], a[0], "two anchors share each stride-8 cell");
        assert_eq!(a[512], Point::new(0.5 / 8.0, 0.5 / 8.0));
    }

    fn det(x: f32, score: f32) -> Detection {
        Detection {
            x,
            y: 0.0,
            width: 10.0,
            height: 10.0,
            score,
            keypoints: [Point::new(x, 0.0); 6],
        }
    }

    #[test]
    fn nms_merges_overlapping_boxes_and_keeps_separate_faces() {
        let out = weighted_nms(vec![det(0.0, 0.9), det(1.0, 0.9), det(50.0, 0.7)]);
        assert_eq!(out.len(), 2);
        assert!(
            (out[0].x - 0.5).abs() < 1e-5,
            "merged box is the weighted mean: {}",
            out[0].x
        );
        assert_eq!(out[0].score, 0.9);
        assert_eq!(out[1].x, 50.0);
    }
}
