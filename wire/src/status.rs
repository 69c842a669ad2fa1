//! The retained status of an agent: `online` on connect, `offline` as its last will.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{DecodeError, WIRE_VERSION};

/// Whether the agent is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Connected to the broker.
    Online,
    /// Disconnected (published by the broker as the last will, or by the agent on shutdown).
    Offline,
}

/// Payload of `apg/v1/<site>/<agent>/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// Message version.
    #[serde(with = "crate::version")]
    pub version: u32,
    /// Site of the agent.
    pub site: String,
    /// Agent name.
    pub agent: String,
    /// The state.
    pub state: AgentState,
    /// When the agent connected (for `online`) or when it set its last will or shut down
    /// (for `offline`).
    #[serde(with = "crate::time")]
    pub since: DateTime<Utc>,
}

impl Status {
    /// A status message at the current version.
    pub fn new(site: &str, agent: &str, state: AgentState, since: DateTime<Utc>) -> Self {
        Self {
            version: WIRE_VERSION,
            site: site.to_owned(),
            agent: agent.to_owned(),
            state,
            since,
        }
    }

    /// Parses a status message.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        crate::decode_versioned("status", bytes)
    }

    /// The JSON bytes of this status.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}
