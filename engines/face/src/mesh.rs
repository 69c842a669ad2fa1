//! FaceMesh landmarks (`face_landmark.tflite`, 468 points) and the measures derived from them:
//! the five alignment points, head pose, eye and mouth openness.

use std::path::Path;

use apg_tflite::Model;
use image::RgbImage;

use crate::detect::Detection;
use crate::geometry::{warp_to_tensor, Affine, Point};
use crate::FaceError;

/// Model file name.
pub const MODEL_FILE: &str = "face_landmark.tflite";
const SIZE: usize = 192;
/// Number of FaceMesh points.
pub const POINTS: usize = 468;

// FaceMesh indices. "Right" is the person's right, which is on the image's left.
const RIGHT_EYE: [usize; 6] = [33, 160, 158, 133, 153, 144];
const LEFT_EYE: [usize; 6] = [263, 387, 385, 362, 380, 373];
const NOSE_TIP: usize = 1;
const MOUTH_RIGHT: usize = 61;
const MOUTH_LEFT: usize = 291;
const LIP_UPPER: usize = 13;
const LIP_LOWER: usize = 14;
const CHEEK_RIGHT: usize = 234;
const CHEEK_LEFT: usize = 454;
const FOREHEAD: usize = 10;
const CHIN: usize = 152;

/// 468 landmarks of one face in source pixels, with FaceMesh's relative depth.
#[derive(Debug, Clone)]
pub struct Landmarks {
    /// Points in source image pixels.
    pub points: Vec<Point>,
    /// Depth of each point, same scale as x (smaller is nearer the camera).
    pub depth: Vec<f32>,
    /// FaceMesh's face-presence confidence 0..1.
    pub presence: f32,
}

/// Head rotation in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pose {
    /// Left-right turn; positive when the face turns towards the image's right.
    pub yaw: f32,
    /// Up-down nod; positive when the chin goes down.
    pub pitch: f32,
    /// In-plane tilt; positive clockwise in the image.
    pub roll: f32,
}

impl Landmarks {
    fn mean(&self, idx: &[usize]) -> Point {
        let n = idx.len() as f32;
        let (x, y) = idx.iter().fold((0.0, 0.0), |(x, y), &i| {
            (x + self.points[i].x, y + self.points[i].y)
        });
        Point::new(x / n, y / n)
    }

    /// Eye centres: the person's right eye (image left) then left eye.
    pub fn eye_centres(&self) -> (Point, Point) {
        (self.mean(&RIGHT_EYE), self.mean(&LEFT_EYE))
    }

    /// Distance between the eye centres in pixels.
    pub fn inter_eye_distance(&self) -> f32 {
        let (r, l) = self.eye_centres();
        r.distance(l)
    }

    /// The five points of the usual 112x112 alignment template, in template order: eye on the
    /// image left, eye on the image right, nose tip, mouth corner on the image left, mouth
    /// corner on the image right.
    pub fn five_points(&self) -> [Point; 5] {
        let (r, l) = self.eye_centres();
        [
            r,
            l,
            self.points[NOSE_TIP],
            self.points[MOUTH_RIGHT],
            self.points[MOUTH_LEFT],
        ]
    }

    fn eye_aspect(&self, idx: &[usize; 6]) -> f32 {
        let p = |k: usize| self.points[idx[k]];
        let width = p(0).distance(p(3));
        if width <= f32::EPSILON {
            return 0.0;
        }
        (p(1).distance(p(5)) + p(2).distance(p(4))) / (2.0 * width)
    }

    /// Eye aspect ratio (lid opening over eye width) averaged over both eyes: about 0.3 open,
    /// under 0.15 closed.
    pub fn eye_openness(&self) -> f32 {
        (self.eye_aspect(&RIGHT_EYE) + self.eye_aspect(&LEFT_EYE)) / 2.0
    }

    /// Inner lip gap over mouth width: about 0 closed, over 0.3 wide open.
    pub fn mouth_openness(&self) -> f32 {
        let width = self.points[MOUTH_RIGHT].distance(self.points[MOUTH_LEFT]);
        if width <= f32::EPSILON {
            return 0.0;
        }
        self.points[LIP_UPPER].distance(self.points[LIP_LOWER]) / width
    }

    /// Head pose from the 3-D mesh: the cheek-to-cheek and forehead-to-chin axes give the
    /// face's orientation.
    pub fn pose(&self) -> Pose {
        let v = |i: usize| [self.points[i].x, self.points[i].y, self.depth[i]];
        let sub = |a: [f32; 3], b: [f32; 3]| [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
        let norm = |a: [f32; 3]| {
            let n = (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt().max(1e-6);
            [a[0] / n, a[1] / n, a[2] / n]
        };
        let right = norm(sub(v(CHEEK_LEFT), v(CHEEK_RIGHT)));
        let down = norm(sub(v(CHIN), v(FOREHEAD)));
        // Forward (into the scene) = right x down.
        let f = [
            right[1] * down[2] - right[2] * down[1],
            right[2] * down[0] - right[0] * down[2],
            right[0] * down[1] - right[1] * down[0],
        ];
        Pose {
            yaw: f[0].atan2(f[2]).to_degrees(),
            pitch: (-f[1]).atan2(f[2]).to_degrees(),
            roll: right[1].atan2(right[0]).to_degrees(),
        }
    }
}

/// A loaded FaceMesh model.
#[derive(Debug)]
pub struct Landmarker {
    model: Model,
}

impl Landmarker {
    /// Loads `face_landmark.tflite` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, FaceError> {
        let model = Model::load(dir.join(MODEL_FILE))?;
        model.expect_input(0, &[1, SIZE, SIZE, 3])?;
        if model.outputs().first().map(apg_tflite::TensorInfo::len) != Some(POINTS * 3) {
            return Err(FaceError::Model(apg_tflite::Error::Shape {
                model: model.name().to_owned(),
                detail: format!(
                    "first output {:?} is not 468 x 3 landmarks",
                    model.outputs().first()
                ),
            }));
        }
        Ok(Self { model })
    }

    /// Landmarks of the face in `detection`. The region of interest is the detection box
    /// enlarged 1.5 times and turned so the eyes are level; it is then refined once from the
    /// first mesh, which centres the face better than the detector's box.
    pub fn landmarks(
        &self,
        image: &RgbImage,
        detection: &Detection,
    ) -> Result<Landmarks, FaceError> {
        let [right_eye, left_eye, ..] = detection.keypoints;
        let angle = (left_eye.y - right_eye.y).atan2(left_eye.x - right_eye.x);
        let side = detection.width.max(detection.height) * 1.5;
        let first = self.run(image, detection.centre(), side, angle)?;
        let (r, l) = first.eye_centres();
        let angle = (l.y - r.y).atan2(l.x - r.x);
        // Extent of the mesh in the rotated frame gives the refined box.
        let (s, c) = angle.sin_cos();
        let (mut lo_u, mut hi_u, mut lo_v, mut hi_v) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
        for p in &first.points {
            let (u, v) = (c * p.x + s * p.y, -s * p.x + c * p.y);
            lo_u = lo_u.min(u);
            hi_u = hi_u.max(u);
            lo_v = lo_v.min(v);
            hi_v = hi_v.max(v);
        }
        let (mu, mv) = ((lo_u + hi_u) / 2.0, (lo_v + hi_v) / 2.0);
        let centre = Point::new(c * mu - s * mv, s * mu + c * mv);
        let side = (hi_u - lo_u).max(hi_v - lo_v) * 1.5;
        if !side.is_finite() || side < 4.0 {
            return Ok(first);
        }
        self.run(image, centre, side, angle)
    }

    fn run(
        &self,
        image: &RgbImage,
        centre: Point,
        side: f32,
        angle: f32,
    ) -> Result<Landmarks, FaceError> {
        let map = Affine::square_crop(centre, side, angle, SIZE);
        let mut input = Vec::new();
        warp_to_tensor(image, &map, SIZE, 1.0 / 255.0, 0.0, &mut input);
        let outputs = self.model.run(&[&input])?;
        let raw = &outputs[0];
        let pixel = side / SIZE as f32;
        let mut points = Vec::with_capacity(POINTS);
        let mut depth = Vec::with_capacity(POINTS);
        for i in 0..POINTS {
            points.push(map.apply(Point::new(raw[i * 3], raw[i * 3 + 1])));
            depth.push(raw[i * 3 + 2] * pixel);
        }
        let presence = outputs
            .get(1)
            .and_then(|v| v.first())
            .map_or(1.0, |logit| 1.0 / (1.0 + (-logit).exp()));
        Ok(Landmarks {
            points,
            depth,
            presence,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat_face() -> Landmarks {
        let mut points = vec![Point::default(); POINTS];
        let mut set = |i: usize, x: f32, y: f32| points[i] = Point::new(x, y);
        // An upright frontal face: eyes level, cheeks level, chin below forehead.
        set(CHEEK_RIGHT, 0.0, 50.0);
        set(CHEEK_LEFT, 100.0, 50.0);
        set(FOREHEAD, 50.0, 0.0);
        set(CHIN, 50.0, 100.0);
        for (k, (dx, dy)) in [
            (0.0, 0.0),
            (5.0, -3.0),
            (10.0, -3.0),
            (15.0, 0.0),
            (10.0, 3.0),
            (5.0, 3.0),
        ]
        .into_iter()
        .enumerate()
        {
            set(RIGHT_EYE[k], 20.0 + dx, 40.0 + dy);
            set(LEFT_EYE[k], 80.0 - dx, 40.0 + dy);
        }
        set(MOUTH_RIGHT, 35.0, 75.0);
        set(MOUTH_LEFT, 65.0, 75.0);
        set(LIP_UPPER, 50.0, 74.0);
        set(LIP_LOWER, 50.0, 76.0);
        Landmarks {
            points,
            depth: vec![0.0; POINTS],
            presence: 1.0,
        }
    }

    #[test]
    fn a_frontal_face_has_zero_pose_and_open_eyes() {
        let face = flat_face();
        let pose = face.pose();
        assert!(
            pose.yaw.abs() < 1e-3 && pose.pitch.abs() < 1e-3 && pose.roll.abs() < 1e-3,
            "{pose:?}"
        );
        assert!((face.eye_openness() - 0.4).abs() < 1e-5);
        assert!((face.mouth_openness() - 2.0 / 30.0).abs() < 1e-5);
    }

    #[test]
    fn a_turned_face_has_yaw_of_the_right_sign() {
        let mut face = flat_face();
        // The face's left cheek moves away from the camera: the face turns to its right,
        // towards the image left.
        face.depth[CHEEK_LEFT] = 100.0 * 0.5;
        let yaw = face.pose().yaw;
        assert!(yaw < -20.0, "{yaw}");
        face.depth[CHEEK_LEFT] = -50.0;
        assert!(face.pose().yaw > 20.0);
    }

    #[test]
    fn closed_eyes_have_a_small_aspect_ratio() {
        let mut face = flat_face();
        for k in [1, 2, 4, 5] {
            face.points[RIGHT_EYE[k]].y = 40.0;
            face.points[LEFT_EYE[k]].y = 40.0;
        }
        assert!(face.eye_openness() < 0.01);
    }
}
