//! End-to-end throughput and latency of the event path: agent outbox -> Mosquitto -> hub ->
//! PostgreSQL, with one hub and then two hubs sharing the subscription.
//!
//!     cargo bench -p apg-biometric-hub --bench e2e                  (60 s per scenario)
//!     cargo bench -p apg-biometric-hub --bench e2e -- --seconds 10  (shorter run)
//!
//! Options (after `--`): `--seconds N` (or env `APG_BENCH_SECONDS`), `--rate EVENTS_PER_S`
//! (offered load, default 5000), `--agents N` (default 4), `--hubs 1,2`, `--hub-batch N`
//! (hub `batch.max_events`, default the hub's 500), `--broker-inflight N` and
//! `--broker-queue N` (Mosquitto `max_inflight_messages` / `max_queued_messages`, 0 meaning
//! unlimited). The broker keeps Mosquitto's default in-flight window (20) but an unlimited
//! queue: with the default `max_queued_messages 1000` Mosquitto silently drops events it has
//! already acknowledged to the agents as soon as the hubs fall 1000 events behind
//! (`--broker-queue 1000` shows it as missing rows).
//!
//! Every scenario gets its own Mosquitto (plain listener on a free port, config in a temporary
//! directory), its own fresh PostgreSQL database (127.0.0.1:5432, user postgres, trust auth)
//! and its own hub processes (the binary cargo builds for this bench). Simulated agents are
//! `MemoryOutbox` + `SyncTask` pairs, fed at a constant rate by one producer thread; each event
//! is stamped `occurred_at` when it is pushed into the outbox.
//!
//! Measured, per scenario:
//! - delivered events/s: rows of `biometric.events` whose `received_at` falls inside the load
//!   window, over its length; the slowest whole second of the window; and how long the backlog
//!   took to reach PostgreSQL after the load stopped.
//! - latency "insert": `received_at - occurred_at` for every event. `received_at` defaults to
//!   `now()`, the start of the hub's batch transaction, so this leaves out the transaction
//!   itself.
//! - latency "visible": for one event in 20, the first time a poll (every 25 ms) of the bench
//!   finds the row committed, minus `occurred_at`: what a reader of the database sees.
//! - loss and duplicates: every pushed event id must be in `biometric.events` and in
//!   `biometric.verification_history` exactly once, with nothing else; redeliveries the hubs
//!   dropped by event id come from their `/metrics`.
//! - CPU seconds used by Mosquitto, each hub, the PostgreSQL backends of the hubs and the bench
//!   process itself (agents, producer, probes), against the machine's total.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use apg_sync::{
    MemoryOutbox, OpenedTemplate, Outbox, SinkError, SiteKey, SiteKeyring, SyncConfig, SyncHandle,
    SyncTask, TemplateSink, VerifiedDeletion,
};
use apg_wire::{EventBody, Modality, Verification, VerificationDecision};
use chrono::{DateTime, Utc};
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

const HUB_BIN: &str = env!("CARGO_BIN_EXE_apg-biometric-hub");
const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const ADMIN_URL: &str = "host=127.0.0.1 user=postgres";
const SITE: &str = "bench";
const TARGET_RATE: f64 = 5000.0;
/// One event in this many is followed until it is visible in PostgreSQL.
const SAMPLE_EVERY: u64 = 20;
const VISIBILITY_POLL: Duration = Duration::from_millis(25);
/// Events per agent sent before the measurement, to start the hubs' partitions and sessions.
const WARM_UP_PER_AGENT: usize = 50;
/// The wait for the backlog ends when PostgreSQL gains no row for this long.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

const USAGE: &str =
    "usage: cargo bench -p apg-biometric-hub --bench e2e -- [--seconds N] [--rate EVENTS_PER_S] \
[--agents N] [--hubs 1,2] [--hub-batch N] [--broker-inflight N] [--broker-queue N]";

#[derive(Debug, Clone)]
struct Options {
    seconds: u64,
    rate: u64,
    agents: usize,
    hubs: Vec<usize>,
    hub_batch: Option<usize>,
    broker_inflight: Option<u32>,
    broker_queue: Option<u32>,
}

fn parse_number<T: std::str::FromStr>(key: &str, value: Option<String>) -> anyhow::Result<T> {
    let value = value.with_context(|| format!("{key} needs a value\n{USAGE}"))?;
    value
        .parse()
        .map_err(|_| anyhow::anyhow!("{key} {value:?}: not a number\n{USAGE}"))
}

fn parse_options() -> anyhow::Result<Options> {
    let mut o = Options {
        seconds: 60,
        rate: TARGET_RATE as u64,
        agents: 4,
        hubs: vec![1, 2],
        hub_batch: None,
        broker_inflight: None,
        // Mosquitto's default (1000) drops QoS 1 events, already acknowledged to the agents,
        // once a hub falls that far behind; the bench measures a broker that keeps them.
        broker_queue: Some(0),
    };
    if let Ok(s) = std::env::var("APG_BENCH_SECONDS") {
        o.seconds = parse_number("APG_BENCH_SECONDS", Some(s))?;
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        // `--key=value` as well as `--key value`.
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next());
        match key.as_str() {
            // cargo bench passes --bench to harness-less benches.
            "--bench" => {}
            "--seconds" => o.seconds = parse_number(&key, value())?,
            "--rate" => o.rate = parse_number(&key, value())?,
            "--agents" => o.agents = parse_number(&key, value())?,
            "--hub-batch" => o.hub_batch = Some(parse_number(&key, value())?),
            "--broker-inflight" => o.broker_inflight = Some(parse_number(&key, value())?),
            "--broker-queue" => o.broker_queue = Some(parse_number(&key, value())?),
            "--hubs" => {
                let list = value().with_context(|| format!("--hubs needs a value\n{USAGE}"))?;
                o.hubs = list
                    .split(',')
                    .map(|n| parse_number("--hubs", Some(n.trim().to_owned())))
                    .collect::<anyhow::Result<_>>()?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if o.seconds == 0 || o.rate == 0 || o.agents == 0 || o.hubs.contains(&0) || o.hubs.is_empty() {
        bail!("--seconds, --rate, --agents and --hubs must be at least 1\n{USAGE}");
    }
    Ok(o)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process killed when dropped.
struct Proc {
    child: Child,
    name: String,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<Self> {
        let out = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Self {
            child,
            name: name.to_owned(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early ({status})", self.name);
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let p = std::env::temp_dir().join(format!("apg-hub-bench-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
        Ok(Self(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The agents here never receive templates: anything distributed is refused.
struct RefuseTemplates;

impl TemplateSink for RefuseTemplates {
    fn import(&self, t: OpenedTemplate) -> Result<(), SinkError> {
        Err(SinkError::Rejected(format!(
            "the bench agent takes no template ({})",
            t.template_id
        )))
    }

    fn delete_subject(&self, _: &VerifiedDeletion) -> Result<(), SinkError> {
        Err(SinkError::Rejected(
            "the bench agent takes no deletion".into(),
        ))
    }
}

fn verification(device: &str) -> EventBody {
    EventBody::Verification(Verification {
        subject_id: Uuid::now_v7(),
        modality: Modality::Fingerprint,
        decision: VerificationDecision::Accepted,
        score: Some(0.87),
        threshold: Some(0.5),
        quality: None,
        liveness: None,
        device_id: device.to_owned(),
        duration_ms: 14,
        request_id: None,
        reason: None,
    })
}

async fn wait_port(port: u16, within: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > within {
            bail!("nothing listens on 127.0.0.1:{port} after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// `GET path` on a hub's health endpoint: (status code, body).
fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

fn metric(body: &str, name: &str) -> u64 {
    body.lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter_map(|rest| rest.trim().parse::<f64>().ok())
        .next()
        .unwrap_or(0.0) as u64
}

struct Hub {
    proc: Proc,
    health_port: u16,
}

fn start_hub(
    dir: &Path,
    broker_port: u16,
    db: &str,
    index: usize,
    batch: Option<usize>,
) -> anyhow::Result<Hub> {
    let id = format!("hub-bench-{index}");
    let health_port = free_port()?;
    let batch = batch
        .map(|n| format!("batch:\n  max_events: {n}\n"))
        .unwrap_or_default();
    let cfg = dir.join(format!("{id}.yaml"));
    std::fs::write(
        &cfg,
        format!(
            "mqtt:\n  broker_url: mqtt://127.0.0.1:{broker_port}\n  client_id: {id}\n  group: bench\n  allow_plaintext: true\n\
             postgres:\n  url: host=127.0.0.1 user=postgres dbname={db}\n{batch}health_listen: 127.0.0.1:{health_port}\n"
        ),
    )?;
    let proc = Proc::spawn(
        &id,
        Command::new(HUB_BIN)
            .arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "warn"),
        &dir.join(format!("{id}.log")),
    )?;
    Ok(Hub { proc, health_port })
}

async fn wait_connected(hub: &mut Hub, within: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        hub.proc.check_running()?;
        // /health stays 503 until the first batch commits: look at the broker connection.
        if let Ok((200, body)) = http_get(hub.health_port, "/metrics") {
            if metric(&body, "apg_hub_mqtt_connected") == 1 {
                return Ok(());
            }
        }
        if start.elapsed() > within {
            bail!(
                "{} did not connect to the broker within {within:?}",
                hub.proc.name
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL ({url}); the bench needs it at 127.0.0.1:5432, user postgres, trust auth"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// CPU time (user + system) of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    ticks as f64 / 100.0 // USER_HZ is 100 on Linux
}

/// Busy and total CPU seconds of the whole machine since boot (all cores).
fn machine_cpu() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().sum();
    // idle and iowait
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    ((total - idle) as f64 / 100.0, total as f64 / 100.0)
}

#[derive(Debug, Default, Clone)]
struct CpuSnapshot {
    broker: f64,
    hubs: Vec<f64>,
    postgres: f64,
    bench: f64,
    machine_busy: f64,
    machine_total: f64,
}

impl CpuSnapshot {
    fn take(broker: u32, hubs: &[Hub], backends: &[u32]) -> Self {
        let (machine_busy, machine_total) = machine_cpu();
        Self {
            broker: cpu_seconds(broker),
            hubs: hubs.iter().map(|h| cpu_seconds(h.proc.pid())).collect(),
            postgres: backends.iter().map(|&p| cpu_seconds(p)).sum(),
            bench: cpu_seconds(std::process::id()),
            machine_busy,
            machine_total,
        }
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            broker: self.broker - before.broker,
            hubs: self
                .hubs
                .iter()
                .zip(&before.hubs)
                .map(|(a, b)| a - b)
                .collect(),
            postgres: self.postgres - before.postgres,
            bench: self.bench - before.bench,
            machine_busy: self.machine_busy - before.machine_busy,
            machine_total: self.machine_total - before.machine_total,
        }
    }
}

/// Everything one scenario measured.
#[derive(Debug, Default)]
struct Outcome {
    hubs: usize,
    sent: u64,
    offered_rate: f64,
    window_rate: f64,
    slowest_second: u64,
    median_second: u64,
    tail: f64,
    rows_events: i64,
    rows_verification: i64,
    missing: i64,
    extra: i64,
    verification_missing: i64,
    redelivered: u64,
    deadlocks: i64,
    rollbacks: i64,
    inserted_per_hub: Vec<u64>,
    avg_batch: f64,
    insert_latency: [f64; 4],
    visible_latency: [f64; 3],
    visible_samples: usize,
    visible_unseen: usize,
    max_outbox_backlog: u64,
    max_hub_backlog: i64,
    cpu: CpuSnapshot,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Agents {
    outboxes: Vec<Arc<MemoryOutbox>>,
    handles: Vec<Arc<SyncHandle>>,
}

impl Agents {
    fn start(n: usize, broker_port: u16) -> anyhow::Result<Self> {
        let mut outboxes = Vec::new();
        let mut handles = Vec::new();
        for i in 0..n {
            let outbox = Arc::new(MemoryOutbox::new());
            let mut config = SyncConfig::new(
                &format!("mqtt://127.0.0.1:{broker_port}"),
                SITE,
                &format!("agent-{i}"),
                None,
            );
            config.allow_plaintext = true;
            config.production = false;
            let keys = SiteKeyring::new(SITE, SiteKey::generate(1));
            let handle = SyncTask::new(config, keys, outbox.clone(), Arc::new(RefuseTemplates))
                .spawn()
                .context("cannot start a sync task")?;
            outboxes.push(outbox);
            handles.push(Arc::new(handle));
        }
        Ok(Self { outboxes, handles })
    }

    async fn wait_connected(&self, within: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        while !self.handles.iter().all(|h| h.status().connected) {
            if start.elapsed() > within {
                bail!("the simulated agents did not connect to the broker within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    fn backlog(&self) -> u64 {
        self.outboxes
            .iter()
            .map(|o| o.depth().map(|d| d.events).unwrap_or(0))
            .sum()
    }

    async fn stop(self) {
        drop(self.outboxes);
        for h in self.handles {
            if let Ok(h) = Arc::try_unwrap(h) {
                let _ = tokio::time::timeout(Duration::from_secs(5), h.shutdown()).await;
            }
        }
    }
}

/// What the producer thread pushed.
struct Produced {
    ids: Vec<Uuid>,
    started: DateTime<Utc>,
    ended: DateTime<Utc>,
    elapsed: Duration,
}

/// Pushes `rate` events per second, round-robin over the agents, for `seconds`. Every
/// `SAMPLE_EVERY`-th event goes to `samples` for the visibility probe.
fn produce(
    agents: &Agents,
    rate: u64,
    seconds: u64,
    pushed: Arc<AtomicU64>,
    samples: tokio::sync::mpsc::UnboundedSender<(Uuid, DateTime<Utc>)>,
) -> std::thread::JoinHandle<Produced> {
    let outboxes = agents.outboxes.clone();
    let handles = agents.handles.clone();
    std::thread::spawn(move || {
        let n = outboxes.len();
        let devices: Vec<String> = (0..n).map(|i| format!("sim-{i}")).collect();
        let duration = Duration::from_secs(seconds);
        let mut ids = Vec::with_capacity((rate * seconds) as usize);
        let mut touched = vec![false; n];
        let mut sent = 0u64;
        let started = Utc::now();
        let clock = Instant::now();
        loop {
            let elapsed = clock.elapsed();
            if elapsed >= duration {
                break;
            }
            let due = (rate as f64 * elapsed.as_secs_f64()) as u64;
            while sent < due {
                let a = (sent % n as u64) as usize;
                let e = outboxes[a].push(verification(&devices[a]));
                if sent.is_multiple_of(SAMPLE_EVERY) {
                    let _ = samples.send((e.event_id, e.occurred_at));
                }
                ids.push(e.event_id);
                touched[a] = true;
                sent += 1;
            }
            pushed.store(sent, Ordering::Relaxed);
            for (a, t) in touched.iter_mut().enumerate() {
                if std::mem::take(t) {
                    handles[a].outbox_changed();
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Produced {
            ids,
            started,
            ended: Utc::now(),
            elapsed: clock.elapsed(),
        }
    })
}

/// Polls for the sampled event ids until each is committed; returns the latencies in seconds
/// and how many were never seen.
async fn probe_visibility(
    pg: Client,
    mut samples: tokio::sync::mpsc::UnboundedReceiver<(Uuid, DateTime<Utc>)>,
    stop: Arc<AtomicBool>,
) -> (Vec<f64>, usize) {
    let mut pending: Vec<(Uuid, DateTime<Utc>)> = Vec::new();
    let mut seen = Vec::new();
    let Ok(stmt) = pg
        .prepare("SELECT event_id FROM biometric.events WHERE event_id = ANY($1)")
        .await
    else {
        return (seen, 0);
    };
    let mut tick = tokio::time::interval(VISIBILITY_POLL);
    loop {
        tick.tick().await;
        while let Ok(s) = samples.try_recv() {
            pending.push(s);
        }
        if !pending.is_empty() {
            let ids: Vec<Uuid> = pending.iter().map(|(id, _)| *id).collect();
            if let Ok(rows) = pg.query(&stmt, &[&ids]).await {
                let now = Utc::now();
                let found: std::collections::HashSet<Uuid> =
                    rows.iter().map(|r| r.get(0)).collect();
                pending.retain(|(id, at)| {
                    if found.contains(id) {
                        seen.push((now - *at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6);
                        false
                    } else {
                        true
                    }
                });
            }
        }
        if stop.load(Ordering::Relaxed) {
            return (seen, pending.len());
        }
    }
}

async fn count_since(pg: &Client, since: DateTime<Utc>) -> anyhow::Result<i64> {
    Ok(pg
        .query_one(
            "SELECT count(*) FROM biometric.events WHERE occurred_at >= $1",
            &[&since],
        )
        .await?
        .get(0))
}

fn broker_config(port: u16, o: &Options) -> String {
    let mut conf = format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n");
    if let Some(n) = o.broker_inflight {
        conf.push_str(&format!("max_inflight_messages {n}\n"));
    }
    if let Some(n) = o.broker_queue {
        conf.push_str(&format!("max_queued_messages {n}\n"));
    }
    conf
}

async fn scenario(o: &Options, hub_count: usize, admin: &Client) -> anyhow::Result<Outcome> {
    let dir = TempDir::new()?;
    let port = free_port()?;
    let conf = dir.0.join("mosquitto.conf");
    std::fs::write(&conf, broker_config(port, o))?;
    let mut broker = Proc::spawn(
        "mosquitto",
        Command::new(MOSQUITTO).arg("-c").arg(&conf),
        &dir.0.join("mosquitto.log"),
    )?;
    wait_port(port, Duration::from_secs(10)).await?;
    broker.check_running()?;

    let db = format!("apg_hub_bench_{}_{hub_count}", std::process::id());
    for sql in [
        format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        format!("CREATE DATABASE {db}"),
    ] {
        admin
            .batch_execute(&sql)
            .await
            .context("cannot create the bench database")?;
    }
    let result = measure(o, hub_count, &dir.0, port, &db, &mut broker).await;
    if result.is_err() {
        eprintln!("logs kept in {}", dir.0.display());
        std::mem::forget(dir);
    }
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await;
    result
}

async fn measure(
    o: &Options,
    hub_count: usize,
    dir: &Path,
    port: u16,
    db: &str,
    broker: &mut Proc,
) -> anyhow::Result<Outcome> {
    // One after the other: two hubs migrating a fresh database at the same time can collide
    // on CREATE SCHEMA IF NOT EXISTS. A hub connects to the broker only after migrating.
    let mut hubs = Vec::new();
    for i in 0..hub_count {
        let mut hub = start_hub(dir, port, db, i + 1, o.hub_batch)?;
        wait_connected(&mut hub, Duration::from_secs(30)).await?;
        hubs.push(hub);
    }
    // The hub sends its SUBSCRIBE right after the CONNACK.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let db_url = format!("{ADMIN_URL} dbname={db}");
    let pg = connect(&db_url).await?;
    let agents = Agents::start(o.agents, port)?;
    agents.wait_connected(Duration::from_secs(15)).await?;

    // Warm-up: sessions, partitions, prepared plans.
    let warm_start = Utc::now();
    for (i, outbox) in agents.outboxes.iter().enumerate() {
        for _ in 0..WARM_UP_PER_AGENT {
            outbox.push(verification(&format!("sim-{i}")));
        }
        agents.handles[i].outbox_changed();
    }
    let warm = (WARM_UP_PER_AGENT * o.agents) as i64;
    let start = Instant::now();
    while count_since(&pg, warm_start).await? < warm {
        if start.elapsed() > Duration::from_secs(30) {
            bail!(
                "the warm-up events did not reach PostgreSQL within 30 s (hub logs in {})",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let backends: Vec<u32> = pg
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&db],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, i32>(0) as u32)
        .collect();

    println!(
        "\n== {hub_count} hub(s), {} agents, offering {} events/s for {} s",
        o.agents, o.rate, o.seconds
    );
    let cpu_before = CpuSnapshot::take(broker.pid(), &hubs, &backends);
    let pushed = Arc::new(AtomicU64::new(0));
    let (sample_tx, sample_rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(probe_visibility(
        connect(&db_url).await?,
        sample_rx,
        stop.clone(),
    ));
    let producer = produce(&agents, o.rate, o.seconds, pushed.clone(), sample_tx);
    let load_start = Utc::now();

    // Progress once a second (printed every 5 s) while the load runs.
    let mut max_outbox_backlog = 0u64;
    let mut max_hub_backlog = 0i64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut second = 0u64;
    while !producer.is_finished() {
        tick.tick().await;
        second += 1;
        let sent = pushed.load(Ordering::Relaxed);
        let outbox = agents.backlog();
        let stored = count_since(&pg, load_start).await?;
        let at_broker_or_hub = sent as i64 - outbox as i64 - stored;
        max_outbox_backlog = max_outbox_backlog.max(outbox);
        max_hub_backlog = max_hub_backlog.max(at_broker_or_hub);
        if second.is_multiple_of(5) {
            println!(
                "  {second:>4} s  pushed {sent:>8}  in PostgreSQL {stored:>8}  waiting in outboxes {outbox:>7}  at broker/hub {at_broker_or_hub:>7}"
            );
        }
        broker.check_running()?;
        for hub in &mut hubs {
            hub.proc.check_running()?;
        }
    }
    let produced = producer
        .join()
        .map_err(|_| anyhow::anyhow!("the producer thread panicked"))?;
    let cpu = CpuSnapshot::take(broker.pid(), &hubs, &backends).since(&cpu_before);
    let sent = produced.ids.len() as u64;

    // Let the backlog arrive; give up when nothing moves for STALL_TIMEOUT.
    let mut last = -1;
    let mut last_change = Instant::now();
    loop {
        let stored = count_since(&pg, produced.started).await?;
        if stored >= sent as i64 {
            break;
        }
        if stored != last {
            last = stored;
            last_change = Instant::now();
        } else if last_change.elapsed() > STALL_TIMEOUT {
            println!("  no new row for {STALL_TIMEOUT:?}: {stored} of {sent} arrived");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Redeliveries may still be on their way; they must not add rows.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut visible, visible_unseen) = probe.await.unwrap_or_default();
    visible.sort_by(f64::total_cmp);

    let since = produced.started;
    let row = pg
        .query_one(
            "SELECT count(*),
                    count(*) FILTER (WHERE received_at <= $2),
                    count(DISTINCT received_at),
                    percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP
                        (ORDER BY extract(epoch FROM received_at - occurred_at)::float8),
                    max(extract(epoch FROM received_at - occurred_at)::float8),
                    max(received_at)
             FROM biometric.events WHERE occurred_at >= $1",
            &[&since, &produced.ended],
        )
        .await?;
    let rows_events: i64 = row.get(0);
    let in_window: i64 = row.get(1);
    let transactions: i64 = row.get(2);
    let pct: Option<Vec<f64>> = row.get(3);
    let max_latency: Option<f64> = row.get(4);
    let last_received: Option<DateTime<Utc>> = row.get(5);
    let pct = pct.unwrap_or_else(|| vec![f64::NAN; 3]);

    let present: i64 = pg
        .query_one(
            "SELECT count(*) FROM biometric.events WHERE event_id = ANY($1)",
            &[&produced.ids],
        )
        .await?
        .get(0);
    let row = pg
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE event_id = ANY($2))
             FROM biometric.verification_history WHERE created_at >= $1",
            &[&since, &produced.ids],
        )
        .await?;
    let rows_verification: i64 = row.get(0);
    let verification_present: i64 = row.get(1);

    // Per-second arrivals inside the load window, whole seconds only.
    let buckets: Vec<i64> = pg
        .query(
            "SELECT count(*) FROM biometric.events
             WHERE occurred_at >= $1 AND received_at >= date_trunc('second', $1::timestamptz) + interval '1 second'
               AND received_at < date_trunc('second', $2::timestamptz)
             GROUP BY date_trunc('second', received_at) ORDER BY 1",
            &[&since, &produced.ended],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();

    // Failed hub transactions (deadlocks between hubs are retried by the hub).
    let row = pg
        .query_one(
            "SELECT deadlocks, xact_rollback FROM pg_stat_database WHERE datname = $1",
            &[&db],
        )
        .await?;
    let deadlocks: i64 = row.get(0);
    let rollbacks: i64 = row.get(1);

    let mut inserted_per_hub = Vec::new();
    let mut redelivered = 0;
    for hub in &hubs {
        let (_, body) = http_get(hub.health_port, "/metrics").unwrap_or_default();
        inserted_per_hub.push(metric(&body, "apg_hub_events_inserted_total"));
        redelivered += metric(&body, "apg_hub_events_duplicate_total");
    }

    agents.stop().await;
    drop(hubs);

    let seconds = produced.elapsed.as_secs_f64();
    let tail = last_received
        .map(|t| (t - produced.ended).num_milliseconds() as f64 / 1e3)
        .unwrap_or(f64::NAN)
        .max(0.0);
    Ok(Outcome {
        hubs: hub_count,
        sent,
        offered_rate: sent as f64 / seconds,
        window_rate: in_window as f64 / seconds,
        slowest_second: buckets.iter().copied().min().unwrap_or(0) as u64,
        median_second: {
            let mut b = buckets.clone();
            b.sort_unstable();
            b.get(b.len() / 2).copied().unwrap_or(0) as u64
        },
        tail,
        rows_events,
        rows_verification,
        missing: sent as i64 - present,
        extra: rows_events - present,
        verification_missing: sent as i64 - verification_present,
        redelivered,
        deadlocks,
        rollbacks,
        inserted_per_hub,
        avg_batch: rows_events as f64 / transactions.max(1) as f64,
        insert_latency: [pct[0], pct[1], pct[2], max_latency.unwrap_or(f64::NAN)],
        visible_latency: [
            percentile(&visible, 0.5),
            percentile(&visible, 0.95),
            visible.last().copied().unwrap_or(f64::NAN),
        ],
        visible_samples: visible.len(),
        visible_unseen,
        max_outbox_backlog,
        max_hub_backlog,
        cpu,
    })
}

fn broker_limit(n: u32) -> String {
    if n == 0 {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

fn ms(seconds: f64) -> String {
    if seconds.is_nan() {
        "-".into()
    } else {
        format!("{:.0}", seconds * 1e3)
    }
}

fn report(o: &Options, results: &[Outcome]) {
    println!("\nEnd to end: agent outbox -> Mosquitto -> hub -> PostgreSQL");
    println!(
        "{} agents, offered {} events/s for {} s per scenario; broker max_inflight_messages {}, max_queued_messages {}; hub batch.max_events {}",
        o.agents,
        o.rate,
        o.seconds,
        o.broker_inflight.map_or("20 (default)".into(), broker_limit),
        o.broker_queue.map_or("1000 (default)".into(), broker_limit),
        o.hub_batch.map_or("500 (default)".into(), |n| n.to_string()),
    );
    println!("\nThroughput (events/s reaching PostgreSQL)");
    println!(
        "{:>4} | {:>8} | {:>9} | {:>10} | {:>9} | {:>9} | {:>8} | {:>9}",
        "hubs",
        "sent",
        "offered/s",
        "delivered/s",
        "median 1s",
        "slowest 1s",
        "tail s",
        "avg batch"
    );
    for r in results {
        println!(
            "{:>4} | {:>8} | {:>9.0} | {:>11.0} | {:>9} | {:>10} | {:>8.1} | {:>9.1}",
            r.hubs,
            r.sent,
            r.offered_rate,
            r.window_rate,
            r.median_second,
            r.slowest_second,
            r.tail,
            r.avg_batch
        );
    }
    println!("\nLatency, ms (insert: batch transaction start - occurred_at, all events; visible: committed row seen - occurred_at, 1 in {SAMPLE_EVERY})");
    println!(
        "{:>4} | {:>10} | {:>10} | {:>10} | {:>10} | {:>11} | {:>11} | {:>11} | {:>7}",
        "hubs",
        "insert p50",
        "insert p95",
        "insert p99",
        "insert max",
        "visible p50",
        "visible p95",
        "visible max",
        "samples"
    );
    for r in results {
        println!(
            "{:>4} | {:>10} | {:>10} | {:>10} | {:>10} | {:>11} | {:>11} | {:>11} | {:>7}",
            r.hubs,
            ms(r.insert_latency[0]),
            ms(r.insert_latency[1]),
            ms(r.insert_latency[2]),
            ms(r.insert_latency[3]),
            ms(r.visible_latency[0]),
            ms(r.visible_latency[1]),
            ms(r.visible_latency[2]),
            r.visible_samples,
        );
    }
    println!("\nIntegrity (rows for the events pushed during the load)");
    println!(
        "{:>4} | {:>8} | {:>11} | {:>12} | {:>7} | {:>5} | {:>16} | {:>11} | {:>16}",
        "hubs",
        "sent",
        "events rows",
        "verification",
        "missing",
        "extra",
        "verif. missing",
        "redelivered",
        "inserted per hub"
    );
    for r in results {
        let per_hub: Vec<String> = r.inserted_per_hub.iter().map(u64::to_string).collect();
        println!(
            "{:>4} | {:>8} | {:>11} | {:>12} | {:>7} | {:>5} | {:>16} | {:>11} | {:>16}",
            r.hubs,
            r.sent,
            r.rows_events,
            r.rows_verification,
            r.missing,
            r.extra,
            r.verification_missing,
            r.redelivered,
            per_hub.join("/")
        );
    }
    println!(
        "\nBacklog and CPU during the load (CPU seconds over the window; the machine has {} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:>4} | {:>12} | {:>12} | {:>8} | {:>13} | {:>11} | {:>8} | {:>13} | {:>19}",
        "hubs",
        "max outbox",
        "max brkr/hub",
        "broker",
        "hubs",
        "PG backends",
        "bench",
        "machine busy",
        "PG deadlocks/rollbk"
    );
    for r in results {
        let hubs: Vec<String> = r.cpu.hubs.iter().map(|c| format!("{c:.1}")).collect();
        println!(
            "{:>4} | {:>12} | {:>12} | {:>8.1} | {:>13} | {:>11.1} | {:>8.1} | {:>12.0}% | {:>19}",
            r.hubs,
            r.max_outbox_backlog,
            r.max_hub_backlog,
            r.cpu.broker,
            hubs.join("+"),
            r.cpu.postgres,
            r.cpu.bench,
            100.0 * r.cpu.machine_busy / r.cpu.machine_total.max(f64::MIN_POSITIVE),
            format!("{}/{}", r.deadlocks, r.rollbacks),
        );
    }
    println!();
    for r in results {
        let clean = r.missing == 0 && r.extra == 0 && r.verification_missing == 0;
        let verdict = if r.offered_rate < TARGET_RATE * 0.99 {
            format!("not judged (offered {:.0} events/s < 5000)", r.offered_rate)
        } else if r.window_rate >= TARGET_RATE && r.tail < 2.0 && clean {
            "MET".to_owned()
        } else {
            let mut why = Vec::new();
            if r.window_rate < TARGET_RATE {
                why.push(format!("{:.0} events/s delivered", r.window_rate));
            }
            if r.tail >= 2.0 {
                why.push(format!("backlog took {:.1} s to drain", r.tail));
            }
            if !clean {
                why.push("events lost or extra".to_owned());
            }
            format!("NOT MET ({})", why.join(", "))
        };
        println!(
            "target 5,000 events/s sustained, {} hub(s): {verdict}{}",
            r.hubs,
            if r.visible_unseen > 0 {
                format!(" [{} sampled events never seen]", r.visible_unseen)
            } else {
                String::new()
            }
        );
    }
}

fn main() -> std::process::ExitCode {
    let options = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    if !Path::new(HUB_BIN).exists() {
        eprintln!("hub binary {HUB_BIN} is missing: run `cargo build --release -p apg-biometric-hub` (or `cargo bench -p apg-biometric-hub --bench e2e`, which builds it)");
        return std::process::ExitCode::from(2);
    }
    if !Path::new(MOSQUITTO).exists() {
        eprintln!("{MOSQUITTO} is missing: install the Debian package mosquitto");
        return std::process::ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let admin = connect(ADMIN_URL).await?;
        let mut results = Vec::new();
        let mut failed = false;
        for &hubs in &options.hubs {
            match scenario(&options, hubs, &admin).await {
                Ok(r) => {
                    report(&options, std::slice::from_ref(&r));
                    results.push(r);
                }
                Err(e) => {
                    eprintln!("scenario with {hubs} hub(s) failed: {e:#}");
                    failed = true;
                }
            }
        }
        anyhow::Ok((results, failed))
    });
    match result {
        Ok((results, failed)) => {
            if results.len() > 1 {
                println!(
                    "
==== Summary"
                );
                report(&options, &results);
            }
            if failed {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
