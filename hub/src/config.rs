//! `hub.yaml`: broker, database, batching and health endpoint.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// MQTT connection and subscription.
    pub mqtt: MqttConfig,
    /// PostgreSQL connection.
    pub postgres: PostgresConfig,
    /// Batching of inserts.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Address of the health and metrics endpoint (`/health`, `/metrics`).
    #[serde(default = "default_health")]
    pub health_listen: SocketAddr,
}

fn default_health() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9184))
}

/// MQTT settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtts://host:8883`, or `mqtt://host:1883` with `allow_plaintext: true`.
    pub broker_url: String,
    /// Client id: unique per hub instance (the persistent session hangs on it).
    pub client_id: String,
    /// Shared-subscription group: instances with the same group split the events. Empty: one
    /// hub alone, with a plain subscription that Mosquitto keeps across its own restarts.
    #[serde(default = "default_group")]
    pub group: String,
    /// CA bundle that signed the broker certificate.
    pub ca_file: Option<PathBuf>,
    /// The hub's client certificate.
    pub client_cert_file: Option<PathBuf>,
    /// The hub's client key.
    pub client_key_file: Option<PathBuf>,
    /// Allow `mqtt://` (tests and development only).
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Keep-alive in seconds.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
}

fn default_group() -> String {
    "apg-hub".into()
}
fn default_keep_alive() -> u64 {
    10
}

/// PostgreSQL settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// libpq-style connection string, e.g. `host=127.0.0.1 user=hub dbname=apg`.
    pub url: String,
}

/// Batching of inserts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most events per transaction.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    #[serde(default = "default_max_wait")]
    pub max_wait_ms: u64,
}

fn default_max_events() -> usize {
    500
}
fn default_max_wait() -> u64 {
    20
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: default_max_events(),
            max_wait_ms: default_max_wait(),
        }
    }
}

/// Where the broker is.
#[derive(Debug, Clone)]
pub struct Broker {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS on.
    pub tls: bool,
}

impl HubConfig {
    /// Reads and checks `path`.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read hub config {}", path.display()))?;
        let config: HubConfig = serde_yaml_ng::from_str(&text)
            .with_context(|| format!("invalid hub config {}", path.display()))?;
        if config.batch.max_events == 0 {
            bail!("{}: batch.max_events must be at least 1", path.display());
        }
        config.broker()?;
        Ok(config)
    }

    /// Splits `mqtt.broker_url`.
    pub fn broker(&self) -> anyhow::Result<Broker> {
        let url = &self.mqtt.broker_url;
        let (tls, rest, default_port) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r, 8883)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            if !self.mqtt.allow_plaintext {
                bail!("mqtt.broker_url {url}: plain mqtt:// needs mqtt.allow_plaintext: true (never in production); use mqtts://");
            }
            (false, r, 1883)
        } else {
            bail!("mqtt.broker_url {url}: expected mqtts://host:port");
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse()
                    .with_context(|| format!("mqtt.broker_url {url}: bad port {p}"))?,
            ),
            None => (rest.to_owned(), default_port),
        };
        if tls
            && (self.mqtt.ca_file.is_none()
                || self.mqtt.client_cert_file.is_none()
                || self.mqtt.client_key_file.is_none())
        {
            bail!("mqtt.broker_url {url} is mqtts://: set mqtt.ca_file, mqtt.client_cert_file and mqtt.client_key_file");
        }
        Ok(Broker { host, port, tls })
    }
}
