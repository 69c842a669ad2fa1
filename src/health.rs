//! The health report: store, keys, devices, engines, disk, memory, outbox and loops.

use serde::Serialize;

use crate::agent::Agent;
use crate::store;

/// Overall or per-check status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Working.
    Ok,
    /// Working with a problem an operator should look at.
    Degraded,
    /// Not able to do its job.
    Failing,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Check name.
    pub name: &'static str,
    /// Result.
    pub status: Status,
    /// What was found, and what to do when it is not ok.
    pub detail: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    /// Worst status of all checks.
    pub status: Status,
    /// Agent version.
    pub version: &'static str,
    /// Agent id.
    pub agent: String,
    /// Site id.
    pub site: String,
    /// Profile in effect.
    pub profile: &'static str,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// Where the agent listens.
    pub endpoints: crate::agent::Endpoints,
    /// Individual checks.
    pub checks: Vec<Check>,
}

pub(crate) fn check(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
    }
}

/// Runs every check (blocking: touches the database and the file system).
pub fn report(agent: &Agent) -> HealthReport {
    let config = agent.config();
    let mut checks = Vec::new();

    checks.push(match agent.store.schema_version() {
        Ok(v) => check(
            "store",
            Status::Ok,
            format!("{} (schema version {v})", agent.store.path().display()),
        ),
        Err(e) => check("store", Status::Failing, e.to_string()),
    });

    let versions = agent.vault.live_versions();
    let keys_detail = format!(
        "data key version {} active ({})",
        agent.vault.active_version(),
        agent.master_source
    );
    checks.push(if versions.len() > 1 {
        check(
            "keys",
            Status::Ok,
            format!("{keys_detail}; rotation in progress from versions {versions:?}"),
        )
    } else {
        check("keys", Status::Ok, keys_detail)
    });

    let devices = agent.devices.list();
    let down: Vec<String> = devices
        .iter()
        .filter(|d| {
            !matches!(
                d.info.state,
                apg_device::DeviceState::Ready | apg_device::DeviceState::Busy
            )
        })
        .map(|d| format!("{} is {}", d.info.id, d.info.state.label()))
        .collect();
    checks.push(if devices.is_empty() {
        check(
            "devices",
            Status::Degraded,
            "no capture device found; plug one in or configure devices.simulated",
        )
    } else if down.is_empty() {
        check("devices", Status::Ok, format!("{} ready", devices.len()))
    } else {
        check("devices", Status::Degraded, down.join("; "))
    });

    let loaded = agent.loaded_modalities();
    let unreadable = agent.unreadable_templates();
    let engines_detail = format!(
        "loaded: {}",
        loaded
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    checks.push(if loaded.is_empty() {
        check("engines", Status::Failing, "no engine is loaded; enable a modality under biometric_engines")
    } else if unreadable > 0 {
        check("engines", Status::Degraded, format!("{engines_detail}; {unreadable} stored template(s) could not be decrypted or parsed (see the audit log; re-enroll or restore)"))
    } else {
        check("engines", Status::Ok, engines_detail)
    });

    checks.push(disk_check(agent.store.path()));
    checks.push(memory_check());

    checks.push(crate::link::health_check(
        &config,
        agent.sync_status().as_ref(),
    ));

    let stuck = agent.heartbeats.stuck();
    checks.push(if stuck.is_empty() {
        check("loops", Status::Ok, "capture and decision loops alive")
    } else {
        check("loops", Status::Failing, stuck.join("; "))
    });

    HealthReport {
        status: checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok),
        version: env!("CARGO_PKG_VERSION"),
        agent: config.agent.id.clone(),
        site: config.agent.site.clone(),
        profile: config.profile().label(),
        uptime_seconds: agent.started.elapsed().as_secs(),
        endpoints: agent.endpoints(),
        checks,
    }
}

fn disk_check(db: &std::path::Path) -> Check {
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => {
            let total = s.blocks() * s.fragment_size();
            let free = s.blocks_available() * s.fragment_size();
            let percent = if total == 0 {
                0.0
            } else {
                free as f64 * 100.0 / total as f64
            };
            let detail = format!(
                "{} MiB free ({percent:.1}%) on {}",
                free >> 20,
                dir.display()
            );
            if free < 50 << 20 || percent < 1.0 {
                check(
                    "disk",
                    Status::Failing,
                    format!(
                        "{detail}; free space now or enrollments and decisions cannot be recorded"
                    ),
                )
            } else if free < 500 << 20 || percent < 5.0 {
                check(
                    "disk",
                    Status::Degraded,
                    format!("{detail}; free some space"),
                )
            } else {
                check("disk", Status::Ok, detail)
            }
        }
        Err(e) => check(
            "disk",
            Status::Degraded,
            format!("cannot read free space of {}: {e}", dir.display()),
        ),
    }
}

/// Resident memory of this process, bytes (from /proc/self/status).
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn memory_check() -> Check {
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let field = |name: &str| -> Option<u64> {
            m.lines()
                .find(|l| l.starts_with(name))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        };
        Some((field("MemAvailable:")?, field("MemTotal:")?))
    });
    let rss = rss_bytes().map_or_else(|| "unknown".into(), |b| format!("{} MiB", b >> 20));
    match available {
        Some((avail, total)) if total > 0 && avail * 100 / total < 5 => check(
            "memory",
            Status::Degraded,
            format!(
                "agent uses {rss}; only {} MiB of {} MiB available on the machine",
                avail >> 10,
                total >> 10
            ),
        ),
        Some((avail, total)) => check(
            "memory",
            Status::Ok,
            format!(
                "agent uses {rss}; {} MiB of {} MiB available",
                avail >> 10,
                total >> 10
            ),
        ),
        None => check("memory", Status::Ok, format!("agent uses {rss}")),
    }
}

/// Counts of decisions since a time, for the analytics endpoint.
pub fn summary(agent: &Agent, since: &str) -> Result<serde_json::Value, store::StoreError> {
    let rows = agent.store.read(|c| store::history::summary(c, since))?;
    let items: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(modality, operation, decision, count)| serde_json::json!({ "modality": modality, "operation": operation, "decision": decision, "count": count }))
        .collect();
    let subjects = agent.store.read(store::subjects::count)?;
    let templates: serde_json::Map<String, serde_json::Value> = agent
        .store
        .read(store::templates::count_by_modality)?
        .into_iter()
        .map(|(m, n)| (m, n.into()))
        .collect();
    Ok(
        serde_json::json!({ "since": since, "decisions": items, "subjects": subjects, "templates": templates }),
    )
}
