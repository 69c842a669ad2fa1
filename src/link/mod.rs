//! The agent's link to the hub: the sync task over this agent's store.
//!
//! `apg-sync` owns the MQTT side (TLS, sessions, ordering, acknowledgements); this module gives
//! it the store's outbox to drain ([`outbox`]) and the store to import distributed templates
//! into ([`import`]), answers the hub's commands, and reports the connection in health.

pub mod import;
pub mod outbox;

use std::sync::Arc;
use std::time::Duration;

use apg_sync::{SyncConfig, SyncHandle, SyncStatus, SyncTask, TlsFiles};
use apg_wire::{Command, CommandAction, EventBody, HealthCheck, HealthStatus};
use tokio::sync::mpsc;

use crate::agent::Agent;
use crate::config::{Config, Profile};
use crate::health::{self, Status};

/// Why sync cannot start. Each names the config key to fix.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A key the sync task needs is missing.
    #[error("sync.enabled is true but {key} is not set; {what}")]
    Missing {
        /// Config key.
        key: &'static str,
        /// What it is for.
        what: &'static str,
    },
    /// The sync task refused the configuration.
    #[error(transparent)]
    Config(#[from] apg_sync::SyncConfigError),
}

/// The sync task's configuration from the agent's `sync` and `agent` sections.
pub fn sync_config(config: &Config) -> Result<SyncConfig, LinkError> {
    let s = &config.sync;
    let tls = if s.broker_url.starts_with("mqtts://") {
        let need = |value: &Option<std::path::PathBuf>, key: &'static str, what: &'static str| {
            value.clone().ok_or(LinkError::Missing { key, what })
        };
        Some(TlsFiles {
            ca_file: need(
                &s.ca_file,
                "sync.ca_file",
                "give the PEM bundle of the CA that signed the broker's certificate",
            )?,
            client_cert_file: need(
                &s.client_cert_file,
                "sync.client_cert_file",
                "give this agent's client certificate (PEM) for mutual TLS",
            )?,
            client_key_file: need(
                &s.client_key_file,
                "sync.client_key_file",
                "give this agent's private key (PEM) for mutual TLS",
            )?,
        })
    } else {
        None
    };
    let mut sync = SyncConfig::new(&s.broker_url, &config.agent.site, &config.agent.id, tls);
    sync.allow_plaintext = s.allow_plain;
    sync.production = config.profile() == Profile::Production;
    sync.keep_alive = Duration::from_secs(s.keep_alive);
    sync.outbox_limit = s.outbox_max_events;
    Ok(sync)
}

/// Starts the sync task when `sync.enabled`; `None` otherwise. Must run inside the tokio
/// runtime. Wakes the drain after every store commit and answers hub commands.
pub fn start(agent: &Arc<Agent>) -> Result<Option<SyncHandle>, LinkError> {
    let config = agent.config();
    if !config.sync.enabled {
        return Ok(None);
    }
    let keys = agent.site_keys().ok_or(LinkError::Missing {
        key: "sync.site_key_file",
        what: "every agent of the site needs the same site key to seal and open distributed templates",
    })?;
    let (commands_tx, commands_rx) = mpsc::channel(16);
    let handle = SyncTask::new(
        sync_config(&config)?,
        (*keys).clone(),
        Arc::new(outbox::StoreOutbox::new(agent.store.clone())),
        Arc::new(import::AgentSink::new(Arc::downgrade(agent))),
    )
    .with_commands(commands_tx)
    .spawn()?;
    let waker = handle.waker();
    agent.store.set_after_commit(move || waker.wake());
    agent.set_sync_status(handle.subscribe());
    tokio::spawn(answer_commands(Arc::downgrade(agent), commands_rx));
    tracing::info!(broker = %config.sync.broker_url, site = %config.agent.site, agent = %config.agent.id, "Sync to the hub started.");
    Ok(Some(handle))
}

/// The health check of the link, from the sync task's latest status.
pub fn health_check(config: &Config, status: Option<&SyncStatus>) -> health::Check {
    let Some(s) = status.filter(|_| config.sync.enabled) else {
        return health::check("sync", Status::Ok, "sync is off");
    };
    let waiting = format!("{} event(s) waiting in the outbox", s.outbox_depth);
    if s.outbox_over_limit {
        return health::check(
            "sync",
            Status::Degraded,
            format!("{waiting}, above sync.outbox_max_events {}; older health snapshots are discarded, decisions are kept; check the broker connection", s.outbox_limit),
        );
    }
    if s.connected {
        return health::check(
            "sync",
            Status::Ok,
            format!("connected to {}; {waiting}", config.sync.broker_url),
        );
    }
    let reason = s.last_failure.as_ref().map_or_else(
        || "connecting".to_string(),
        |f| format!("{}: {}", f.kind, f.kind.remedy()),
    );
    health::check(
        "sync",
        Status::Degraded,
        format!(
            "not connected to {} ({reason}); {waiting}, kept until the broker is reachable",
            config.sync.broker_url
        ),
    )
}

async fn answer_commands(agent: std::sync::Weak<Agent>, mut rx: mpsc::Receiver<Command>) {
    while let Some(command) = rx.recv().await {
        let Some(agent) = agent.upgrade() else { return };
        match command.action {
            CommandAction::ReportHealth => {
                let result = tokio::task::spawn_blocking(move || queue_health(&agent)).await;
                match result {
                    Ok(Ok(())) => {
                        tracing::info!(command = %command.command_id, "Health reported on the hub's request.")
                    }
                    Ok(Err(e)) => {
                        tracing::error!(command = %command.command_id, error = %e, "Cannot queue the health event the hub asked for.")
                    }
                    Err(e) => tracing::error!(error = %e, "Health report task failed."),
                }
            }
            // The sync task republishes the status itself.
            CommandAction::RepublishStatus => {}
        }
    }
}

fn wire_status(s: Status) -> HealthStatus {
    match s {
        Status::Ok => HealthStatus::Ok,
        Status::Degraded => HealthStatus::Degraded,
        Status::Failing => HealthStatus::Failing,
    }
}

/// Queues a health snapshot for the hub.
fn queue_health(agent: &Agent) -> Result<(), crate::store::StoreError> {
    let report = health::report(agent);
    let depth = agent.store.read(crate::store::outbox::depth)?;
    let body = EventBody::Health(apg_wire::Health {
        status: wire_status(report.status),
        outbox_depth: depth,
        outbox_over_limit: depth > agent.config().sync.outbox_max_events,
        checks: report
            .checks
            .iter()
            .map(|c| HealthCheck {
                name: c.name.to_string(),
                status: wire_status(c.status),
                detail: (c.status != Status::Ok).then(|| c.detail.clone()),
            })
            .collect(),
    });
    let origin = agent.origin();
    agent
        .store
        .write(|tx| crate::events::queue(tx, &origin, body).map(drop))
}
