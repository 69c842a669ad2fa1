//! The hub binary, started with a configuration for the test's broker and database.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::pki::Authority;

/// Where cargo put `apg-biometric-hub` for this build: beside the test executable's `deps/`.
pub fn hub_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable under target/<profile>/deps");
    let binary = profile_dir.join("apg-biometric-hub");
    assert!(
        binary.exists(),
        "{} is missing; build it first: cargo build -p apg-biometric-hub (cargo test --workspace does)",
        binary.display()
    );
    binary
}

/// How a hub subscribes to the agents' events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// A shared subscription in this group: several hubs split the events.
    Shared(&'static str),
    /// One hub alone, with a plain persistent subscription (Mosquitto keeps it across its own
    /// restarts, which it does not do for shared subscriptions).
    Exclusive,
}

/// A running hub instance.
pub struct Hub {
    child: Child,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
}

impl Hub {
    /// Starts hub instance `id` (its MQTT client id) on `broker_url` and `database_url`,
    /// with a client certificate from `ca`.
    pub fn start(
        dir: &Path,
        id: &str,
        broker_url: &str,
        database_url: &str,
        ca: &Authority,
        subscription: Subscription,
    ) -> Self {
        let group = match subscription {
            Subscription::Shared(group) => group,
            Subscription::Exclusive => "",
        };
        let identity = ca.client(id);
        let config = dir.join(format!("{id}.yaml"));
        std::fs::write(
            &config,
            format!(
                "mqtt:\n  broker_url: {broker_url}\n  client_id: {id}\n  group: \"{group}\"\n  ca_file: {ca}\n  \
                 client_cert_file: {cert}\n  client_key_file: {key}\n\
                 postgres:\n  url: {database_url}\n\
                 health_listen: 127.0.0.1:{health}\n",
                ca = ca.ca_file.display(),
                cert = identity.cert.display(),
                key = identity.key.display(),
                health = crate::free_port(),
            ),
        )
        .expect("write hub config");
        let log = dir.join(format!("{id}.log"));
        let file = std::fs::File::create(&log).expect("hub log file");
        let child = Command::new(hub_binary())
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(file.try_clone().expect("hub log file"))
            .stderr(file)
            .spawn()
            .expect("start apg-biometric-hub");
        Self { child, log }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill();
    }
}
