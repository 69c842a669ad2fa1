//! Agent-side MQTT sync for apg-biometric.
//!
//! [`SyncTask`] drains the agent's transactional outbox to the broker over mutual TLS (QoS 1,
//! persistent session, rows deleted only after their PUBACK), keeps a retained status topic
//! with a last will, and imports templates and deletions distributed by the hub, after checking
//! them under the site key ([`seal`]).

pub mod backoff;
pub mod config;
mod drain;
pub mod failure;
mod inbound;
pub mod outbox;
pub mod seal;
pub mod sink;
pub mod status;
pub mod tls;

pub use config::{Credentials, SyncConfig, SyncConfigError, TlsFiles};
pub use drain::{OutboxWaker, SyncHandle, SyncTask};
pub use failure::{FailureKind, SyncFailure};
pub use outbox::{MemoryOutbox, Outbox, OutboxDepth, OutboxError, OutboxEvent};
pub use seal::{OpenedTemplate, SiteKey, SiteKeyring, VerifiedDeletion};
pub use sink::{SinkError, TemplateSink};
pub use status::SyncStatus;
