//! Wire format shared by the apg-biometric agent and hub.
//!
//! Everything that crosses the broker is defined here and nowhere else: the topic scheme
//! ([`topic`]), the agent's events ([`event`]), its retained status ([`status`]), commands from
//! the hub ([`command`]) and the sealed templates and deletions that the hub distributes to the
//! agents of a site ([`template`]). Every message carries a `version`; this crate writes and
//! accepts [`WIRE_VERSION`]. The JSON Schemas in `docs/schemas/` describe the same messages and a
//! test keeps the two in step.
#![warn(missing_docs)]

pub mod b64;
pub mod command;
pub mod event;
pub mod receipt;
pub mod status;
pub mod template;
pub mod time;
pub mod topic;

pub use command::{Command, CommandAction};
pub use event::{
    Audit, Deletion, Device, DeviceState, Enrollment, Event, EventBody, EventType, Health,
    HealthCheck, HealthStatus, Identification, IdentificationDecision, Modality, Verification,
    VerificationDecision,
};
pub use receipt::Receipt;
pub use status::{AgentState, Status};
pub use template::{SealedDeletion, SealedTemplate};
pub use topic::{AgentTopics, ParsedTopic, TopicError};

/// The message version this crate writes and the only one it accepts.
pub const WIRE_VERSION: u32 = 1;

/// Why bytes from the broker are not a message this crate understands.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The payload is not JSON, or does not have the fields of the message.
    #[error("payload is not a valid {message} message: {source}")]
    Malformed {
        /// Which message was expected.
        message: &'static str,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },
    /// The payload declares a version this crate does not know.
    #[error(
        "{message} message has version {found}; this build understands version {WIRE_VERSION} only"
    )]
    UnsupportedVersion {
        /// Which message was expected.
        message: &'static str,
        /// The version in the payload.
        found: u64,
    },
    /// The payload is valid on its own but contradicts its topic or itself.
    #[error("{0}")]
    Inconsistent(String),
}

/// Parses a versioned JSON message, checking the version before the fields so that a message
/// from a newer agent is reported as such rather than as a field error.
pub(crate) fn decode_versioned<T: serde::de::DeserializeOwned>(
    message: &'static str,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    #[derive(serde::Deserialize)]
    struct VersionOnly {
        version: Option<serde_json::Value>,
    }
    if let Ok(VersionOnly {
        version: Some(version),
    }) = serde_json::from_slice::<VersionOnly>(bytes)
    {
        if let Some(found) = version.as_u64() {
            if found != u64::from(WIRE_VERSION) {
                return Err(DecodeError::UnsupportedVersion { message, found });
            }
        }
    }
    serde_json::from_slice(bytes).map_err(|source| DecodeError::Malformed { message, source })
}

/// Serde helper that accepts only [`WIRE_VERSION`].
pub(crate) mod version {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(*v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let v = u32::deserialize(d)?;
        if v != super::WIRE_VERSION {
            return Err(D::Error::custom(format!(
                "unsupported version {v}, expected {}",
                super::WIRE_VERSION
            )));
        }
        Ok(v)
    }
}
