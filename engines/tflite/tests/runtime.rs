//! The runtime against the real LiteRT library and the real face models in ../shared.

use std::path::PathBuf;

use apg_tflite::{Error, Model};

fn shared() -> PathBuf {
    let dir = std::env::var_os("APG_SHARED_DIR")
        .map_or_else(|| PathBuf::from("/work/shared"), PathBuf::from);
    assert!(
        dir.is_dir(),
        "shared data directory {} is missing; set APG_SHARED_DIR",
        dir.display()
    );
    dir
}

#[test]
fn the_detector_loads_and_reports_its_tensors() {
    let model =
        Model::load(shared().join("models/face/face_detection_short_range.tflite")).unwrap();
    model.expect_input(0, &[1, 128, 128, 3]).unwrap();
    assert_eq!(model.outputs()[0].shape, vec![1, 896, 16]);
    assert_eq!(model.outputs()[1].shape, vec![1, 896, 1]);
}

#[test]
fn inference_is_deterministic_and_shared_between_threads() {
    let model = std::sync::Arc::new(
        Model::load(shared().join("models/face/face_detection_short_range.tflite")).unwrap(),
    );
    let input: Vec<f32> = (0..128 * 128 * 3)
        .map(|i| ((i % 255) as f32 / 127.5) - 1.0)
        .collect();
    let first = model.run(&[&input]).unwrap();
    let other = {
        let model = model.clone();
        let input = input.clone();
        std::thread::spawn(move || model.run(&[&input]).unwrap())
            .join()
            .unwrap()
    };
    assert_eq!(first, other);
    assert_eq!(first[1].len(), 896);
    assert!(
        first[1].iter().any(|v| *v != first[1][0]),
        "scores should depend on the anchor"
    );
}

#[test]
fn an_input_of_the_wrong_size_is_refused_with_the_shape() {
    let model =
        Model::load(shared().join("models/face/face_detection_short_range.tflite")).unwrap();
    let err = model.run(&[&[0.0; 10]]).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    assert!(err.to_string().contains("[1, 128, 128, 3]"), "{err}");
    let err = model
        .expect_input(0, &[1, 192, 192, 3])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("face_detection_short_range") && err.contains("right model"),
        "{err}"
    );
}

#[test]
fn a_missing_model_names_the_file_and_the_fetch_script() {
    let err = Model::load("/nonexistent/face.tflite").unwrap_err();
    assert!(matches!(err, Error::ModelMissing { .. }));
    let text = err.to_string();
    assert!(
        text.contains("/nonexistent/face.tflite") && text.contains("models/fetch"),
        "{text}"
    );
}

#[test]
fn a_corrupt_model_is_reported_as_corrupt() {
    let dir = std::env::temp_dir().join(format!("apg-tflite-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_a_model = dir.join("garbage.tflite");
    std::fs::write(&not_a_model, b"this is not a flatbuffer at all").unwrap();
    let err = Model::load(&not_a_model).unwrap_err();
    assert!(matches!(err, Error::ModelCorrupt { .. }), "{err}");
    // A truncated real model keeps the identifier but cannot be parsed by the runtime.
    let real =
        std::fs::read(shared().join("models/face/face_detection_short_range.tflite")).unwrap();
    let truncated = dir.join("truncated.tflite");
    std::fs::write(&truncated, &real[..real.len() / 3]).unwrap();
    let err = Model::load(&truncated).unwrap_err();
    assert!(matches!(err, Error::ModelCorrupt { .. }), "{err}");
    assert!(err.to_string().contains("truncated.tflite"));
    std::fs::remove_dir_all(dir).unwrap();
}
