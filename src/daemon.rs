//! The daemon's life: start, tell systemd, serve, reload on SIGHUP, stop on SIGTERM.
//!
//! systemd protocol (`Type=notify`): `STATUS=` lines while starting; `READY=1` once the store
//! is migrated, keys loaded, devices enumerated, engines and galleries loaded and the API bound;
//! `WATCHDOG=1` at half of `WATCHDOG_USEC` while every capture and decision loop is alive;
//! `RELOADING=1` ... `READY=1` around a reload; `STOPPING=1` at shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::agent::{Agent, Endpoints};
use crate::config::{self, Config, Profile};
use crate::crypto::{self, MasterKey};
use crate::logging::{self, LogHandle};
use crate::maintenance;

/// Deadline for a clean stop (systemd `TimeoutStopSec=5` kills after 5 s).
const STOP_DEADLINE: Duration = Duration::from_millis(4000);

fn notify(states: &[NotifyState<'_>]) {
    // Without NOTIFY_SOCKET (run by hand) this does nothing, as it should.
    let _ = sd_notify::notify(false, states);
}

fn status(text: &str) {
    tracing::info!(status = text, "Starting.");
    notify(&[NotifyState::Status(text)]);
}

/// Loads the configuration from `path` and the process environment.
pub fn load_config(path: &Path) -> Result<Config, config::ConfigError> {
    config::load(path, std::env::vars())
}

/// Runs the agent until SIGTERM. Returns the process exit code.
pub fn run(config_path: PathBuf) -> anyhow::Result<()> {
    let started = Instant::now();
    let config = load_config(&config_path).map_err(|e| {
        notify(&[NotifyState::Status(&format!(
            "Invalid configuration {}",
            config_path.display()
        ))]);
        anyhow::anyhow!("{e}")
    })?;
    let log = logging::init(&config.logging).map_err(|e| anyhow::anyhow!(e))?;
    tracing::info!(config = %config_path.display(), profile = config.profile().label(), version = env!("CARGO_PKG_VERSION"), "Agent starting.");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("apg-rt")
        .build()?;
    runtime.block_on(serve(config, config_path, log, started))
}

fn load_master(config: &Config) -> anyhow::Result<MasterKey> {
    let strict = config.profile() == Profile::Production;
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let key = crypto::load_master_key(
        &config.keys.master_key_file,
        &config.keys.credential,
        credentials.as_deref(),
        strict,
    )?;
    if !strict && crypto::key_file_is_open(&config.keys.master_key_file) {
        tracing::warn!(file = %config.keys.master_key_file.display(), "Master key file is readable by others; production refuses this. Run chmod 600.");
    }
    Ok(key)
}

async fn serve(
    config: Config,
    config_path: PathBuf,
    log: LogHandle,
    started: Instant,
) -> anyhow::Result<()> {
    status("Loading master key");
    let master = load_master(&config)?;
    for m in crate::modality::Modality::ALL {
        if !config.engine(m).template_encryption && config.engine(m).enabled {
            tracing::warn!(modality = %m, profile = config.profile().label(), "Templates of this modality are stored WITHOUT encryption (template_encryption: false). Never do this in production.");
        }
    }
    let start_config = config.clone();
    let agent = tokio::task::spawn_blocking(move || {
        let hardware = crate::hardware::providers(&start_config.devices);
        Agent::start(start_config, master, hardware, &status)
    })
    .await?
    .context("agent start failed")?;

    status("Binding the API");
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut endpoints = Endpoints::default();
    let mut servers = Vec::new();

    let socket_path = config.api.socket.clone();
    let uds = crate::api::bind_socket(&socket_path)
        .with_context(|| format!("cannot listen on {} (api.socket)", socket_path.display()))?;
    endpoints.socket = Some(socket_path.display().to_string());
    let app = crate::api::socket_router(agent.clone())
        .into_make_service_with_connect_info::<crate::api::UdsPeer>();
    let stop = stopped(stop_rx.clone());
    servers.push(tokio::spawn(async move {
        axum::serve(uds, app).with_graceful_shutdown(stop).await
    }));

    if let Some(addr) = config.api.listen {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (api.listen)"))?;
        endpoints.api = Some(tcp.local_addr()?.to_string());
        let app = crate::api::tcp_router(agent.clone());
        let stop = stopped(stop_rx.clone());
        servers.push(tokio::spawn(async move {
            axum::serve(tcp, app).with_graceful_shutdown(stop).await
        }));
    }
    if config.monitoring.metrics_enabled {
        let addr = format!(
            "{}:{}",
            config.monitoring.metrics_address, config.monitoring.metrics_port
        );
        let tcp = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (monitoring.metrics_port)"))?;
        endpoints.metrics = Some(tcp.local_addr()?.to_string());
        let metrics_agent = agent.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let agent = metrics_agent.clone();
                async move {
                    agent.refresh_gauges();
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        agent.metrics.render(),
                    )
                }
            }),
        );
        let stop = stopped(stop_rx.clone());
        servers.push(tokio::spawn(async move {
            axum::serve(tcp, app).with_graceful_shutdown(stop).await
        }));
    }
    tracing::info!(api = ?endpoints.api, socket = ?endpoints.socket, metrics = ?endpoints.metrics, "Listening.");
    agent.set_endpoints(endpoints);

    status("Starting sync");
    let sync = crate::link::start(&agent).context("cannot start sync to the hub")?;

    let background = vec![
        tokio::spawn(watchdog(agent.clone(), stop_rx.clone())),
        tokio::spawn(housekeeping(agent.clone(), stop_rx.clone())),
    ];

    // Handlers go in before READY=1: a stop requested the moment we are ready must be clean.
    let stop_signals = StopSignals::install()?;
    let ready = format!(
        "Ready: {} device(s), modalities {}",
        agent.devices.list().len(),
        agent
            .loaded_modalities()
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    notify(&[NotifyState::Ready, NotifyState::Status(&ready)]);
    tracing::info!(
        startup_ms = started.elapsed().as_millis() as u64,
        "Agent ready."
    );

    signals(stop_signals, &agent, &config_path, &log).await;

    // Stopping: refuse new work, cancel captures, let running decisions finish, flush.
    notify(&[NotifyState::Stopping, NotifyState::Status("Stopping")]);
    tracing::info!("Agent stopping.");
    let deadline = Instant::now() + STOP_DEADLINE;
    let _ = stop_tx.send(true);
    agent.devices.shutdown();
    agent.workers.close();
    for server in servers {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, server).await.is_err() {
            tracing::warn!("An API connection did not close in time; it is dropped.");
        }
    }
    for task in background {
        task.abort();
    }
    if let Some(sync) = sync {
        // Publishes the retained `offline` status; what is not acknowledged stays queued.
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, sync.shutdown()).await.is_err() {
            tracing::warn!(
                "The sync task did not stop in time; unacknowledged events stay in the outbox."
            );
        }
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let agent_for_flush = agent.clone();
    let flushed = tokio::task::spawn_blocking(move || {
        let joined = agent_for_flush.workers.join(left);
        (joined, agent_for_flush.store.checkpoint())
    })
    .await?;
    if !flushed.0 {
        tracing::warn!("A decision was still running at the stop deadline; it is abandoned (its transaction never committed).");
    }
    if let Err(e) = flushed.1 {
        tracing::warn!(error = %e, "WAL checkpoint failed at stop; SQLite recovers it at the next start.");
    }
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("Agent stopped.");
    Ok(())
}

/// Resolves when the stop flag is raised.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The signals the daemon answers, registered once.
struct StopSignals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

/// Waits for signals: SIGHUP reloads, SIGTERM or SIGINT returns (stop).
async fn signals(mut s: StopSignals, agent: &Arc<Agent>, config_path: &Path, log: &LogHandle) {
    loop {
        tokio::select! {
            _ = s.hup.recv() => reload(agent, config_path, log).await,
            _ = s.term.recv() => return,
            _ = s.int.recv() => return,
        }
    }
}

async fn reload(agent: &Arc<Agent>, config_path: &Path, log: &LogHandle) {
    notify(&[
        NotifyState::Reloading,
        NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Status("Reloading")),
        NotifyState::Status("Reloading configuration"),
    ]);
    tracing::info!(config = %config_path.display(), "Reloading configuration.");
    match load_config(config_path) {
        Err(e) => {
            tracing::error!(config = %config_path.display(), problems = ?e.problems(), "New configuration rejected; the previous one stays in effect.");
        }
        Ok(new) => {
            let logging = new.logging.clone();
            let agent_for_apply = agent.clone();
            match tokio::task::spawn_blocking(move || agent_for_apply.apply_config(new)).await {
                Ok(Ok(mut restart)) => {
                    restart.extend(log.apply(&logging).map(str::to_string));
                    if !restart.is_empty() {
                        tracing::warn!(sections = ?restart, "Some changed settings take effect only after a restart.");
                    }
                    tracing::info!("Configuration reloaded.");
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "New configuration rejected; the previous one stays in effect.")
                }
                Err(e) => tracing::error!(error = %e, "Reload failed."),
            }
        }
    }
    notify(&[NotifyState::Ready, NotifyState::Status("Ready")]);
}

/// Pings the systemd watchdog while every loop is alive; a stuck loop stops the pings so that
/// systemd restarts the agent.
async fn watchdog(agent: Arc<Agent>, stop: watch::Receiver<bool>) {
    let Some(usec) = watchdog_usec() else {
        return stopped(stop).await;
    };
    let period = Duration::from_micros(usec / 2);
    tracing::info!(period_ms = period.as_millis() as u64, "Watchdog enabled.");
    let mut reported = false;
    let mut ticker = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stopped(stop.clone()) => return,
        }
        let stuck = agent.heartbeats.stuck();
        if stuck.is_empty() {
            notify(&[NotifyState::Watchdog]);
            reported = false;
        } else if !reported {
            tracing::error!(loops = ?stuck, "A loop is stuck; withholding the watchdog ping so that systemd restarts the agent.");
            reported = true;
        }
    }
}

/// The watchdog interval systemd asks for, as `sd_watchdog_enabled(3)` reads it: `WATCHDOG_USEC`
/// set and positive, and `WATCHDOG_PID`, when present, naming this process.
fn watchdog_usec() -> Option<u64> {
    let usec: u64 = std::env::var("WATCHDOG_USEC")
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|u| *u > 0)?;
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.trim().parse::<u32>().ok() != Some(std::process::id()) => None,
        _ => Some(usec),
    }
}

/// Periodic work: metrics gauges, automatic key rotation, finishing an interrupted rotation.
async fn housekeeping(agent: Arc<Agent>, stop: watch::Receiver<bool>) {
    let actor = crate::decision::Actor::agent();
    let mut first = true;
    loop {
        let interval = Duration::from_secs(agent.config().monitoring.health_check_interval);
        if !first {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                () = stopped(stop.clone()) => return,
            }
        }
        first = false;
        agent.refresh_gauges();
        let days = agent.config().security.key_rotation_days;
        let store = agent.store.clone();
        let due =
            tokio::task::spawn_blocking(move || maintenance::rotation_due(&store, days)).await;
        let due = matches!(due, Ok(Ok(true)));
        if due || agent.vault.rotation_pending() {
            tracing::info!(
                due,
                resuming = agent.vault.rotation_pending(),
                "Running data key rotation."
            );
            if let Err(e) = maintenance::rotate_keys(&agent, &actor).await {
                tracing::error!(error = %e, "Data key rotation failed; it will be retried.");
            }
        }
    }
}
