//! What lands on disk: no template byte in the database or WAL, ciphertexts bound to their
//! rows, and a consistent store after SIGKILL in the middle of enrollment.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{fvc, AgentProcess, Options, PREFIX};
use serde_json::json;

/// The templates the agent's engine makes of these images (extraction is deterministic).
fn templates_of(images: &[&str]) -> Vec<Vec<u8>> {
    let extractor = apg_fingerprint::Extractor::new(apg_fingerprint::ExtractorConfig::default());
    images
        .iter()
        .map(|name| {
            let sample = apg_sim::decode_file(
                apg_device::DeviceKind::FingerprintReader,
                &fvc(name),
                500,
                0.0,
            )
            .expect("decode");
            let apg_device::Sample::Fingerprint(image) = sample else {
                panic!("not a fingerprint")
            };
            let gray = apg_fingerprint::GrayImage {
                width: image.width,
                height: image.height,
                dpi: image.dpi,
                pixels: image.pixels,
            };
            extractor
                .extract(&gray)
                .expect("extract")
                .template
                .to_bytes()
        })
        .collect()
}

/// True when any 24-byte window of `template` past its header occurs in `file`.
fn leaks(file: &Path, template: &[u8]) -> bool {
    let Ok(haystack) = std::fs::read(file) else {
        return false;
    };
    const WINDOW: usize = 24;
    template.len() > 8 + WINDOW
        && template[8..]
            .windows(WINDOW)
            .step_by(4)
            .any(|needle| haystack.windows(WINDOW).any(|w| w == needle))
}

fn enroll_three(profile_yaml: &str, env_profile: Option<&str>) -> (AgentProcess, Vec<Vec<u8>>) {
    let images = ["101_1", "101_2", "101_3"];
    let options = Options {
        reader_files: images.iter().map(|n| fvc(n)).collect(),
        extra_yaml: format!(
            "biometric_engines:\n  fingerprint: {{enroll_captures: 3{profile_yaml}}}\n"
        ),
        profile: env_profile.map(str::to_owned),
        ..Options::default()
    };
    let agent = AgentProcess::start(options);
    let reply = agent.enroll_from_reader("alice");
    assert_eq!(reply.status, 201, "{}", reply.text);
    (agent, templates_of(&images))
}

#[test]
fn template_bytes_are_absent_from_the_database_and_the_wal() {
    let (mut agent, templates) = enroll_three("", None);
    // Look while the agent runs (WAL not yet checkpointed) and again after the stop.
    let files = [agent.db.clone(), agent.db.with_extension("db-wal")];
    for file in &files {
        for template in &templates {
            assert!(
                !leaks(file, template),
                "template bytes found in {}",
                file.display()
            );
        }
    }
    assert!(agent.stop().success());
    for template in &templates {
        assert!(
            !leaks(&agent.db, template),
            "template bytes found in {} after stop",
            agent.db.display()
        );
        assert!(
            !leaks(&agent.log, template),
            "template bytes found in the log"
        );
    }

    // The same check finds plaintext templates where encryption is switched off (development
    // only), so the absence above is meaningful.
    let (mut plain, templates) = enroll_three(", template_encryption: false", Some("development"));
    assert!(plain.stop().success());
    assert!(
        templates.iter().any(|t| leaks(&plain.db, t)),
        "the leak check must see unencrypted templates"
    );
}

#[test]
fn swapped_ciphertexts_fail_on_both_rows_and_the_agent_keeps_running() {
    let options = Options {
        reader_files: vec![fvc("101_1"), fvc("102_1")],
        extra_yaml: "biometric_engines:\n  fingerprint: {enroll_captures: 1}\n".into(),
        ..Options::default()
    };
    let mut agent = AgentProcess::start(options);
    for subject in ["alice", "bob"] {
        let reply = agent.enroll_from_reader(subject);
        assert_eq!(reply.status, 201, "{subject}: {}", reply.text);
    }
    assert_eq!(
        agent.verify_file("alice", &fvc("101_3")).json["decision"],
        "accepted"
    );
    assert!(agent.stop().success());

    let ids: Vec<String> = {
        let db = rusqlite::Connection::open(&agent.db).unwrap();
        let rows: Vec<(String, Vec<u8>, Vec<u8>)> = db
            .prepare("SELECT t.id, t.nonce, t.ciphertext FROM templates t JOIN subjects s ON s.id = t.subject_id ORDER BY s.external_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows.len(), 2);
        let swap = "UPDATE templates SET nonce = ?2, ciphertext = ?3 WHERE id = ?1";
        db.execute(swap, rusqlite::params![rows[0].0, rows[1].1, rows[1].2])
            .unwrap();
        db.execute(swap, rusqlite::params![rows[1].0, rows[0].1, rows[0].2])
            .unwrap();
        rows.into_iter().map(|r| r.0).collect()
    };

    agent.spawn();
    agent.wait_ready(Duration::from_secs(60));
    let log = agent.log_text();
    for id in &ids {
        assert!(
            log.contains(id.as_str()),
            "the log names the unreadable template {id}:\n{log}"
        );
    }
    let audit = agent.socket_request("GET", &format!("{PREFIX}/audit?limit=1000"), None);
    for id in &ids {
        assert!(
            audit.text.contains(id.as_str()),
            "an audit entry names template {id}"
        );
    }
    for (subject, finger) in [("alice", "101_3"), ("bob", "102_3")] {
        let reply = agent.verify_file(subject, &fvc(finger));
        assert_ne!(
            reply.json["decision"], "accepted",
            "{subject} must not verify against a swapped template: {}",
            reply.text
        );
    }
    let health = agent.socket_request("GET", &format!("{PREFIX}/health"), None);
    assert!(
        health.status == 200 || health.status == 503,
        "{}",
        health.text
    );
    assert!(
        health.text.contains("unreadable") || health.text.contains("2"),
        "health reports the unreadable templates: {}",
        health.text
    );
}

#[test]
fn sigkill_during_enrollment_leaves_a_consistent_store() {
    let files: Vec<_> = (101..=110)
        .flat_map(|f| (1..=3).map(move |i| fvc(&format!("{f}_{i}"))))
        .collect();
    let options = Options {
        reader_files: files,
        extra_yaml: "biometric_engines:\n  fingerprint: {enroll_captures: 3}\n".into(),
        ..Options::default()
    };
    let mut agent = AgentProcess::start(options);
    for round in 0..6u64 {
        let subject = format!("person-{round}");
        let socket = agent.socket.clone();
        let body = json!({ "external_id": subject }).to_string();
        let enroll = json!({ "modality": "fingerprint", "device_id": "reader-1" }).to_string();
        let worker = std::thread::spawn(move || {
            let s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
            let _ = common::http(
                s,
                "POST",
                &format!("{PREFIX}/subjects"),
                Some(body.as_bytes()),
                &[],
            );
            if let Ok(s) = std::os::unix::net::UnixStream::connect(&socket) {
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let _ = std::panic::catch_unwind(|| {
                    common::http(
                        s,
                        "POST",
                        &format!("{PREFIX}/subjects/{subject}/enroll"),
                        Some(enroll.as_bytes()),
                        &[],
                    )
                });
            }
        });
        // Kill at a different point of the enrollment each round.
        std::thread::sleep(Duration::from_millis(40 + round * 45));
        agent.kill();
        let _ = worker.join();

        let db = rusqlite::Connection::open(&agent.db).unwrap();
        let integrity: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(integrity, "ok", "round {round}");
        let per_subject: Vec<(String, i64)> = db
            .prepare("SELECT s.external_id, COUNT(t.id) FROM subjects s LEFT JOIN templates t ON t.subject_id = s.id GROUP BY s.id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (subject, count) in &per_subject {
            assert!(
                *count == 0 || *count == 3,
                "round {round}: {subject} has {count} templates: an enrollment is all or nothing"
            );
        }
        let enrolled = per_subject.iter().filter(|(_, c)| *c == 3).count() as i64;
        // The audit entry is written in the enrollment's transaction: one per completed enrollment.
        let audited: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM audit_log WHERE action = 'enroll'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            audited, enrolled,
            "round {round}: one audit entry per completed enrollment"
        );
        drop(db);

        agent.spawn();
        agent.wait_ready(Duration::from_secs(60));
        let audit = agent.socket_request("POST", &format!("{PREFIX}/audit/verify"), None);
        assert_eq!(audit.json["intact"], true, "round {round}: {}", audit.text);
    }
    // After all that, the agent still enrolls and verifies.
    let reply = agent.enroll_from_reader("after-the-storm");
    assert!(reply.status == 201 || reply.status == 409, "{}", reply.text);
}
