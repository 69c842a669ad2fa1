//! End to end with real components: Mosquitto (started here, plain listener on a free port),
//! a fresh PostgreSQL database, the hub binary, and the agent-side sync task draining an
//! in-memory outbox. Needs the `mosquitto` binary and PostgreSQL at 127.0.0.1:5432 (user
//! postgres, trust auth).

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use apg_sync::{
    MemoryOutbox, OpenedTemplate, SinkError, SiteKey, SiteKeyring, SyncConfig, SyncTask,
    TemplateSink, VerifiedDeletion,
};
use apg_wire::{EventBody, Modality, Verification, VerificationDecision};
use uuid::Uuid;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free local port")
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct NoTemplates;
impl TemplateSink for NoTemplates {
    fn import(&self, t: OpenedTemplate) -> Result<(), SinkError> {
        Err(SinkError::Rejected(format!(
            "this test expects no template, got {}",
            t.template_id
        )))
    }
    fn delete_subject(&self, _: &VerifiedDeletion) -> Result<(), SinkError> {
        Err(SinkError::Rejected("this test expects no deletion".into()))
    }
}

fn start_hub(dir: &std::path::Path, port: u16, db: &str, id: &str) -> Proc {
    let cfg = dir.join(format!("{id}.yaml"));
    std::fs::write(
        &cfg,
        format!(
            "mqtt:\n  broker_url: mqtt://127.0.0.1:{port}\n  client_id: {id}\n  allow_plaintext: true\n\
             postgres:\n  url: host=127.0.0.1 user=postgres dbname={db}\nhealth_listen: 127.0.0.1:{}\n",
            free_port()
        ),
    )
    .expect("write hub config");
    Proc(
        Command::new(env!("CARGO_BIN_EXE_apg-biometric-hub"))
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start apg-biometric-hub"),
    )
}

fn verification() -> EventBody {
    EventBody::Verification(Verification {
        subject_id: Uuid::now_v7(),
        modality: Modality::Fingerprint,
        decision: VerificationDecision::Accepted,
        score: Some(0.9),
        threshold: Some(0.5),
        quality: None,
        liveness: None,
        device_id: "sim-0".into(),
        duration_ms: 12,
        request_id: None,
        reason: None,
    })
}

async fn count(pg: &tokio_postgres::Client) -> (i64, i64) {
    let row = pg
        .query_one(
            "SELECT count(*), count(DISTINCT event_id) FROM biometric.verification_history",
            &[],
        )
        .await
        .expect("count rows");
    (row.get(0), row.get(1))
}

async fn wait_for(pg: &tokio_postgres::Client, n: i64, within: Duration) -> (i64, i64) {
    let start = Instant::now();
    loop {
        let c = count(pg).await;
        if c.0 >= n || start.elapsed() > within {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_once_and_survive_a_hub_sigkill() {
    let dir = std::env::temp_dir().join(format!("apg-hub-e2e-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = free_port();
    std::fs::write(
        dir.join("m.conf"),
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .expect("write mosquitto.conf");
    let _broker = Proc(
        Command::new("mosquitto")
            .arg("-c")
            .arg(dir.join("m.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (Debian package mosquitto)"),
    );
    let db = format!("apg_hub_e2e_{}", std::process::id());
    let (admin, conn) =
        tokio_postgres::connect("host=127.0.0.1 user=postgres", tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL at 127.0.0.1:5432, user postgres, trust auth");
    tokio::spawn(conn);
    for sql in [
        format!("DROP DATABASE IF EXISTS {db}"),
        format!("CREATE DATABASE {db}"),
    ] {
        admin
            .batch_execute(&sql)
            .await
            .expect("create test database");
    }

    let mut hub = start_hub(&dir, port, &db, "hub-e2e-1");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (pg, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 user=postgres dbname={db}"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect to test database");
    tokio::spawn(conn);

    let outbox = Arc::new(MemoryOutbox::new());
    let mut config = SyncConfig::new(
        &format!("mqtt://127.0.0.1:{port}"),
        "site1",
        "agent-a",
        None,
    );
    config.allow_plaintext = true;
    config.production = false;
    config.poll_interval = Duration::from_millis(50);
    let keys = SiteKeyring::new("site1", SiteKey::generate(1));
    let handle = SyncTask::new(config, keys, outbox.clone(), Arc::new(NoTemplates))
        .spawn()
        .expect("start sync");

    for _ in 0..300 {
        outbox.push(verification());
    }
    handle.outbox_changed();
    let c = wait_for(&pg, 300, Duration::from_secs(30)).await;
    assert_eq!(c, (300, 300), "every event once in PostgreSQL");

    // SIGKILL the hub under load, keep producing, restart it: it catches up without loss or
    // duplicate rows.
    for _ in 0..300 {
        outbox.push(verification());
    }
    handle.outbox_changed();
    tokio::time::sleep(Duration::from_millis(30)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(hub.0.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL the hub");
    let _ = hub.0.wait();
    for _ in 0..300 {
        outbox.push(verification());
    }
    handle.outbox_changed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _hub2 = start_hub(&dir, port, &db, "hub-e2e-1");
    let c = wait_for(&pg, 900, Duration::from_secs(60)).await;
    assert_eq!(c, (900, 900), "all 900 events once after the hub restart");

    // In order per agent: seq strictly increasing with event id order.
    let rows = pg
        .query(
            "SELECT seq FROM biometric.events WHERE agent = 'agent-a' ORDER BY seq",
            &[],
        )
        .await
        .expect("read seqs");
    let seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(seqs, (1..=900).collect::<Vec<i64>>());
    // The hub commits a row before it acknowledges it, so the last PUBACKs may still be on
    // their way when PostgreSQL shows all 900: wait for them rather than race them.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let left = loop {
        let left = apg_sync::Outbox::depth(outbox.as_ref())
            .expect("depth")
            .events;
        if left == 0 || std::time::Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(left, 0, "the outbox is drained after PUBACKs");
}
