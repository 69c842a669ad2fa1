//! What the sync task needs to know, as the agent's `sync` config section provides it.

use std::{fmt, path::PathBuf, sync::Arc, time::Duration};

use apg_wire::topic::validate_name;
use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};

use crate::tls;

/// Files for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM bundle of the certificate authorities that may sign the broker's certificate.
    pub ca_file: PathBuf,
    /// PEM certificate chain of this agent.
    pub client_cert_file: PathBuf,
    /// PEM private key of this agent (PKCS#8, PKCS#1 or SEC1).
    pub client_key_file: PathBuf,
}

/// Username and password, for brokers that want them in addition to the client certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// MQTT username.
    pub username: String,
    /// MQTT password (never printed).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Configuration of the sync task.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// `mqtts://host:8883` (port defaults to 8883), or `mqtt://host:1883` when
    /// `allow_plaintext` is set and `production` is not.
    pub broker_url: String,
    /// The config explicitly allows a plain-text broker URL.
    pub allow_plaintext: bool,
    /// The agent runs with the production profile: plain text is refused whatever the config.
    pub production: bool,
    /// Site name (a topic level).
    pub site: String,
    /// Agent name (a topic level); the MQTT client id is `apg-<site>-<agent>`.
    pub agent: String,
    /// Certificates for mutual TLS; required with `mqtts://`.
    pub tls: Option<TlsFiles>,
    /// Optional username and password.
    pub credentials: Option<Credentials>,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Publishes awaiting their PUBACK at most.
    pub max_in_flight: u16,
    /// Events read from the outbox per call.
    pub batch_size: usize,
    /// Outbox depth above which the agent reports `degraded` and discards superseded health
    /// snapshots (never any other event).
    pub outbox_limit: u64,
    /// First reconnection delay.
    pub backoff_initial: Duration,
    /// Longest reconnection delay.
    pub backoff_max: Duration,
    /// How often the drain looks at the outbox without being notified, and checks its depth.
    pub poll_interval: Duration,
    /// Largest distributed template accepted, in bytes of JSON.
    pub max_message_bytes: usize,
    /// How long after its PUBACK an event may wait for the hub's receipt before the drain
    /// publishes the unconfirmed events again.
    pub receipt_timeout: Duration,
}

impl SyncConfig {
    /// A configuration with the documented defaults for everything but the broker and names.
    pub fn new(broker_url: &str, site: &str, agent: &str, tls: Option<TlsFiles>) -> Self {
        Self {
            broker_url: broker_url.to_owned(),
            allow_plaintext: false,
            production: true,
            site: site.to_owned(),
            agent: agent.to_owned(),
            tls,
            credentials: None,
            keep_alive: Duration::from_secs(30),
            max_in_flight: 256,
            batch_size: 512,
            outbox_limit: 100_000,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            max_message_bytes: 1 << 20,
            receipt_timeout: Duration::from_secs(30),
        }
    }

    /// The MQTT client id, which names the persistent session at the broker.
    pub fn client_id(&self) -> String {
        format!("apg-{}-{}", self.site, self.agent)
    }
}

/// A configuration the sync task cannot start with. Each names the `sync.*` key to fix.
#[derive(Debug, thiserror::Error)]
pub enum SyncConfigError {
    /// The broker URL cannot be parsed or has the wrong scheme.
    #[error("sync.broker_url {url:?}: {reason}")]
    BrokerUrl {
        /// The URL.
        url: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// A site or agent name that cannot be a topic level.
    #[error("sync.{key}: {source}")]
    Name {
        /// `site` or `agent`.
        key: &'static str,
        /// Why.
        #[source]
        source: apg_wire::TopicError,
    },
    /// `mqtts://` without certificates.
    #[error(
        "sync: mqtts:// needs sync.ca_file, sync.client_cert_file and sync.client_key_file for mutual TLS"
    )]
    TlsMissing,
    /// A certificate or key file that cannot be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A numeric setting out of range.
    #[error("sync.{key} = {value}: {allowed}")]
    OutOfRange {
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
}

/// Broker address taken from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BrokerAddress {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

pub(crate) fn parse_broker_url(config: &SyncConfig) -> Result<BrokerAddress, SyncConfigError> {
    let bad = |reason: String| SyncConfigError::BrokerUrl {
        url: config.broker_url.clone(),
        reason,
    };
    let url = url::Url::parse(&config.broker_url).map_err(|e| bad(e.to_string()))?;
    let tls = match url.scheme() {
        "mqtts" => true,
        "mqtt" if config.production => {
            return Err(bad(
                "plain-text mqtt:// is refused in production; use mqtts://host:8883".into(),
            ))
        }
        "mqtt" if !config.allow_plaintext => {
            return Err(bad(
                "plain-text mqtt:// must be allowed explicitly (sync.allow_plaintext: true, outside production); use mqtts://host:8883".into(),
            ))
        }
        "mqtt" => false,
        other => return Err(bad(format!("scheme {other:?} is not supported; use mqtts://"))),
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("the URL has no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if !url.path().is_empty() && url.path() != "/" {
        return Err(bad("the URL must not have a path".into()));
    }
    let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
    Ok(BrokerAddress { host, port, tls })
}

/// Checks the configuration and builds the rumqttc options (with the last will) from it.
pub(crate) fn mqtt_options(
    config: &SyncConfig,
    last_will_payload: Vec<u8>,
    status_topic: String,
) -> Result<MqttOptions, SyncConfigError> {
    validate_name("site", &config.site).map_err(|source| SyncConfigError::Name {
        key: "site",
        source,
    })?;
    validate_name("agent", &config.agent).map_err(|source| SyncConfigError::Name {
        key: "agent",
        source,
    })?;
    if config.max_in_flight == 0 {
        return Err(SyncConfigError::OutOfRange {
            key: "max_in_flight",
            value: "0".into(),
            allowed: "1 to 65535",
        });
    }
    if config.batch_size == 0 {
        return Err(SyncConfigError::OutOfRange {
            key: "batch_size",
            value: "0".into(),
            allowed: "at least 1",
        });
    }
    if config.keep_alive < Duration::from_secs(1) {
        return Err(SyncConfigError::OutOfRange {
            key: "keep_alive",
            value: format!("{:?}", config.keep_alive),
            allowed: "at least 1 s",
        });
    }
    let address = parse_broker_url(config)?;
    let mut options = MqttOptions::new(config.client_id(), address.host, address.port);
    options
        .set_clean_session(false)
        .set_keep_alive(config.keep_alive)
        // rumqttc numbers packets up to this; keep it above our window so a packet id is
        // never reused while its publish still waits for a PUBACK.
        .set_inflight(
            config
                .max_in_flight
                .saturating_mul(2)
                .max(config.max_in_flight),
        )
        .set_max_packet_size(config.max_message_bytes, config.max_message_bytes)
        .set_manual_acks(true)
        .set_last_will(LastWill::new(
            status_topic,
            last_will_payload,
            QoS::AtLeastOnce,
            true,
        ));
    if let Some(c) = &config.credentials {
        options.set_credentials(c.username.clone(), c.password.clone());
    }
    if address.tls {
        let files = config.tls.as_ref().ok_or(SyncConfigError::TlsMissing)?;
        let client_config = tls::client_config(files)?;
        options.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(
            client_config,
        ))));
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> SyncConfig {
        SyncConfig::new(url, "hq", "kiosk-1", None)
    }

    #[test]
    fn mqtts_defaults_to_port_8883() {
        let a = parse_broker_url(&config("mqtts://broker.local")).unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.tls),
            ("broker.local", 8883, true)
        );
    }

    #[test]
    fn plain_mqtt_is_refused_unless_allowed_outside_production() {
        let mut c = config("mqtt://127.0.0.1:1883");
        let err = parse_broker_url(&c).unwrap_err().to_string();
        assert!(err.contains("production"), "{err}");
        c.production = false;
        let err = parse_broker_url(&c).unwrap_err().to_string();
        assert!(err.contains("allow_plaintext"), "{err}");
        c.allow_plaintext = true;
        assert!(!parse_broker_url(&c).unwrap().tls);
        c.production = true;
        assert!(parse_broker_url(&c).is_err());
    }

    #[test]
    fn mqtts_without_certificates_names_the_missing_files() {
        let err = mqtt_options(&config("mqtts://b:8883"), vec![], "t".into()).unwrap_err();
        assert!(err.to_string().contains("client_cert_file"), "{err}");
    }

    #[test]
    fn other_schemes_are_refused_with_the_key_name() {
        let err = parse_broker_url(&config("http://b"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("sync.broker_url"), "{err}");
    }

    #[test]
    fn credentials_never_print_the_password() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
