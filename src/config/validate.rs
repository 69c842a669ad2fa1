//! Value checks on a configuration that has the right shape.

use std::collections::HashSet;

use super::{Config, Problem, Profile};
use crate::modality::Modality;

/// Appends every value problem of `config` to `problems`.
pub fn check(config: &Config, problems: &mut Vec<Problem>) {
    check_identity(config, problems);
    check_engines(config, problems);
    check_security(config, problems);
    check_sync(config, problems);
    check_runtime(config, problems);
    check_devices(config, problems);
}

fn push(problems: &mut Vec<Problem>, path: &str, value: impl ToString, allowed: &str) {
    problems.push(Problem::new(path, value.to_string(), allowed));
}

/// Not empty, and only ASCII letters, digits, '-' and '_': safe in MQTT topics, URLs and logs.
fn is_plain_name(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_identity(config: &Config, problems: &mut Vec<Problem>) {
    for (path, value) in [
        ("agent.id", &config.agent.id),
        ("agent.site", &config.agent.site),
    ] {
        if !is_plain_name(value) || value.len() > 64 {
            // Both appear in MQTT topic names, where `/`, `+` and `#` have meanings.
            push(
                problems,
                path,
                format!("{value:?}"),
                "1 to 64 letters, digits, '-' or '_'",
            );
        }
    }
}

fn check_engines(config: &Config, problems: &mut Vec<Problem>) {
    for modality in Modality::ALL {
        let engine = config.engine(modality);
        let base = format!("biometric_engines.{}", modality.as_str());
        let at = |key: &str| format!("{base}.{key}");
        if !(0.0..=1.0).contains(&engine.quality_threshold) {
            push(
                problems,
                &at("quality_threshold"),
                engine.quality_threshold,
                "a number from 0 to 1",
            );
        }
        if !(engine.processing_timeout > 0.0 && engine.processing_timeout <= 300.0) {
            push(
                problems,
                &at("processing_timeout"),
                engine.processing_timeout,
                "seconds, above 0 and at most 300",
            );
        }
        if !(1..=10).contains(&engine.enroll_captures) {
            push(
                problems,
                &at("enroll_captures"),
                engine.enroll_captures,
                "1 to 10 captures",
            );
        }
        if let Some(t) = engine.match_threshold {
            if !(t.is_finite() && t > 0.0) {
                push(
                    problems,
                    &at("match_threshold"),
                    t,
                    "a positive number on the engine's score scale",
                );
            }
        }
        if !engine.template_encryption && config.profile() == Profile::Production {
            push(
                problems,
                &at("template_encryption"),
                false,
                "true in production (APG_BIOMETRIC_ENV=production); templates are never stored in plaintext there",
            );
        }
        if engine.enabled && !crate::engines::available(modality) {
            push(
                problems,
                &at("enabled"),
                true,
                &format!(
                    "false: this build has no {} engine yet (available: {})",
                    modality.as_str(),
                    crate::engines::available_list()
                ),
            );
        }
    }
    let ratio = |v: f64| (0.0..=1.0).contains(&v);
    let e = &config.biometric_engines;
    if !ratio(e.iris.segmentation_accuracy) {
        push(
            problems,
            "biometric_engines.iris.segmentation_accuracy",
            e.iris.segmentation_accuracy,
            "a number from 0 to 1",
        );
    }
    if !ratio(e.palm.hand_detection_confidence) {
        push(
            problems,
            "biometric_engines.palm.hand_detection_confidence",
            e.palm.hand_detection_confidence,
            "a number from 0 to 1",
        );
    }
    if !(e.gait.analysis_window >= 2.0 && e.gait.analysis_window <= 120.0) {
        push(
            problems,
            "biometric_engines.gait.analysis_window",
            e.gait.analysis_window,
            "seconds, from 2 to 120",
        );
    }
}

fn check_security(config: &Config, problems: &mut Vec<Problem>) {
    let s = &config.security;
    if s.encryption_algorithm != "AES-256-GCM" {
        push(
            problems,
            "security.encryption_algorithm",
            format!("{:?}", s.encryption_algorithm),
            "AES-256-GCM",
        );
    }
    if s.key_rotation_days > 3650 {
        push(
            problems,
            "security.key_rotation_days",
            s.key_rotation_days,
            "0 (never) to 3650 days",
        );
    }
    if !(60..=86_400).contains(&s.session_timeout) {
        push(
            problems,
            "security.session_timeout",
            s.session_timeout,
            "60 to 86400 seconds",
        );
    }
    if !(1..=100).contains(&s.max_failed_attempts) {
        push(
            problems,
            "security.max_failed_attempts",
            s.max_failed_attempts,
            "1 to 100 attempts",
        );
    }
    if !(1..=604_800).contains(&s.lockout_duration) {
        push(
            problems,
            "security.lockout_duration",
            s.lockout_duration,
            "1 to 604800 seconds",
        );
    }
    if config.profile() == Profile::Production && config.keys.credential.contains('/') {
        push(
            problems,
            "keys.credential",
            format!("{:?}", config.keys.credential),
            "a credential name without '/'",
        );
    }
}

fn check_sync(config: &Config, problems: &mut Vec<Problem>) {
    let s = &config.sync;
    if !s.enabled {
        return;
    }
    let url = s.broker_url.as_str();
    if url.starts_with("mqtt://") {
        if config.profile() == Profile::Production {
            push(
                problems,
                "sync.broker_url",
                format!("{url:?}"),
                "an mqtts:// URL in production (plain MQTT would expose events)",
            );
        } else if !s.allow_plain {
            push(
                problems,
                "sync.broker_url",
                format!("{url:?}"),
                "an mqtts:// URL, or set sync.allow_plain: true outside production",
            );
        }
    } else if !url.starts_with("mqtts://") {
        push(
            problems,
            "sync.broker_url",
            format!("{url:?}"),
            "mqtts://host:port",
        );
    }
    if url.starts_with("mqtts://") {
        for (key, value, allowed) in [
            (
                "sync.ca_file",
                &s.ca_file,
                "the PEM bundle of the CA that signed the broker's certificate",
            ),
            (
                "sync.client_cert_file",
                &s.client_cert_file,
                "this agent's client certificate (PEM) for mutual TLS",
            ),
            (
                "sync.client_key_file",
                &s.client_key_file,
                "this agent's private key (PEM) for mutual TLS",
            ),
        ] {
            if value.is_none() {
                push(problems, key, "(not set)", allowed);
            }
        }
    }
    if s.site_key_file.is_none() {
        push(
            problems,
            "sync.site_key_file",
            "(not set)",
            "a file with the site key every agent of the site shares (distributed templates are sealed with it)",
        );
    }
    if s.client_cert_file.is_some() != s.client_key_file.is_some() {
        push(
            problems,
            "sync.client_key_file",
            "(one of certificate and key)",
            "both sync.client_cert_file and sync.client_key_file, or neither",
        );
    }
    if s.outbox_max_events < 100 {
        push(
            problems,
            "sync.outbox_max_events",
            s.outbox_max_events,
            "at least 100 events",
        );
    }
    if !(5..=3600).contains(&s.keep_alive) {
        push(
            problems,
            "sync.keep_alive",
            s.keep_alive,
            "5 to 3600 seconds",
        );
    }
}

fn check_runtime(config: &Config, problems: &mut Vec<Problem>) {
    let p = &config.performance;
    if p.max_workers > 256 {
        push(
            problems,
            "performance.max_workers",
            p.max_workers,
            "0 (one per core) to 256",
        );
    }
    if !(p.worker_timeout > 0.0 && p.worker_timeout <= 600.0) {
        push(
            problems,
            "performance.worker_timeout",
            p.worker_timeout,
            "seconds, above 0 and at most 600",
        );
    }
    if !(1..=10_000).contains(&p.queue_size) {
        push(
            problems,
            "performance.queue_size",
            p.queue_size,
            "1 to 10000 requests",
        );
    }
    let level = config.logging.level.to_ascii_lowercase();
    if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
        push(
            problems,
            "logging.level",
            format!("{:?}", config.logging.level),
            "error, warn, info, debug or trace",
        );
    }
    if config
        .monitoring
        .metrics_address
        .parse::<std::net::IpAddr>()
        .is_err()
    {
        push(
            problems,
            "monitoring.metrics_address",
            format!("{:?}", config.monitoring.metrics_address),
            "an IP address such as 127.0.0.1",
        );
    }
    if !(1..=3600).contains(&config.monitoring.health_check_interval) {
        push(
            problems,
            "monitoring.health_check_interval",
            config.monitoring.health_check_interval,
            "1 to 3600 seconds",
        );
    }
    if !(1024..=256 * 1024 * 1024).contains(&config.api.max_body_bytes) {
        push(
            problems,
            "api.max_body_bytes",
            config.api.max_body_bytes,
            "1024 bytes to 256 MiB",
        );
    }
    if config.api.socket.as_os_str().is_empty() {
        push(
            problems,
            "api.socket",
            "(empty)",
            "a path for the operator socket",
        );
    }
}

fn check_devices(config: &Config, problems: &mut Vec<Problem>) {
    let d = &config.devices;
    if !(d.capture_timeout > 0.0 && d.capture_timeout <= 600.0) {
        push(
            problems,
            "devices.capture_timeout",
            d.capture_timeout,
            "seconds, above 0 and at most 600",
        );
    }
    let mut seen = HashSet::new();
    for (i, dev) in d.simulated.iter().enumerate() {
        check_device_id(
            &dev.id,
            &format!("devices.simulated[{i}].id"),
            &mut seen,
            problems,
        );
        if !(100..=2000).contains(&dev.dpi) {
            push(
                problems,
                &format!("devices.simulated[{i}].dpi"),
                dev.dpi,
                "100 to 2000 dpi",
            );
        }
    }
    let mut ports = HashSet::new();
    for (i, module) in d.serial.iter().enumerate() {
        let id = module.device_id();
        if !seen.insert(id.clone()) {
            push(
                problems,
                &format!("devices.serial[{i}].id"),
                format!("{id:?}"),
                "an id not used by another device (set id when two ports share a file name)",
            );
        }
        if !module.path.starts_with('/') {
            push(
                problems,
                &format!("devices.serial[{i}].path"),
                format!("{:?}", module.path),
                "an absolute device path such as /dev/ttyUSB0 or /dev/serial/by-id/...",
            );
        } else if !ports.insert(module.path.as_str()) {
            push(
                problems,
                &format!("devices.serial[{i}].path"),
                format!("{:?}", module.path),
                "a port not used by another module",
            );
        }
        let (min, max) = (
            apg_fp_serial::module::MIN_BAUD,
            apg_fp_serial::module::MAX_BAUD,
        );
        if !(min..=max).contains(&module.baud) || module.baud % 9600 != 0 {
            push(
                problems,
                &format!("devices.serial[{i}].baud"),
                module.baud,
                "a multiple of 9600 from 9600 to 115200 (modules ship at 57600)",
            );
        }
    }
    check_uvc(&d.uvc, problems);
    for (i, camera) in d.streams.iter().enumerate() {
        let at = |key: &str| format!("devices.streams[{i}].{key}");
        check_device_id(&camera.id, &at("id"), &mut seen, problems);
        if camera.url.trim().is_empty() {
            push(
                problems,
                &at("url"),
                "\"\"",
                "a video file's absolute path or an rtsp:// URL",
            );
        } else if !camera.url.starts_with('/') && !camera.url.starts_with("rtsp://") {
            push(
                problems,
                &at("url"),
                format!("{:?}", camera.spec().public_location()),
                "a video file's absolute path or an rtsp:// URL",
            );
        }
        check_frame_size(camera.width, camera.height, &at("width"), problems);
        if !(1..=60).contains(&camera.frames_per_sample) {
            push(
                problems,
                &at("frames_per_sample"),
                camera.frames_per_sample,
                "1 to 60 frames",
            );
        }
    }
}

/// A device id the agent can use in URLs and logs, and not taken by another device.
fn check_device_id(id: &str, at: &str, seen: &mut HashSet<String>, problems: &mut Vec<Problem>) {
    if !is_plain_name(id) {
        push(
            problems,
            at,
            format!("{id:?}"),
            "letters, digits, '-' or '_'",
        );
    } else if !seen.insert(id.to_owned()) {
        push(
            problems,
            at,
            format!("{id:?}"),
            "an id not used by another device",
        );
    }
}

fn check_uvc(uvc: &crate::config::UvcCameras, problems: &mut Vec<Problem>) {
    if !uvc.device_dir.is_absolute() {
        push(
            problems,
            "devices.uvc.device_dir",
            uvc.device_dir.display(),
            "an absolute directory, normally /dev",
        );
    }
    check_frame_size(uvc.width, uvc.height, "devices.uvc.width", problems);
    if !(1..=120).contains(&uvc.fps) {
        push(
            problems,
            "devices.uvc.fps",
            uvc.fps,
            "1 to 120 frames per second",
        );
    }
}

/// Frame sizes the face engine can use: at least 160x120 and at most 4096x4096, even (4:2:2
/// formats carry pixels in pairs).
fn check_frame_size(width: u32, height: u32, at: &str, problems: &mut Vec<Problem>) {
    let fits = |v: u32, min: u32| (min..=4096).contains(&v) && v.is_multiple_of(2);
    if !fits(width, 160) || !fits(height, 120) {
        push(
            problems,
            at,
            format!("{width}x{height}"),
            "an even width from 160 and an even height from 120, both at most 4096 (width and height keys)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(config: &Config) -> Vec<Problem> {
        let mut problems = Vec::new();
        check(config, &mut problems);
        problems
    }

    #[test]
    fn cameras_are_checked_and_stream_passwords_are_never_shown() {
        let mut config = Config {
            profile: Some(Profile::Development),
            ..Config::default()
        };
        config.devices.uvc.fps = 0;
        config.devices.streams = vec![crate::config::StreamCamera {
            id: "door cam".into(),
            url: "http://admin:hunter2@10.0.0.7/live".into(),
            width: 641,
            height: 480,
            repeat: true,
            frames_per_sample: 0,
            infrared: false,
        }];
        let problems = problems_of(&config);
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "devices.uvc.fps",
                "devices.streams[0].id",
                "devices.streams[0].url",
                "devices.streams[0].width",
                "devices.streams[0].frames_per_sample"
            ],
            "{problems:?}"
        );
        let shown = format!("{problems:?} {:?}", config.devices.streams[0]);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("http://10.0.0.7/live"), "{shown}");
    }

    #[test]
    fn production_refuses_plaintext_templates_and_development_allows_them() {
        let mut config = Config::default();
        config
            .biometric_engines
            .fingerprint
            .common
            .template_encryption = false;
        config.profile = Some(Profile::Production);
        let problems = problems_of(&config);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].path,
            "biometric_engines.fingerprint.template_encryption"
        );
        config.profile = Some(Profile::Development);
        assert!(problems_of(&config).is_empty());
    }

    #[test]
    fn plain_mqtt_needs_allow_plain_and_is_refused_in_production() {
        let mut config = Config::default();
        config.sync.enabled = true;
        config.sync.broker_url = "mqtt://hub:1883".into();
        config.sync.site_key_file = Some("/etc/apg-biometric/site.key".into());
        config.profile = Some(Profile::Development);
        assert_eq!(problems_of(&config).len(), 1);
        config.sync.allow_plain = true;
        assert!(problems_of(&config).is_empty());
        config.profile = Some(Profile::Production);
        assert_eq!(problems_of(&config)[0].path, "sync.broker_url");
    }

    #[test]
    fn tls_sync_needs_its_certificates_and_the_site_key() {
        let mut config = Config::default();
        config.sync.enabled = true;
        let paths: Vec<String> = problems_of(&config).into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "sync.ca_file",
                "sync.client_cert_file",
                "sync.client_key_file",
                "sync.site_key_file"
            ]
        );
    }

    #[test]
    fn identities_that_would_break_mqtt_topics_are_refused() {
        let mut config = Config::default();
        config.agent.site = "lobby/#".into();
        assert_eq!(problems_of(&config)[0].path, "agent.site");
    }
}
