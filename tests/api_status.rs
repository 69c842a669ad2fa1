//! The local API's answers over TCP with API keys: 401, 403, 423, 413 and 400, plus the
//! lockout surviving a restart. Runs the real daemon with the real fingerprint engine.

mod common;

use common::{fvc, upload, AgentProcess, Options, PREFIX};
use serde_json::json;

fn enrolled_agent() -> AgentProcess {
    let options = Options {
        reader_files: vec![fvc("101_1"), fvc("101_2"), fvc("101_3")],
        extra_yaml: "biometric_engines:\n  fingerprint: {enroll_captures: 3}\nsecurity: {max_failed_attempts: 3, lockout_duration: 900}\n".into(),
        ..Options::default()
    };
    let agent = AgentProcess::start(options);
    let enrolled = agent.enroll_from_reader("alice");
    assert_eq!(enrolled.status, 201, "enroll alice: {}", enrolled.text);
    agent
}

fn verify_body(subject: &str, sample: &str) -> Vec<u8> {
    json!({ "subject_id": subject, "modality": "fingerprint", "sample": upload(&fvc(sample)) })
        .to_string()
        .into_bytes()
}

#[test]
fn status_codes_of_the_local_api() {
    let agent = enrolled_agent();
    let verify = format!("{PREFIX}/verify");
    let analyst = agent.create_api_key("analyst", "security_analyst");
    let viewer = agent.create_api_key("dashboard", "viewer");
    let operator = agent.create_api_key("lobby-kiosk", "operator");

    // 401: no key, an unknown key.
    let reply = agent.api_request("GET", &format!("{PREFIX}/subjects"), None, None);
    assert_eq!(reply.status, 401, "{}", reply.text);
    let reply = agent.api_request(
        "GET",
        &format!("{PREFIX}/subjects"),
        None,
        Some("apg_0000000000000000000000000000"),
    );
    assert_eq!(reply.status, 401, "{}", reply.text);

    // 403: a viewer may read subjects but not verify; an operator may not create subjects.
    let reply = agent.api_request("GET", &format!("{PREFIX}/subjects"), None, Some(&viewer));
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = agent.api_request(
        "POST",
        &verify,
        Some(&verify_body("alice", "101_6")),
        Some(&viewer),
    );
    assert_eq!(reply.status, 403, "{}", reply.text);
    let reply = agent.api_request(
        "POST",
        &format!("{PREFIX}/subjects"),
        Some(br#"{"external_id":"bob"}"#),
        Some(&operator),
    );
    assert_eq!(reply.status, 403, "{}", reply.text);

    // 200: a genuine verification by the analyst is accepted.
    let reply = agent.api_request(
        "POST",
        &verify,
        Some(&verify_body("alice", "101_6")),
        Some(&analyst),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["decision"], "accepted", "{}", reply.text);

    // 400 naming the field: a missing field, a wrong type, bad base64, an unknown modality.
    let reply = agent.api_request(
        "POST",
        &verify,
        Some(br#"{"modality":"fingerprint"}"#),
        Some(&operator),
    );
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.json["error"]["field"], "subject_id", "{}", reply.text);
    let reply = agent.api_request(
        "POST",
        &verify,
        Some(br#"{"subject_id":"alice","modality":"retina"}"#),
        Some(&operator),
    );
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.json["error"]["field"], "modality", "{}", reply.text);
    let reply = agent.api_request(
        "POST",
        &verify,
        Some(br#"{"subject_id":"alice","modality":"fingerprint","sample":{"data":"@@not base64@@"}}"#),
        Some(&operator),
    );
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(
        reply.json["error"]["field"]
            .as_str()
            .unwrap_or_default()
            .starts_with("sample"),
        "{}",
        reply.text
    );
    let reply = agent.api_request("POST", &verify, Some(b"{not json"), Some(&operator));
    assert_eq!(reply.status, 400, "{}", reply.text);

    // 413 above 10 MB.
    let mut huge = br#"{"subject_id":"alice","modality":"fingerprint","sample":{"data":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'A', 10 * 1024 * 1024 + 16));
    huge.extend_from_slice(br#""}}"#);
    let reply = agent.api_request("POST", &verify, Some(&huge), Some(&operator));
    assert_eq!(reply.status, 413, "{}", reply.text);

    // 423: three impostor attempts lock alice; then even her own finger is refused.
    // Different impostors each time: the same image twice would be refused as a replay.
    for (attempt, impostor) in ["105_1", "106_1", "107_1"].into_iter().enumerate() {
        let reply = agent.api_request(
            "POST",
            &verify,
            Some(&verify_body("alice", impostor)),
            Some(&operator),
        );
        assert_eq!(reply.status, 200, "attempt {attempt}: {}", reply.text);
        assert_eq!(
            reply.json["decision"], "rejected",
            "attempt {attempt}: {}",
            reply.text
        );
    }
    let reply = agent.api_request(
        "POST",
        &verify,
        Some(&verify_body("alice", "101_6")),
        Some(&operator),
    );
    assert_eq!(reply.status, 423, "{}", reply.text);
}

#[test]
fn a_lockout_survives_a_restart() {
    let mut agent = enrolled_agent();
    for impostor in ["104_1", "105_1", "106_1"] {
        let reply = agent.verify_file("alice", &fvc(impostor));
        assert_eq!(reply.json["decision"], "rejected", "{}", reply.text);
    }
    assert!(agent.stop().success());
    agent.spawn();
    agent.wait_ready(std::time::Duration::from_secs(60));
    let reply = agent.verify_file("alice", &fvc("101_6"));
    assert_eq!(
        reply.status, 423,
        "the lock must survive the restart: {}",
        reply.text
    );
}

#[test]
fn api_keys_are_stored_only_as_hashes_and_never_logged() {
    let mut agent = enrolled_agent();
    let secret = agent.create_api_key("door-7", "operator");
    let reply = agent.api_request(
        "POST",
        &format!("{PREFIX}/verify"),
        Some(&verify_body("alice", "101_6")),
        Some(&secret),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(agent.stop().success());
    for file in [
        agent.db.clone(),
        agent.db.with_extension("db-wal"),
        agent.log.clone(),
    ] {
        if let Ok(bytes) = std::fs::read(&file) {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the API key appears in plaintext in {}",
                file.display()
            );
        }
    }
}
