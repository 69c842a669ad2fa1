//! Faces through the whole agent: a simulated camera replays real photos of one person
//! (deepface img1, img2, img4), the agent enrolls them with the face engine, then verifies,
//! identifies, and refuses a printed-photo attack with the passive PAD model.

mod common;

use std::path::PathBuf;

use common::{upload, AgentProcess, Options, PREFIX};
use serde_json::json;

fn face(name: &str) -> PathBuf {
    common::shared_dir().join("data/face").join(name)
}

/// An agent with the face engine on and a simulated camera replaying three photos of one
/// person. The camera's directory is returned too: it must outlive the agent.
fn face_agent() -> (AgentProcess, tempfile::TempDir) {
    let camera = tempfile::Builder::new()
        .prefix("apg-face-camera")
        .tempdir()
        .expect("tempdir");
    for (i, name) in ["img1.jpg", "img2.jpg", "img4.jpg"].iter().enumerate() {
        let from = face(&format!("deepface/{name}"));
        // The prefix keeps the replay order (the camera replays files sorted by name).
        std::fs::copy(&from, camera.path().join(format!("{i:03}-{name}")))
            .unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
    let mut agent = AgentProcess::prepare(Options {
        extra_yaml: "biometric_engines: {face: {enabled: true, enroll_captures: 3}}\n".into(),
        extra_devices: vec![format!(
            "{{id: camera-1, kind: camera, directory: {}}}",
            camera.path().display()
        )],
        ..Options::default()
    });
    agent.spawn();
    agent.wait_ready(std::time::Duration::from_secs(120));
    (agent, camera)
}

fn verify(agent: &AgentProcess, subject: &str, photo: &str) -> common::Reply {
    agent.socket_request(
        "POST",
        &format!("{PREFIX}/verify"),
        Some(&json!({ "subject_id": subject, "modality": "face", "sample": upload(&face(photo)) })),
    )
}

#[test]
fn enroll_from_the_camera_then_verify_identify_and_refuse_a_photo_attack() {
    let (agent, _camera) = face_agent();
    agent.create_subject("bob");
    // No modality: the agent takes it from the device, a camera.
    let enrolled = agent.enroll_from_device("bob", "camera-1");
    assert_eq!(
        enrolled.status, 201,
        "enroll from the camera: {}",
        enrolled.text
    );
    assert_eq!(enrolled.json["modality"], "face", "{}", enrolled.text);

    let genuine = verify(&agent, "bob", "deepface/img5.jpg");
    assert_eq!(genuine.status, 200, "{}", genuine.text);
    assert_eq!(genuine.json["decision"], "accepted", "{}", genuine.text);

    let impostor = verify(&agent, "bob", "deepface/img20.jpg");
    assert_eq!(impostor.status, 200, "{}", impostor.text);
    assert_eq!(impostor.json["decision"], "rejected", "{}", impostor.text);

    let identified = agent.socket_request(
        "POST",
        &format!("{PREFIX}/identify"),
        Some(&json!({ "modality": "face", "sample": upload(&face("deepface/img6.jpg")) })),
    );
    assert_eq!(identified.status, 200, "{}", identified.text);
    assert_eq!(
        identified.json["decision"], "matched",
        "{}",
        identified.text
    );
    assert_eq!(identified.json["subject"], "bob", "{}", identified.text);

    // A printed photo (Silent-Face's attack sample) fails the passive PAD check, which runs
    // because anti_spoofing is on by default.
    let attack = verify(&agent, "bob", "pad-samples/image_F2.jpg");
    assert_ne!(attack.json["decision"], "accepted", "{}", attack.text);
    assert!(
        attack.text.contains("pad_model") || attack.text.contains("presentation"),
        "the refusal names the PAD check: {}",
        attack.text
    );
}
