//! Why a connection to the broker failed, in terms an operator can act on.
//!
//! rumqttc reports TLS and MQTT failures as nested errors; [`SyncFailure::classify`] walks the
//! chain and finds the rustls error or CONNACK code underneath. The drain logs a failure when
//! its kind changes and counts repeats quietly, so a broker that refuses the agent's
//! certificate produces one clear line, not one per retry.

use std::{error::Error as StdError, fmt, io};

use rumqttc::{ConnectReturnCode, ConnectionError};
use rustls::{AlertDescription, CertificateError};

/// The kinds of failure an operator can tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The broker's certificate has expired.
    ServerCertificateExpired,
    /// The broker's certificate is not valid yet (or this machine's clock is wrong).
    ServerCertificateNotYetValid,
    /// The broker's certificate is not signed by a CA of `ca_file`.
    UnknownCa,
    /// The broker's certificate does not name the host of the broker URL.
    ServerNameMismatch,
    /// The broker refused this agent's client certificate.
    ClientCertificateRefused,
    /// The broker says this agent's client certificate has expired.
    ClientCertificateExpired,
    /// Any other TLS failure.
    Tls,
    /// The broker refused the username or password.
    BadCredentials,
    /// The broker refused this client (ACL or client id).
    NotAuthorized,
    /// The broker refused the connection for another reason (CONNACK code).
    Refused,
    /// Nothing answers at the broker address, or it did not answer in time.
    BrokerUnreachable,
    /// An established connection was lost.
    ConnectionLost,
    /// The broker sent something this client did not expect.
    Protocol,
    /// The agent's store failed (outbox read, template import): retried after a reconnect.
    StoreUnavailable,
}

impl FailureKind {
    /// Whether the failure needs a person (certificates, credentials), as opposed to a
    /// broker or network that will come back by itself.
    pub fn needs_operator(self) -> bool {
        !matches!(
            self,
            Self::BrokerUnreachable
                | Self::ConnectionLost
                | Self::Protocol
                | Self::StoreUnavailable
        )
    }

    /// What to do about it.
    pub fn remedy(self) -> &'static str {
        match self {
            Self::ServerCertificateExpired => "renew the broker's certificate",
            Self::ServerCertificateNotYetValid => {
                "check this machine's clock (NTP) and the broker certificate's validity period"
            }
            Self::UnknownCa => {
                "put the CA that signed the broker's certificate in sync.ca_file"
            }
            Self::ServerNameMismatch => {
                "use the host name of the broker's certificate in sync.broker_url"
            }
            Self::ClientCertificateRefused => {
                "issue the agent's certificate (sync.client_cert_file) from a CA the broker trusts"
            }
            Self::ClientCertificateExpired => "renew the agent's client certificate",
            Self::Tls => "check the TLS settings of the broker and sync.ca_file, sync.client_cert_file, sync.client_key_file",
            Self::BadCredentials => "check sync.username and sync.password",
            Self::NotAuthorized => "allow this client id and its topics in the broker's ACL",
            Self::Refused => "check the broker's log for why it refused the connection",
            Self::BrokerUnreachable => "check that the broker runs and sync.broker_url is right; retrying",
            Self::ConnectionLost => "retrying; events wait in the outbox",
            Self::Protocol => "check the broker version and its log; retrying",
            Self::StoreUnavailable => "check the agent's store (disk space, database file); retrying",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::ServerCertificateExpired => "broker certificate expired",
            Self::ServerCertificateNotYetValid => "broker certificate not yet valid",
            Self::UnknownCa => "broker certificate signed by an unknown CA",
            Self::ServerNameMismatch => "broker certificate does not match the host name",
            Self::ClientCertificateRefused => "client certificate refused by the broker",
            Self::ClientCertificateExpired => "client certificate expired",
            Self::Tls => "TLS failure",
            Self::BadCredentials => "bad username or password",
            Self::NotAuthorized => "not authorized",
            Self::Refused => "connection refused by the broker",
            Self::BrokerUnreachable => "broker unreachable",
            Self::ConnectionLost => "connection lost",
            Self::Protocol => "MQTT protocol error",
            Self::StoreUnavailable => "agent store unavailable",
        };
        f.write_str(text)
    }
}

/// One classified failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFailure {
    /// The kind.
    pub kind: FailureKind,
    /// The underlying error, for the log.
    pub detail: String,
}

impl SyncFailure {
    /// Classifies a rumqttc error. `was_connected` tells a lost connection from a failed one.
    pub fn classify(error: &ConnectionError, was_connected: bool) -> Self {
        let kind = classify_kind(error, was_connected);
        Self {
            kind,
            detail: error.to_string(),
        }
    }
}

fn classify_kind(error: &ConnectionError, was_connected: bool) -> FailureKind {
    if let ConnectionError::ConnectionRefused(code) = error {
        return match code {
            ConnectReturnCode::BadUserNamePassword => FailureKind::BadCredentials,
            ConnectReturnCode::NotAuthorized => FailureKind::NotAuthorized,
            _ => FailureKind::Refused,
        };
    }
    if let Some(tls) = find_rustls_error(error) {
        return classify_rustls(tls);
    }
    if matches!(error, ConnectionError::NetworkTimeout) && !was_connected {
        return FailureKind::BrokerUnreachable;
    }
    if let Some(io) = find_io_error(error) {
        use io::ErrorKind::*;
        if !was_connected
            && matches!(
                io.kind(),
                ConnectionRefused
                    | TimedOut
                    | HostUnreachable
                    | NetworkUnreachable
                    | NotFound
                    | AddrNotAvailable
            )
        {
            return FailureKind::BrokerUnreachable;
        }
        return FailureKind::ConnectionLost;
    }
    match error {
        ConnectionError::NotConnAck(_) | ConnectionError::MqttState(_) if !was_connected => {
            FailureKind::Protocol
        }
        _ if was_connected => FailureKind::ConnectionLost,
        _ => FailureKind::Protocol,
    }
}

fn classify_rustls(error: &rustls::Error) -> FailureKind {
    match error {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                FailureKind::ServerCertificateExpired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                FailureKind::ServerCertificateNotYetValid
            }
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                FailureKind::UnknownCa
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                FailureKind::ServerNameMismatch
            }
            _ => FailureKind::Tls,
        },
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::CertificateExpired => FailureKind::ClientCertificateExpired,
            AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied
            | AlertDescription::CertificateRequired
            | AlertDescription::DecryptError => FailureKind::ClientCertificateRefused,
            _ => FailureKind::Tls,
        },
        _ => FailureKind::Tls,
    }
}

/// Walks the error chain, looking inside `io::Error`s, for a rustls error.
fn find_rustls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = e
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        current = e.source();
    }
    None
}

fn find_io_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a io::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        current = e.source();
    }
    None
}

/// Logs each failure once per kind: the first failure of a kind at `error` (needs a person) or
/// `warn`, repeats at `debug`, and the recovery at `info`.
#[derive(Debug, Default)]
pub(crate) struct FailureLog {
    last: Option<FailureKind>,
    repeats: u64,
}

impl FailureLog {
    pub fn failed(&mut self, failure: &SyncFailure, broker: &str, retry_in: std::time::Duration) {
        if self.last == Some(failure.kind) {
            self.repeats += 1;
            tracing::debug!(broker, reason = %failure.kind, error = %failure.detail, repeats = self.repeats, retry_in_ms = retry_in.as_millis() as u64, "Broker connection still failing.");
            return;
        }
        self.last = Some(failure.kind);
        self.repeats = 0;
        if failure.kind.needs_operator() {
            tracing::error!(broker, reason = %failure.kind, remedy = failure.kind.remedy(), error = %failure.detail, "Cannot connect to the broker: {}; {}.", failure.kind, failure.kind.remedy());
        } else {
            tracing::warn!(broker, reason = %failure.kind, error = %failure.detail, retry_in_ms = retry_in.as_millis() as u64, "Broker connection failed: {}; {}.", failure.kind, failure.kind.remedy());
        }
    }

    pub fn connected(&mut self, broker: &str) {
        if let Some(kind) = self.last.take() {
            tracing::info!(broker, after = %kind, retries = self.repeats, "Connected to the broker again.");
        } else {
            tracing::info!(broker, "Connected to the broker.");
        }
        self.repeats = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(e: rustls::Error) -> ConnectionError {
        ConnectionError::Io(io::Error::new(io::ErrorKind::InvalidData, e))
    }

    #[test]
    fn an_expired_broker_certificate_is_named() {
        let e = wrapped(rustls::Error::InvalidCertificate(CertificateError::Expired));
        assert_eq!(
            SyncFailure::classify(&e, false).kind,
            FailureKind::ServerCertificateExpired
        );
    }

    #[test]
    fn an_unknown_issuer_is_an_unknown_ca() {
        let e = wrapped(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert_eq!(
            SyncFailure::classify(&e, false).kind,
            FailureKind::UnknownCa
        );
    }

    #[test]
    fn an_unknown_ca_alert_from_the_broker_means_our_certificate_was_refused() {
        let e = wrapped(rustls::Error::AlertReceived(AlertDescription::UnknownCA));
        assert_eq!(
            SyncFailure::classify(&e, false).kind,
            FailureKind::ClientCertificateRefused
        );
    }

    #[test]
    fn connack_codes_map_to_credentials_and_authorization() {
        let bad = ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword);
        assert_eq!(
            SyncFailure::classify(&bad, false).kind,
            FailureKind::BadCredentials
        );
        let na = ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized);
        assert_eq!(
            SyncFailure::classify(&na, false).kind,
            FailureKind::NotAuthorized
        );
    }

    #[test]
    fn a_refused_tcp_connection_is_an_unreachable_broker() {
        let e = ConnectionError::Io(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(
            SyncFailure::classify(&e, false).kind,
            FailureKind::BrokerUnreachable
        );
        assert!(!FailureKind::BrokerUnreachable.needs_operator());
    }
}
