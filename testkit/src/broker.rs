//! Mosquitto on a free port with a TLS listener that requires a client certificate from the
//! run's CA. It can be stopped and started again on the same port, keeping its persistence
//! file (sessions, retained messages), as a real broker outage would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::pki::{Authority, Identity};

/// A Mosquitto broker owned by a test.
pub struct Broker {
    /// Port of the TLS listener on 127.0.0.1.
    pub port: u16,
    config: PathBuf,
    /// The broker's log (connections, refusals).
    pub log: PathBuf,
    child: Option<Child>,
}

impl Broker {
    /// Writes the configuration under `dir` and starts the broker.
    pub fn start(dir: &Path, ca: &Authority) -> Self {
        let port = crate::free_port();
        let server: Identity = ca.server();
        let data = dir.join("mosquitto");
        std::fs::create_dir_all(&data).expect("broker data dir");
        open_up(dir);
        open_up(&data);
        let log = data.join("mosquitto.log");
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "per_listener_settings false\n\
                 persistence true\n\
                 persistence_location {data}/\n\
                 log_dest file {log}\n\
                 log_type error\nlog_type warning\nlog_type notice\nlog_type information\nlog_type subscribe\nlog_type unsubscribe\n\
                 allow_anonymous false\n\
                 listener {port} 127.0.0.1\n\
                 cafile {ca}\n\
                 certfile {cert}\n\
                 keyfile {key}\n\
                 require_certificate true\n\
                 use_identity_as_username true\n",
                data = data.display(),
                log = log.display(),
                ca = ca.ca_file.display(),
                cert = server.cert.display(),
                key = server.key.display(),
            ),
        )
        .expect("write mosquitto.conf");
        let mut broker = Self {
            port,
            config,
            log,
            child: None,
        };
        broker.resume();
        broker
    }

    /// The URL agents and hubs connect to.
    pub fn url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.port)
    }

    /// Starts the broker again after [`Broker::stop`].
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the broker is already running");
        let child = Command::new(mosquitto())
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (Debian package mosquitto)");
        self.child = Some(child);
        crate::wait_until("mosquitto to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port))
                .ok()
                .map(drop)
        });
    }

    /// Stops the broker (SIGTERM: it saves its persistence file) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }

    /// The broker's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn mosquitto() -> &'static str {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("mosquitto")
}

/// Mosquitto started as root drops to its own user; let it into the test's directories.
fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777));
}

/// Publishes `payload` on `topic` at QoS 1 as the client `identity` (a certificate from the
/// run's CA) and waits for the PUBACK: for feeding the hub messages no agent would send.
pub fn publish_raw(
    broker_port: u16,
    ca: &Authority,
    identity: &Identity,
    topic: &str,
    payload: &[u8],
) {
    use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport};
    let files = apg_sync::TlsFiles {
        ca_file: ca.ca_file.clone(),
        client_cert_file: identity.cert.clone(),
        client_key_file: identity.key.clone(),
    };
    let tls = apg_sync::tls::client_config(&files).expect("TLS client config");
    let mut options = MqttOptions::new(
        format!("raw-{}", uuid::Uuid::now_v7().simple()),
        "127.0.0.1",
        broker_port,
    );
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        std::sync::Arc::new(tls),
    )));
    let (client, mut connection) = Client::new(options, 10);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
        .expect("queue the publish");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for event in connection.iter() {
        assert!(
            std::time::Instant::now() < deadline,
            "no PUBACK for {topic}"
        );
        match event {
            Ok(Event::Incoming(Packet::PubAck(_))) => break,
            Ok(Event::Outgoing(Outgoing::Publish(_)) | _) => {}
            Err(e) => panic!("publishing to {topic}: {e}"),
        }
    }
    let _ = client.disconnect();
}
