//! Commands from the hub to one agent on `apg/v1/<site>/<agent>/cmd/<action>`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{DecodeError, WIRE_VERSION};

/// What the hub asks the agent to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandAction {
    /// Publish a health event now.
    ReportHealth,
    /// Publish the retained `online` status again (after a broker lost its retained store).
    RepublishStatus,
}

impl CommandAction {
    /// The topic level of this action.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReportHealth => "report_health",
            Self::RepublishStatus => "republish_status",
        }
    }
}

/// Payload of a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// Message version.
    #[serde(with = "crate::version")]
    pub version: u32,
    /// UUIDv7 of the command, for logs and deduplication.
    pub command_id: Uuid,
    /// When the hub issued it (UTC).
    #[serde(with = "crate::time")]
    pub issued_at: DateTime<Utc>,
    /// What to do; must match the last topic level.
    pub action: CommandAction,
}

impl Command {
    /// A command with a fresh id at the current version.
    pub fn new(action: CommandAction, issued_at: DateTime<Utc>) -> Self {
        Self {
            version: WIRE_VERSION,
            command_id: Uuid::now_v7(),
            issued_at,
            action,
        }
    }

    /// Parses a command received on the topic of `action_level`.
    pub fn decode(bytes: &[u8], action_level: &str) -> Result<Self, DecodeError> {
        let command: Command = crate::decode_versioned("command", bytes)?;
        if command.action.as_str() != action_level {
            return Err(DecodeError::Inconsistent(format!(
                "command {} asks for {} but was published on the cmd/{action_level} topic",
                command.command_id,
                command.action.as_str()
            )));
        }
        Ok(command)
    }

    /// The JSON bytes of this command.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}
