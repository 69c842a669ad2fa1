//! The sync path end to end with real components: Mosquitto with a TLS listener that requires
//! client certificates (generated here), the hub binary on a fresh PostgreSQL database, and
//! real agent daemons of one site.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use apg_testkit::{
    broker::{publish_raw, Broker},
    database::Database,
    hub::{Hub, Subscription},
    pki::Authority,
    wait_until,
};
use common::{fvc, AgentProcess, Options, PREFIX};
use nix::sys::signal::Signal;

const SITE: &str = "site1";

/// A broker, a hub and its database, and the site key agents share.
///
/// The hub shares its subscription, as in production. Mosquitto 2.0.11 does not restore shared
/// subscriptions when it restarts, so after a broker restart it accepts (PUBACKs) events that
/// reach no hub; the agent keeps them until the hub's receipt and publishes them again, which
/// the outage and SIGKILL tests exercise.
struct Site {
    dir: tempfile::TempDir,
    ca: Authority,
    broker: Broker,
    db: Database,
    hub: Option<Hub>,
    site_key: PathBuf,
}

impl Site {
    fn start(name: &str, subscription: Subscription) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("apg-sync-test")
            .tempdir()
            .expect("tempdir");
        let ca = Authority::new(dir.path(), "site-ca");
        let broker = Broker::start(dir.path(), &ca);
        let db = Database::create(name);
        let site_key = dir.path().join("site.key");
        let key: String = (0..32).map(|_| format!("{:02x}", rand_byte())).collect();
        std::fs::write(&site_key, format!("1 {key}\n")).expect("write site key");
        set_mode(&site_key, 0o600);
        let mut site = Self {
            dir,
            ca,
            broker,
            db,
            hub: None,
            site_key,
        };
        site.start_hub(subscription);
        wait_until(
            "the hub to migrate its schema",
            Duration::from_secs(30),
            || {
                (site.db.count(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'biometric'",
                &[],
            ) > 0)
                .then_some(())
            },
        );
        site
    }

    /// Agent options for `name` of this site, with a certificate from `ca` (the site's CA
    /// unless a test wants another).
    fn agent_options(&self, name: &str, ca: &Authority, extra_yaml: &str) -> Options {
        let identity = ca.client(name);
        Options {
            agent_id: Some(name.into()),
            site: Some(SITE.into()),
            reader_files: vec![fvc("101_1"), fvc("101_2"), fvc("101_3")],
            extra_yaml: format!(
                "sync:\n  enabled: true\n  broker_url: {url}\n  ca_file: {ca}\n  client_cert_file: {cert}\n  \
                 client_key_file: {key}\n  site_key_file: {site_key}\n\
                 biometric_engines:\n  fingerprint: {{enroll_captures: 3, anti_spoofing: false}}\n{extra_yaml}",
                url = self.broker.url(),
                ca = self.ca.ca_file.display(),
                cert = identity.cert.display(),
                key = identity.key.display(),
                site_key = self.site_key.display(),
            ),
            ..Options::default()
        }
    }

    fn agent(&self, name: &str) -> AgentProcess {
        AgentProcess::start(self.agent_options(name, &self.ca, ""))
    }

    /// Rows of `event_type` from `agent` in the hub's record, and how many distinct ids.
    fn events(&mut self, agent: &str, event_type: &str) -> (i64, i64) {
        let rows = self.db.rows(
            "SELECT count(*), count(DISTINCT event_id) FROM biometric.events \
             WHERE site = $1 AND agent = $2 AND event_type = $3",
            &[&SITE, &agent, &event_type],
        );
        rows.first().map_or((0, 0), |r| (r.get(0), r.get(1)))
    }

    fn wait_events(
        &mut self,
        agent: &str,
        event_type: &str,
        n: i64,
        within: Duration,
    ) -> (i64, i64) {
        let what = format!("{n} {event_type} events from {agent} at the hub");
        wait_until(&what, within, || {
            let c = self.events(agent, event_type);
            (c.0 >= n).then_some(c)
        })
    }

    /// Kills the hub (SIGKILL), as a crash would.
    fn stop_hub(&mut self) {
        self.hub = None;
    }

    /// Starts the hub and waits until it has subscribed: until then the broker would drop
    /// what agents publish.
    fn start_hub(&mut self, subscription: Subscription) {
        let subscribed = |log: &str| {
            log.lines()
                .filter(|l| l.contains(" hub-1 1 ") && l.ends_with("apg/v1/+/+/event/#"))
                .count()
        };
        let before = subscribed(&self.broker.log_text());
        self.hub = Some(Hub::start(
            self.dir.path(),
            "hub-1",
            &self.broker.url(),
            &self.db.url(),
            &self.ca,
            subscription,
        ));
        wait_until(
            "the hub to subscribe again",
            Duration::from_secs(30),
            || (subscribed(&self.broker.log_text()) > before).then_some(()),
        );
    }

    fn hub_log(&self) -> String {
        self.hub
            .as_ref()
            .map(|h| std::fs::read_to_string(&h.log).unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let tail = |text: String| {
                text.lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            eprintln!("--- hub log (tail) ---\n{}", tail(self.hub_log()));
            eprintln!(
                "--- broker log (tail) ---\n{}",
                tail(self.broker.log_text())
            );
        }
    }
}

fn rand_byte() -> u8 {
    let mut b = [0u8; 1];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .expect("read /dev/urandom");
    b[0]
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Verifies alice's genuine sample `times` times at `agent`; each must be accepted.
fn verify_accepted(agent: &AgentProcess, times: usize, when: &str) {
    for i in 0..times {
        let r = agent.verify_file("alice", &fvc("101_6"));
        assert_eq!(
            r.json["decision"], "accepted",
            "verification {i} {when}: {}",
            r.text
        );
    }
}

fn subject_status(agent: &AgentProcess, subject: &str) -> u16 {
    agent
        .socket_request("GET", &format!("{PREFIX}/subjects/{subject}"), None)
        .status
}

fn health_check(agent: &AgentProcess, name: &str) -> serde_json::Value {
    let health = agent.socket_request("GET", &format!("{PREFIX}/health"), None);
    health.json["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no {name} check in {}", health.text))
}

#[test]
fn an_enrollment_at_one_kiosk_opens_every_door_of_the_site_and_a_deletion_closes_them() {
    let mut site = Site::start("sync_distribution", Subscription::Shared("apg-hub"));
    let a = site.agent("kiosk-a");
    let b = site.agent("door-b");

    let enrolled = a.enroll_from_reader("alice");
    assert_eq!(enrolled.status, 201, "enroll at A: {}", enrolled.text);
    let verified = a.verify_file("alice", &fvc("101_6"));
    assert_eq!(verified.json["decision"], "accepted", "{}", verified.text);

    // B receives alice's templates through the hub, sealed under the site key.
    wait_until("alice to reach door-b", Duration::from_secs(60), || {
        (subject_status(&b, "alice") == 200).then_some(())
    });
    let at_b = b.verify_file("alice", &fvc("101_6"));
    assert_eq!(
        at_b.json["decision"], "accepted",
        "verify at B: {}",
        at_b.text
    );
    let impostor = b.verify_file("alice", &fvc("105_1"));
    assert_eq!(impostor.json["decision"], "rejected", "{}", impostor.text);

    // Every event once at the hub.
    assert_eq!(
        site.wait_events("kiosk-a", "enrollment", 3, Duration::from_secs(30)),
        (3, 3)
    );
    assert_eq!(
        site.wait_events("kiosk-a", "verification", 1, Duration::from_secs(30)),
        (1, 1)
    );
    assert_eq!(
        site.wait_events("door-b", "verification", 2, Duration::from_secs(30)),
        (2, 2)
    );
    let templates = site
        .db
        .count("SELECT count(*) FROM biometric.templates", &[]);
    assert_eq!(templates, 3, "the hub keeps the three sealed templates");

    // The hub never sees template bytes in the clear: its copies are sealed JSON.
    let sealed = site
        .db
        .rows("SELECT sealed::text FROM biometric.templates", &[]);
    for row in sealed {
        let text: String = row.get(0);
        assert!(text.contains("ciphertext"), "{text}");
    }

    // Deleting alice at A removes her at B and in PostgreSQL.
    let deleted = a.socket_request("DELETE", &format!("{PREFIX}/subjects/alice"), None);
    assert!(deleted.status < 300, "delete at A: {}", deleted.text);
    wait_until(
        "alice to be deleted at door-b",
        Duration::from_secs(60),
        || (subject_status(&b, "alice") == 404).then_some(()),
    );
    wait_until(
        "alice's templates to leave PostgreSQL",
        Duration::from_secs(30),
        || {
            (site
                .db
                .count("SELECT count(*) FROM biometric.templates", &[])
                == 0)
                .then_some(())
        },
    );
    let refused = b.verify_file("alice", &fvc("101_6"));
    assert_eq!(refused.status, 404, "{}", refused.text);
    assert!(!site.hub_log().contains("panicked"), "{}", site.hub_log());
}

#[test]
fn verifications_during_a_30_second_broker_outage_arrive_once_and_in_order() {
    let mut site = Site::start("sync_outage", Subscription::Shared("apg-hub"));
    let mut a = site.agent("kiosk-a");
    assert_eq!(a.enroll_from_reader("alice").status, 201);

    site.broker.stop();
    let outage = std::time::Instant::now();
    verify_accepted(&a, 500, "during the outage");
    let sync = health_check(&a, "sync");
    assert_eq!(sync["status"], "degraded", "{sync}");
    assert!(
        sync["detail"]
            .as_str()
            .unwrap_or("")
            .contains("not connected"),
        "{sync}"
    );
    // The hub goes down too and comes back only after the agent has published its backlog:
    // Mosquitto 2.0.11 forgets the hub's shared subscription in its restart, so it accepts the
    // backlog and drops it. The agent must notice the missing receipts and publish again.
    site.stop_hub();
    if let Some(rest) = Duration::from_secs(30).checked_sub(outage.elapsed()) {
        std::thread::sleep(rest);
    }
    site.broker.resume();
    wait_until("the agent to reconnect", Duration::from_secs(90), || {
        (health_check(&a, "sync")["detail"]
            .as_str()
            .unwrap_or("")
            .contains("connected to")
            && !health_check(&a, "sync")["detail"]
                .as_str()
                .unwrap_or("")
                .contains("not connected"))
        .then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    site.start_hub(Subscription::Shared("apg-hub"));

    let c = site.wait_events("kiosk-a", "verification", 500, Duration::from_secs(120));
    assert_eq!(c, (500, 500), "all 500 verifications once");
    // In order: by the agent's sequence, the decisions keep their time order, each seq once.
    let rows = site.db.rows(
        "SELECT seq, occurred_at FROM biometric.events WHERE agent = 'kiosk-a' ORDER BY seq",
        &[],
    );
    let seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let times: Vec<chrono::DateTime<chrono::Utc>> = rows.iter().map(|r| r.get(1)).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "each seq once");
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "seq order is decision order"
    );
    assert!(
        a.log_text()
            .contains("publishing every unconfirmed event again"),
        "the agent republished what the broker lost:\n{}",
        a.log_text()
    );
    wait_until(
        "the agent to see the broker again",
        Duration::from_secs(30),
        || (health_check(&a, "sync")["status"] == "ok").then_some(()),
    );
    assert!(a.stop().success());
}

#[test]
fn an_agent_killed_while_draining_loses_and_doubles_nothing() {
    let mut site = Site::start("sync_sigkill", Subscription::Shared("apg-hub"));
    let mut a = site.agent("kiosk-a");
    assert_eq!(a.enroll_from_reader("alice").status, 201);

    site.broker.stop();
    verify_accepted(&a, 300, "during the outage");
    let outbox = rusqlite::Connection::open(&a.db).expect("open the agent's database");
    let depth = || -> i64 {
        outbox
            .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
            .unwrap_or(-1)
    };
    let queued = depth();
    assert!(
        queued >= 300,
        "the outage queued the verifications ({queued} rows)"
    );
    site.broker.resume();
    // Kill the agent while the drain is under way: some rows acknowledged, some not.
    let started = std::time::Instant::now();
    let at_kill = loop {
        let d = depth();
        if d < queued - 50 {
            a.signal(Signal::SIGKILL);
            break d;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the drain did not start"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    a.wait_exit(Duration::from_secs(10));
    let left = depth();
    assert!(
        left > 0,
        "the kill came after the drain had finished ({at_kill} rows at the kill)"
    );
    let before_restart = site.events("kiosk-a", "verification").0;
    a.spawn();
    a.wait_ready(Duration::from_secs(60));

    let c = site.wait_events("kiosk-a", "verification", 300, Duration::from_secs(120));
    assert_eq!(c, (300, 300), "no loss, no duplicate (killed with {left} of {queued} rows unacknowledged, {before_restart} verifications at the hub)");
    eprintln!("killed with {left} of {queued} outbox rows unacknowledged, {before_restart} verifications at the hub");
    let history = site
        .db
        .count("SELECT count(*) FROM biometric.verification_history", &[]);
    assert_eq!(history, 300);
}

#[test]
fn a_client_certificate_from_another_ca_is_refused_and_nothing_is_published() {
    let mut site = Site::start("sync_foreign_ca", Subscription::Shared("apg-hub"));
    let foreign = Authority::new(site.dir.path(), "foreign-ca");
    let mut rogue = AgentProcess::start(site.agent_options("rogue", &foreign, ""));
    assert_eq!(rogue.enroll_from_reader("mallory").status, 201);

    let sync = wait_until(
        "the refusal to show in health",
        Duration::from_secs(30),
        || {
            let c = health_check(&rogue, "sync");
            (c["status"] == "degraded").then_some(c)
        },
    );
    let detail = sync["detail"].as_str().unwrap_or("").to_string();
    assert!(detail.contains("not connected"), "{detail}");
    std::thread::sleep(Duration::from_secs(3));
    let log = rogue.log_text();
    let refusals = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("client certificate refused by the broker"))
        .count();
    assert!(refusals >= 1, "a clear TLS error in the log:\n{log}");
    assert!(
        refusals <= 2,
        "logged once, not in a loop ({refusals} lines):\n{log}"
    );
    assert_eq!(
        site.db.count("SELECT count(*) FROM biometric.events", &[]),
        0,
        "nothing from the rogue agent reaches the hub"
    );
    assert!(
        site.db
            .count("SELECT count(*) FROM biometric.templates", &[])
            == 0
    );
    assert!(rogue.stop().success());
}

#[test]
fn malformed_messages_become_dead_letters_and_the_hub_keeps_consuming() {
    let mut site = Site::start("sync_dead_letters", Subscription::Shared("apg-hub"));
    let intruder = site.ca.client("kiosk-x");
    let topic = format!("apg/v1/{SITE}/kiosk-x/event/verification");
    publish_raw(site.broker.port, &site.ca, &intruder, &topic, b"{not json");
    publish_raw(
        site.broker.port,
        &site.ca,
        &intruder,
        &topic,
        br#"{"version": 99, "event_id": "0190c4a2-0000-7000-8000-000000000000"}"#,
    );
    wait_until("two dead letters", Duration::from_secs(30), || {
        (site
            .db
            .count("SELECT count(*) FROM biometric.dead_letters", &[])
            >= 2)
            .then_some(())
    });
    let reasons: Vec<String> = site
        .db
        .rows("SELECT reason FROM biometric.dead_letters ORDER BY id", &[])
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(reasons.iter().all(|r| !r.is_empty()), "{reasons:?}");

    // The hub is still consuming: a real agent's events arrive.
    let a = site.agent("kiosk-a");
    assert_eq!(a.enroll_from_reader("alice").status, 201);
    assert_eq!(
        site.wait_events("kiosk-a", "enrollment", 3, Duration::from_secs(30)),
        (3, 3)
    );
}

#[test]
fn a_hub_killed_under_load_catches_up_without_loss_or_duplicates() {
    let mut site = Site::start("sync_hub_sigkill", Subscription::Shared("apg-hub"));
    let a = site.agent("kiosk-a");
    assert_eq!(a.enroll_from_reader("alice").status, 201);

    verify_accepted(&a, 100, "before the crash");
    site.stop_hub();
    verify_accepted(&a, 100, "without a hub");
    site.start_hub(Subscription::Shared("apg-hub"));
    verify_accepted(&a, 100, "after the restart");
    let c = site.wait_events("kiosk-a", "verification", 300, Duration::from_secs(120));
    assert_eq!(
        c,
        (300, 300),
        "every verification once after the hub's crash"
    );
    let history = site
        .db
        .count("SELECT count(*) FROM biometric.verification_history", &[]);
    assert_eq!(history, 300);
}

#[test]
fn while_postgresql_refuses_the_hub_nothing_is_acknowledged_and_nothing_lost() {
    let mut site = Site::start("sync_pg_down", Subscription::Shared("apg-hub"));
    let a = site.agent("kiosk-a");
    assert_eq!(a.enroll_from_reader("alice").status, 201);
    site.wait_events("kiosk-a", "enrollment", 3, Duration::from_secs(30));

    // The database goes away for the hub: no new connections, its sessions cut.
    let name = site.db.name.clone();
    site.db
        .admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"));
    site.db.rows(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
        &[],
    );
    verify_accepted(&a, 50, "while the database refuses the hub");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(site.events("kiosk-a", "verification").0, 0);

    site.db
        .admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"));
    let c = site.wait_events("kiosk-a", "verification", 50, Duration::from_secs(90));
    assert_eq!(
        c,
        (50, 50),
        "every verification once when the database is back"
    );
    assert!(
        site.hub_log().contains("PostgreSQL is back"),
        "{}",
        site.hub_log()
    );
}
