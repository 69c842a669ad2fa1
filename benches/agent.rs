//! Agent bench: start-to-READY time, idle RSS, verify latency through the TCP API (p50/p95
//! over 1,000 requests), and online key rotation of 10,000 templates.
//!
//!     cargo bench --bench agent            (APG_SHARED_DIR: where the sample data lives)
//!
//! It runs the real daemon binary (built with the bench profile) through the same harness as
//! the integration tests.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apg_biometric::store::{subjects, templates, Store};
use apg_biometric::vault::Vault;
use common::{fvc, upload, AgentProcess, Options, PREFIX};
use serde_json::json;

const VERIFY_REQUESTS: usize = 1_000;
const ROTATION_TEMPLATES: usize = 10_000;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    // Identical probe images repeat across 1,000 requests, which the replay check would (rightly)
    // refuse; it is switched off here and measured by the engine's own tests instead.
    let options = Options {
        reader_files: vec![fvc("101_1"), fvc("101_2"), fvc("101_3")],
        extra_yaml:
            "biometric_engines:\n  fingerprint: {enroll_captures: 3, anti_spoofing: false}\n\
                     security: {max_failed_attempts: 100}\n"
                .into(),
        ..Options::default()
    };
    let mut agent = AgentProcess::prepare(options);

    let started = Instant::now();
    agent.spawn();
    agent.wait_ready(Duration::from_secs(60));
    let ready = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = rss_kib(agent.pid());
    println!(
        "start to READY (empty store):       {:>8.1} ms",
        ready.as_secs_f64() * 1e3
    );
    println!(
        "idle RSS (empty store):             {:>8.1} MiB",
        idle_rss as f64 / 1024.0
    );

    let reply = agent.enroll_from_reader("alice");
    assert_eq!(reply.status, 201, "enroll: {}", reply.text);
    let key = agent.create_api_key("bench", "operator");
    let bodies: Vec<Vec<u8>> = ["101_6", "101_7", "101_8"]
        .iter()
        .map(|n| {
            json!({ "subject_id": "alice", "modality": "fingerprint", "sample": upload(&fvc(n)) })
                .to_string()
                .into_bytes()
        })
        .collect();
    let mut latencies = Vec::with_capacity(VERIFY_REQUESTS);
    let mut accepted = 0;
    for i in 0..VERIFY_REQUESTS {
        let t = Instant::now();
        let reply = agent.api_request(
            "POST",
            &format!("{PREFIX}/verify"),
            Some(&bodies[i % bodies.len()]),
            Some(&key),
        );
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(reply.status, 200, "{}", reply.text);
        accepted += usize::from(reply.json["decision"] == "accepted");
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "verify via TCP API ({VERIFY_REQUESTS} requests): p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms; {accepted} accepted (genuine probes)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        latencies[latencies.len() - 1]
    );
    println!(
        "RSS after the verify run:           {:>8.1} MiB",
        rss_kib(agent.pid()) as f64 / 1024.0
    );
    assert!(agent.stop().success());

    seed_templates(&agent, ROTATION_TEMPLATES);
    let started = Instant::now();
    agent.spawn();
    agent.wait_ready(Duration::from_secs(300));
    println!(
        "start to READY ({ROTATION_TEMPLATES} templates):     {:>8.1} ms, idle RSS {:.1} MiB",
        started.elapsed().as_secs_f64() * 1e3,
        {
            std::thread::sleep(Duration::from_secs(1));
            rss_kib(agent.pid()) as f64 / 1024.0
        }
    );

    // Rotate while a kiosk keeps verifying: the verifications must keep succeeding.
    let rotating = Arc::new(AtomicBool::new(true));
    let served = Arc::new(AtomicUsize::new(0));
    let api = agent.api.clone().unwrap();
    let background = {
        let (rotating, served, key, body) = (
            rotating.clone(),
            served.clone(),
            key.clone(),
            bodies[1].clone(),
        );
        std::thread::spawn(move || {
            while rotating.load(Ordering::Relaxed) {
                let stream = std::net::TcpStream::connect(&api).unwrap();
                let headers = [("X-API-Key", key.as_str())];
                let reply = common::http(
                    stream,
                    "POST",
                    &format!("{PREFIX}/verify"),
                    Some(&body),
                    &headers,
                );
                assert_eq!(
                    reply.status, 200,
                    "verification during rotation: {}",
                    reply.text
                );
                served.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let t = Instant::now();
    let reply = agent.socket_request("POST", &format!("{PREFIX}/keys/rotate"), None);
    let wall = t.elapsed();
    rotating.store(false, Ordering::Relaxed);
    background.join().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text);
    println!(
        "key rotation of {} templates:   {:>8.1} ms (agent's own timing {:.1} ms, finished: {}); {} verifications served meanwhile",
        reply.json["resealed"],
        wall.as_secs_f64() * 1e3,
        reply.json["duration_ms"].as_f64().unwrap_or(f64::NAN),
        reply.json["finished"],
        served.load(Ordering::Relaxed)
    );
    assert!(agent.stop().success());
}

/// Writes `count` subjects with real FVC templates (sealed under the agent's data key) into the
/// stopped agent's store.
fn seed_templates(agent: &AgentProcess, count: usize) {
    let extractor = apg_fingerprint::Extractor::new(apg_fingerprint::ExtractorConfig::default());
    let mut sources = Vec::new();
    for finger in 102..=110 {
        for impression in 1..=8 {
            let sample = apg_sim::decode_file(
                apg_device::DeviceKind::FingerprintReader,
                &fvc(&format!("{finger}_{impression}")),
                500,
                0.0,
            )
            .unwrap();
            let apg_device::Sample::Fingerprint(image) = sample else {
                unreachable!()
            };
            let gray = apg_fingerprint::GrayImage {
                width: image.width,
                height: image.height,
                dpi: image.dpi,
                pixels: image.pixels,
            };
            if let Ok(extraction) = extractor.extract(&gray) {
                sources.push(extraction.template.to_bytes());
            }
        }
    }
    let key_file = agent.dir.path().join("master.key");
    let master =
        apg_biometric::crypto::load_master_key(&key_file, "master.key", None, false).unwrap();
    let store = Store::open(&agent.db).unwrap();
    let vault = Vault::open(&store, &master).unwrap();
    let now = apg_biometric::store::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(1_000) {
        store
            .write(|tx| {
                for &i in chunk {
                    let subject = subjects::Subject {
                        id: apg_biometric::store::new_id(),
                        external_id: format!("seed-{i:05}"),
                        display_name: None,
                        origin_agent: "bench".into(),
                        created_at: now.clone(),
                    };
                    subjects::insert(tx, &subject)?;
                    let id = apg_biometric::store::new_id();
                    let plain = &sources[i % sources.len()];
                    let sealed = vault.seal(id, subject.id, "fingerprint", plain, true);
                    templates::insert(
                        tx,
                        &templates::TemplateRow {
                            id,
                            subject_id: subject.id,
                            modality: "fingerprint".into(),
                            format: "apg-fp/1".into(),
                            quality: 0.9,
                            key_version: sealed.key_version,
                            nonce: sealed.nonce,
                            ciphertext: sealed.ciphertext,
                            origin_agent: "bench".into(),
                            created_at: now.clone(),
                        },
                    )?;
                }
                Ok::<_, apg_biometric::store::StoreError>(())
            })
            .unwrap();
    }
}
