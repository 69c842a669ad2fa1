//! The daemon's systemd protocol, seen from a `NOTIFY_SOCKET` listener: READY after the
//! STATUS lines, WATCHDOG at half the interval (and none while a loop is stuck), RELOADING on
//! SIGHUP, STOPPING and a clean exit on SIGTERM.

mod common;

use std::time::{Duration, Instant};

use common::{AgentProcess, Options, PREFIX};
use nix::sys::signal::Signal;
use serde_json::json;

#[test]
fn ready_follows_status_lines_and_sigterm_stops_cleanly_within_five_seconds() {
    let started = Instant::now();
    let mut agent = AgentProcess::start(Options::default());
    eprintln!("start to READY: {:?}", started.elapsed());
    let ready = agent.messages.iter().position(|m| m == "READY=1").unwrap();
    let statuses: Vec<&String> = agent.messages[..ready]
        .iter()
        .filter(|m| m.starts_with("STATUS="))
        .collect();
    assert!(
        statuses.len() >= 3,
        "expected STATUS lines before READY, got {:?}",
        agent.messages
    );
    for step in ["store", "key", "device", "engine"] {
        assert!(
            statuses.iter().any(|s| s.to_lowercase().contains(step)),
            "no STATUS line mentions {step} before READY: {statuses:?}"
        );
    }
    // READY means usable: the store, keys, devices and engines answer.
    let health = agent.socket_request("GET", &format!("{PREFIX}/health"), None);
    assert_eq!(health.status, 200, "{}", health.text);

    let asked = Instant::now();
    agent.signal(Signal::SIGTERM);
    agent.wait_for("STOPPING=1", ready, Duration::from_secs(5));
    let status = agent
        .wait_exit(Duration::from_secs(5))
        .expect("the agent must exit within 5 s of SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert!(
        !agent.socket.exists(),
        "the operator socket is removed on a clean stop"
    );
}

#[test]
fn text_logs_carry_no_colour_codes() {
    // The log file and journald (stderr is not a terminal here) store escape bytes literally.
    let agent = AgentProcess::start(Options {
        log_format: Some("text"),
        ..Options::default()
    });
    let text = agent.log_text();
    assert!(
        text.contains("INFO"),
        "no INFO line in the text log: {text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in the log file: {text:?}"
    );
}

#[test]
fn watchdog_pings_at_half_the_interval() {
    let mut agent = AgentProcess::start(Options {
        watchdog_usec: Some(400_000),
        ..Options::default()
    });
    let from = agent.messages.len();
    agent.pump(Duration::from_millis(2_100));
    let pings = agent.messages[from..]
        .iter()
        .filter(|m| *m == "WATCHDOG=1")
        .count();
    // Every 200 ms over 2.1 s: about 10, allowing for a slow machine.
    assert!(
        (7..=13).contains(&pings),
        "expected about 10 WATCHDOG=1 in 2.1 s, got {pings}"
    );
}

#[test]
fn a_stuck_capture_loop_stops_the_watchdog_pings() {
    let options = Options {
        watchdog_usec: Some(400_000),
        extra_devices: vec![format!(
            "{{id: wedged, kind: fingerprint_reader, directory: {}, fault: hang}}",
            common::fvc("101_1").parent().unwrap().display()
        )],
        ..Options::default()
    };
    let mut agent = AgentProcess::start(options);
    agent.pump(Duration::from_millis(600));
    assert!(
        agent.messages.iter().any(|m| m == "WATCHDOG=1"),
        "pings while healthy"
    );

    // A capture on the wedged reader never returns; its loop overruns its job limit (twice the
    // 2 s capture timeout plus 2 s of grace) and is then stuck.
    let socket = agent.socket.clone();
    std::thread::spawn(move || {
        let stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let body = json!({ "modality": "fingerprint" }).to_string();
        let _ = common::http(
            stream,
            "POST",
            &format!("{PREFIX}/devices/wedged/test"),
            Some(body.as_bytes()),
            &[],
        );
    });
    agent.pump(Duration::from_secs(7));
    let from = agent.messages.len();
    agent.pump(Duration::from_secs(2));
    let late = agent.messages[from..]
        .iter()
        .filter(|m| *m == "WATCHDOG=1")
        .count();
    assert_eq!(
        late,
        0,
        "no WATCHDOG=1 may come while a loop is stuck; got {:?}",
        &agent.messages[from..]
    );
    assert!(
        agent.log_text().contains("stuck"),
        "the log names the stuck loop"
    );
}

#[test]
fn sighup_reloads_and_an_invalid_config_keeps_the_old_one() {
    let mut agent = AgentProcess::start(Options::default());
    let original = std::fs::read_to_string(&agent.config).unwrap();

    // A valid change: a new fingerprint threshold and a debug log level.
    std::fs::write(
        &agent.config,
        format!("{original}biometric_engines:\n  fingerprint: {{quality_threshold: 0.55}}\n"),
    )
    .unwrap();
    let from = agent.messages.len();
    agent.signal(Signal::SIGHUP);
    let reloading = agent.wait_for("RELOADING=1", from, Duration::from_secs(5));
    agent.wait_for("READY=1", reloading, Duration::from_secs(5));
    let health = agent.socket_request("GET", &format!("{PREFIX}/health"), None);
    assert_eq!(health.status, 200);
    assert!(
        agent.log_text().contains("0.55") || agent.log_text().to_lowercase().contains("reloaded"),
        "the reload is logged"
    );

    // An invalid file: rejected with the key path in the log, the agent keeps running.
    std::fs::write(
        &agent.config,
        format!("{original}security: {{max_failed_attempts: many}}\n"),
    )
    .unwrap();
    let from = agent.messages.len();
    agent.signal(Signal::SIGHUP);
    let reloading = agent.wait_for("RELOADING=1", from, Duration::from_secs(5));
    agent.wait_for("READY=1", reloading, Duration::from_secs(5));
    let log = agent.log_text();
    assert!(
        log.contains("security.max_failed_attempts"),
        "the rejected reload names the key: {log}"
    );
    let health = agent.socket_request("GET", &format!("{PREFIX}/health"), None);
    assert_eq!(health.status, 200, "still serving after a rejected reload");
    assert!(agent.stop().success());
}

#[test]
fn check_config_prints_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.yaml");
    std::fs::write(
        &file,
        "security: {max_failed_attempts: -1, lockout_duration: \"long\", encryption_algorithm: DES}\n\
         biometric_engines: {fingerprint: {quality_threshold: 1.5}, face: {qualty_threshold: 0.9}}\n\
         logging: {format: xml}\n",
    )
    .unwrap();
    let output = std::process::Command::new(common::agent_binary())
        .arg("check-config")
        .arg(&file)
        .env("APG_BIOMETRIC_ENV", "testing")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    for key in [
        "security.max_failed_attempts",
        "security.lockout_duration",
        "security.encryption_algorithm",
        "biometric_engines.fingerprint.quality_threshold",
        "biometric_engines.face.qualty_threshold",
        "logging.format",
    ] {
        assert!(
            text.contains(key),
            "check-config does not name {key}:\n{text}"
        );
    }
}
