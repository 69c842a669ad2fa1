//! `apg-biometric doctor`: checks what a technician would check, in order, and says what to
//! fix. Works whether or not the agent is running.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use hyper::Method;
use serde::Serialize;

use crate::client::Client;
use crate::config::Config;

#[derive(Debug, Serialize)]
struct Finding {
    check: &'static str,
    ok: bool,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        check,
        ok: true,
        detail: detail.into(),
        fix: None,
    }
}

fn bad(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        check,
        ok: false,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// Runs every check; exit code 1 when anything needs fixing.
pub async fn run(config_path: &Path, client: &Client, json: bool) -> anyhow::Result<i32> {
    let mut findings = Vec::new();
    let config = match crate::config::load(config_path, std::env::vars()) {
        Ok(c) => {
            findings.push(ok(
                "config",
                format!(
                    "{} is valid ({} profile)",
                    config_path.display(),
                    c.profile().label()
                ),
            ));
            Some(c)
        }
        Err(e) => {
            findings.push(bad(
                "config",
                e.to_string(),
                format!(
                    "edit {} and run `apg-biometric-agent check-config {}`",
                    config_path.display(),
                    config_path.display()
                ),
            ));
            None
        }
    };
    if let Some(c) = &config {
        findings.push(check_key(c));
        findings.push(check_store(c));
        findings.extend(check_sync(c).await);
    }
    findings.push(check_clock());
    findings.extend(check_agent(client).await);

    if json {
        println!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        for f in &findings {
            println!(
                "{} {:<8} {}",
                if f.ok { "ok  " } else { "FAIL" },
                f.check,
                f.detail
            );
            if let Some(fix) = &f.fix {
                println!("              fix: {fix}");
            }
        }
    }
    Ok(i32::from(findings.iter().any(|f| !f.ok)))
}

fn check_key(c: &Config) -> Finding {
    let path = &c.keys.master_key_file;
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        if Path::new(&dir).join(&c.keys.credential).exists() {
            return ok(
                "keys",
                format!("master key from systemd credential {}", c.keys.credential),
            );
        }
    }
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => bad(
            "keys",
            format!(
                "master key {} has mode {:04o}",
                path.display(),
                m.permissions().mode() & 0o7777
            ),
            format!("chmod 600 {}", path.display()),
        ),
        Ok(_) => ok(
            "keys",
            format!("master key {} present, mode 0600", path.display()),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => ok(
            "keys",
            format!(
                "master key {} exists (not readable by you, as it should be)",
                path.display()
            ),
        ),
        Err(_) => bad(
            "keys",
            format!("no master key at {}", path.display()),
            format!(
                "apg-biometric keys init --file {} (then chown it to the service user)",
                path.display()
            ),
        ),
    }
}

fn check_store(c: &Config) -> Finding {
    let path = &c.storage.path;
    let dir = path.parent().unwrap_or(Path::new("/"));
    if !dir.exists() {
        return bad(
            "store",
            format!("directory {} does not exist", dir.display()),
            format!(
                "mkdir -p {} and give it to the service user (the packages do this)",
                dir.display()
            ),
        );
    }
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => {
            let free = s.blocks_available() * s.fragment_size();
            if free < 100 << 20 {
                bad(
                    "disk",
                    format!("only {} MiB free on {}", free >> 20, dir.display()),
                    "free disk space: decisions and enrollments need room in the store and its WAL",
                )
            } else {
                ok(
                    "store",
                    format!("{} ({} MiB free)", path.display(), free >> 20),
                )
            }
        }
        Err(e) => bad(
            "store",
            format!("cannot inspect {}: {e}", dir.display()),
            "check the mount",
        ),
    }
}

async fn check_sync(c: &Config) -> Vec<Finding> {
    if !c.sync.enabled {
        return vec![ok("broker", "sync is off (standalone agent)")];
    }
    let mut findings = Vec::new();
    for (key, file) in [
        ("sync.ca_file", &c.sync.ca_file),
        ("sync.client_cert_file", &c.sync.client_cert_file),
        ("sync.client_key_file", &c.sync.client_key_file),
        ("sync.site_key_file", &c.sync.site_key_file),
    ] {
        if let Some(f) = file {
            if !f.exists() {
                findings.push(bad(
                    "broker",
                    format!("{key} {} does not exist", f.display()),
                    format!("copy the file there or fix {key}"),
                ));
            }
        }
    }
    let url = c.sync.broker_url.as_str();
    let host_port = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or("");
    let target = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:8883")
    };
    match tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(&target)).await {
        Ok(Ok(_)) => findings.push(ok("broker", format!("{target} accepts connections"))),
        Ok(Err(e)) => findings.push(bad("broker", format!("cannot connect to {target}: {e}"), "check sync.broker_url, the network, and the broker's firewall; decisions are queued in the outbox meanwhile")),
        Err(_) => findings.push(bad("broker", format!("no answer from {target} within 3 s"), "check routing and firewalls between this machine and the broker")),
    }
    findings
}

fn check_clock() -> Finding {
    // Certificates and event times need a sane clock; a machine whose clock is behind the
    // date this agent was built has certainly lost its time.
    let built = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).expect("valid date");
    let today = chrono::Utc::now().date_naive();
    if today < built {
        bad("clock", format!("system date {today} is before this agent's release"), "set the time (timedatectl set-ntp true) — TLS certificates fail and event times are wrong until then")
    } else {
        ok(
            "clock",
            format!(
                "system time {} UTC",
                chrono::Utc::now().format("%Y-%m-%d %H:%M:%S")
            ),
        )
    }
}

async fn check_agent(client: &Client) -> Vec<Finding> {
    let answer = match client.call(Method::GET, "/health", None).await {
        Ok(a) => a,
        Err(e) => return vec![bad("agent", e.to_string(), "systemctl start apg-biometric-agent; journalctl -u apg-biometric-agent shows why it stopped")],
    };
    let mut findings = vec![ok(
        "agent",
        format!(
            "running, status {}",
            answer.body["status"].as_str().unwrap_or("?")
        ),
    )];
    for c in answer.body["checks"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or("?");
        let detail = c["detail"].as_str().unwrap_or("").to_string();
        if c["status"] == "ok" {
            continue;
        }
        let fix = match name {
            "devices" => "check the cable; `apg-biometric devices` shows the state; a device listed as permission_denied needs the udev rules (udevadm trigger) and the service user in group apg-biometric",
            "engines" => "re-enroll the subjects named in `apg-biometric audit list`, or restore a backup",
            "disk" => "free disk space on the store's file system",
            "sync" => "the broker is unreachable: check sync.broker_url and certificates; events wait in the outbox and none is lost",
            "loops" => "a device or engine is wedged: unplug the device or restart the agent (systemd does this itself when the watchdog is on)",
            _ => "see the agent log: journalctl -u apg-biometric-agent",
        };
        findings.push(Finding {
            check: "agent",
            ok: false,
            detail: format!("{name}: {detail}"),
            fix: Some(fix.into()),
        });
    }
    if let Ok(devices) = client.call(Method::GET, "/devices", None).await {
        for d in devices.body["devices"].as_array().into_iter().flatten() {
            if d["state"] == "permission_denied" {
                findings.push(bad(
                    "devices",
                    format!(
                        "{} ({}) cannot be opened by the service account",
                        d["id"].as_str().unwrap_or("?"),
                        d["model"].as_str().unwrap_or("?")
                    ),
                    "sudo udevadm control --reload && sudo udevadm trigger; then replug the device",
                ));
            }
        }
    }
    findings
}
