//! The engine on the real photos in ../shared/data/face (deepface pairs, Silent-Face PAD
//! samples) with the real models.

use std::path::PathBuf;
use std::sync::OnceLock;

use apg_face::{Challenge, FaceEngine, Template, MATCH_THRESHOLD};
use image::RgbImage;

fn data() -> PathBuf {
    let shared = std::env::var_os("APG_SHARED_DIR")
        .map_or_else(|| PathBuf::from("/work/shared"), PathBuf::from);
    let dir = shared.join("data/face");
    assert!(
        dir.is_dir(),
        "face data {} is missing; set APG_SHARED_DIR",
        dir.display()
    );
    dir
}

fn engine() -> &'static FaceEngine {
    static ENGINE: OnceLock<FaceEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        FaceEngine::load_default().expect("face models (run models/fetch or set APG_FACE_MODELS)")
    })
}

fn load(rel: &str) -> RgbImage {
    image::open(data().join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .into_rgb8()
}

#[test]
fn every_deepface_pair_is_judged_correctly_at_the_engine_threshold() {
    let csv = std::fs::read_to_string(data().join("deepface/master.csv")).unwrap();
    let mut cache = std::collections::HashMap::new();
    let mut embed = |name: &str| {
        cache
            .entry(name.to_owned())
            .or_insert_with(|| {
                engine()
                    .analyze(&load(&format!("deepface/{name}")))
                    .unwrap()
                    .embedding
            })
            .clone()
    };
    let mut wrong = Vec::new();
    let mut pairs = 0;
    for line in csv.lines().skip(1).filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let score = embed(f[0]).cosine(&embed(f[1]));
        let same = f[2] == "Yes";
        if (score >= MATCH_THRESHOLD) != same {
            wrong.push(format!("{} {} {} {score:.3}", f[0], f[1], f[2]));
        }
        pairs += 1;
    }
    assert_eq!(pairs, 300);
    assert!(wrong.is_empty(), "misjudged pairs: {wrong:?}");
}

#[test]
fn the_spoofs_are_rejected_and_the_live_face_accepted() {
    for (file, live) in [
        ("image_F1.jpg", false),
        ("image_F2.jpg", false),
        ("image_T1.jpg", true),
    ] {
        let img = load(&format!("pad-samples/{file}"));
        let analysis = engine().analyze(&img).unwrap();
        let verdict = engine().passive_pad(&img, &analysis.detection).unwrap();
        assert_eq!(verdict.live, live, "{file}: {}", verdict.detail);
    }
}

#[test]
fn a_group_photo_fails_the_single_face_measure() {
    let img = load("deepface/couple.jpg");
    let analysis = engine().analyze(&img).unwrap();
    assert!(
        analysis.faces_in_view >= 2,
        "{} faces",
        analysis.faces_in_view
    );
    let single = analysis.quality.get("single_face").unwrap();
    assert_eq!(single.score, 0.0);
    assert!(
        single.reason.contains("only one person"),
        "{}",
        single.reason
    );
}

#[test]
fn a_portrait_has_good_quality_with_a_reason_for_every_measure() {
    let analysis = engine().analyze(&load("deepface/img1.jpg")).unwrap();
    assert_eq!(analysis.quality.measures.len(), 9);
    assert!(analysis.quality.unified >= 85.0, "{:?}", analysis.quality);
    assert!(analysis
        .quality
        .measures
        .iter()
        .all(|m| (0.0..=100.0).contains(&m.score) && !m.reason.is_empty()));
    let pose = analysis.landmarks.pose();
    assert!(pose.yaw.abs() < 25.0 && pose.roll.abs() < 25.0, "{pose:?}");
}

#[test]
fn a_blurred_face_loses_sharpness() {
    let img = load("deepface/img1.jpg");
    let sharp = engine().analyze(&img).unwrap();
    let blurred = engine()
        .analyze(&image::imageops::blur(&img, 12.0))
        .unwrap();
    let s = |a: &apg_face::FaceAnalysis| a.quality.get("sharpness").unwrap().raw;
    assert!(
        s(&blurred) < s(&sharp) / 2.0,
        "sharp {} blurred {}",
        s(&sharp),
        s(&blurred)
    );
}

#[test]
fn an_empty_frame_has_no_face() {
    let err = engine()
        .analyze(&RgbImage::from_pixel(640, 480, image::Rgb([128, 128, 128])))
        .unwrap_err();
    assert!(matches!(err, apg_face::FaceError::NoFace { .. }), "{err}");
}

#[test]
fn a_template_from_a_real_face_round_trips_and_matches_itself() {
    let analysis = engine().analyze(&load("deepface/img2.jpg")).unwrap();
    let template = Template {
        embedding: analysis.embedding.clone(),
        quality: analysis.quality.unified as u8,
    };
    let back = Template::from_bytes(&template.to_bytes()).unwrap();
    assert!((back.embedding.cosine(&analysis.embedding) - 1.0).abs() < 1e-5);
}

#[test]
fn a_still_photo_neither_blinks_nor_turns() {
    let frame = load("deepface/img1.jpg");
    let frames = vec![frame.clone(), frame.clone(), frame.clone(), frame];
    assert!(!engine().challenge(&frames, Challenge::Blink).unwrap().live);
    assert!(
        !engine()
            .challenge(&frames, Challenge::TurnHead)
            .unwrap()
            .live
    );
}

#[test]
fn the_full_range_detector_finds_a_small_face_in_a_large_frame() {
    let face = load("deepface/img1.jpg");
    let small = image::imageops::resize(
        &face,
        face.width() / 12,
        face.height() / 12,
        image::imageops::FilterType::Triangle,
    );
    let mut frame = RgbImage::from_pixel(1280, 960, image::Rgb([100, 100, 100]));
    image::imageops::overlay(&mut frame, &small, 700, 500);
    let faces = engine().detect(&frame, apg_face::Range::Full).unwrap();
    assert_eq!(faces.len(), 1, "{faces:?}");
    let c = faces[0].centre();
    assert!(
        c.x > 700.0 && c.x < 700.0 + small.width() as f32 && c.y > 500.0,
        "{c:?}"
    );
}
