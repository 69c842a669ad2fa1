//! Receipts from the hub to one agent on `apg/v1/<site>/<agent>/receipt`.
//!
//! A PUBACK only says the broker has a message; a broker that loses it afterwards (a shared
//! subscription forgotten in a restart, a full session queue) would lose the event. So the
//! agent keeps each outbox row until the hub's receipt says the event is committed in
//! PostgreSQL, and publishes it again when no receipt comes.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{DecodeError, WIRE_VERSION};

/// Event ids the hub has committed (new or already there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Message version.
    #[serde(with = "crate::version")]
    pub version: u32,
    /// Committed events of this agent.
    pub event_ids: Vec<Uuid>,
}

impl Receipt {
    /// A receipt for `event_ids`, at the current version.
    pub fn new(event_ids: Vec<Uuid>) -> Self {
        Self {
            version: WIRE_VERSION,
            event_ids,
        }
    }

    /// Parses a receipt.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        crate::decode_versioned("receipt", bytes)
    }

    /// The JSON bytes of this receipt.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}
