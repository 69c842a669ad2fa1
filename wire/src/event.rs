//! Events an agent reports to the hub, one topic per [`EventType`].

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    template::{SealedDeletion, SealedTemplate},
    DecodeError, WIRE_VERSION,
};

/// The kinds of event, each published on `apg/v1/<site>/<agent>/event/<type>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A 1:1 verification decision.
    Verification,
    /// A 1:N identification decision.
    Identification,
    /// A new template (sealed under the site key).
    Enrollment,
    /// A subject and its templates were deleted.
    Deletion,
    /// A capture device changed state.
    Device,
    /// A periodic health snapshot of the agent.
    Health,
    /// An entry of the agent's hash-chained audit log.
    Audit,
}

impl EventType {
    /// Every event type, in documentation order.
    pub const ALL: [EventType; 7] = [
        Self::Verification,
        Self::Identification,
        Self::Enrollment,
        Self::Deletion,
        Self::Device,
        Self::Health,
        Self::Audit,
    ];

    /// The topic level and `type` field of this event type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verification => "verification",
            Self::Identification => "identification",
            Self::Enrollment => "enrollment",
            Self::Deletion => "deletion",
            Self::Device => "device",
            Self::Health => "health",
            Self::Audit => "audit",
        }
    }

    /// Whether an event of this type records a decision or a change of the enterprise record
    /// and may therefore never be discarded by the outbox policy. Only health snapshots, which
    /// the next snapshot supersedes, may be.
    pub fn is_record(self) -> bool {
        !matches!(self, Self::Health)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown event type {s:?}"))
    }
}

/// Biometric modality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    /// Fingerprint.
    Fingerprint,
    /// Face.
    Face,
    /// Iris.
    Iris,
    /// Palm.
    Palm,
    /// Voice.
    Voice,
    /// Gait.
    Gait,
}

impl Modality {
    /// The lower-case name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fingerprint => "fingerprint",
            Self::Face => "face",
            Self::Iris => "iris",
            Self::Palm => "palm",
            Self::Voice => "voice",
            Self::Gait => "gait",
        }
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event as published: the envelope and its typed body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Message version, always [`WIRE_VERSION`].
    #[serde(with = "crate::version")]
    pub version: u32,
    /// UUIDv7 chosen by the agent when the event was written; the hub drops duplicates by it.
    pub event_id: Uuid,
    /// Site of the agent (same as in the topic).
    pub site: String,
    /// Agent name (same as in the topic).
    pub agent: String,
    /// Position of the event in the agent's outbox: strictly increasing per agent, never reused.
    pub seq: u64,
    /// When the agent made the decision or saw the change (UTC).
    #[serde(with = "crate::time")]
    pub occurred_at: DateTime<Utc>,
    /// The type-specific part: `type` and `payload`.
    #[serde(flatten)]
    pub body: EventBody,
}

impl Event {
    /// The event's type, as in its topic.
    pub fn event_type(&self) -> EventType {
        self.body.event_type()
    }

    /// Parses an event received on a topic of type `expected`, and checks that the envelope
    /// agrees with the topic (site, agent, type).
    pub fn decode(
        bytes: &[u8],
        site: &str,
        agent: &str,
        expected: EventType,
    ) -> Result<Self, DecodeError> {
        let event: Event = crate::decode_versioned("event", bytes)?;
        if event.event_id.get_version_num() != 7 {
            return Err(DecodeError::Inconsistent(format!(
                "event id {} is not a UUIDv7",
                event.event_id
            )));
        }
        if event.site != site || event.agent != agent {
            return Err(DecodeError::Inconsistent(format!(
                "event {} says site {:?} agent {:?} but was published on the topic of site {site:?} agent {agent:?}",
                event.event_id, event.site, event.agent
            )));
        }
        if event.event_type() != expected {
            return Err(DecodeError::Inconsistent(format!(
                "event {} has type {} but was published on the {expected} topic",
                event.event_id,
                event.event_type()
            )));
        }
        event.body.check_consistency(event.event_id, site, agent)?;
        Ok(event)
    }

    /// The JSON bytes of this event.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// An event with a fresh UUIDv7 id and the given fields, at the current version.
    pub fn new(
        site: &str,
        agent: &str,
        seq: u64,
        occurred_at: DateTime<Utc>,
        body: EventBody,
    ) -> Self {
        Self {
            version: WIRE_VERSION,
            event_id: Uuid::now_v7(),
            site: site.to_owned(),
            agent: agent.to_owned(),
            seq,
            occurred_at,
            body,
        }
    }
}

/// The type-specific part of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
pub enum EventBody {
    /// See [`Verification`].
    Verification(Verification),
    /// See [`Identification`].
    Identification(Identification),
    /// See [`Enrollment`].
    Enrollment(Enrollment),
    /// See [`Deletion`].
    Deletion(Deletion),
    /// See [`Device`].
    Device(Device),
    /// See [`Health`].
    Health(Health),
    /// See [`Audit`].
    Audit(Audit),
}

impl EventBody {
    /// The type of this body.
    pub fn event_type(&self) -> EventType {
        match self {
            Self::Verification(_) => EventType::Verification,
            Self::Identification(_) => EventType::Identification,
            Self::Enrollment(_) => EventType::Enrollment,
            Self::Deletion(_) => EventType::Deletion,
            Self::Device(_) => EventType::Device,
            Self::Health(_) => EventType::Health,
            Self::Audit(_) => EventType::Audit,
        }
    }

    /// Checks what the schema cannot: that a sealed template or deletion belongs to the
    /// subject, site and agent of the event that carries it.
    fn check_consistency(
        &self,
        event_id: Uuid,
        site: &str,
        agent: &str,
    ) -> Result<(), DecodeError> {
        let mismatch = |what: &str| {
            Err(DecodeError::Inconsistent(format!(
                "event {event_id}: the sealed {what} does not belong to this event's subject, site and agent"
            )))
        };
        match self {
            Self::Enrollment(e) => {
                let t = &e.template;
                if t.subject_id != e.subject_id
                    || t.modality != e.modality
                    || t.site != site
                    || t.origin_agent != agent
                {
                    return mismatch("template");
                }
            }
            Self::Deletion(d) => {
                let a = &d.authorization;
                if a.subject_id != d.subject_id || a.site != site || a.origin_agent != agent {
                    return mismatch("deletion");
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Outcome of a 1:1 verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationDecision {
    /// The sample matched the subject's template.
    Accepted,
    /// The sample did not match.
    Rejected,
    /// The subject is locked out after too many failures; no comparison was made.
    LockedOut,
    /// No decision: capture, quality, liveness or timeout failure (see `reason`).
    Failed,
}

/// A 1:1 verification decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    /// The claimed subject.
    pub subject_id: Uuid,
    /// Modality used.
    pub modality: Modality,
    /// The decision.
    pub decision: VerificationDecision,
    /// Comparison score, when a comparison was made.
    pub score: Option<f64>,
    /// Threshold in force.
    pub threshold: Option<f64>,
    /// Sample quality (0..1), when measured.
    pub quality: Option<f64>,
    /// Liveness score (0..1), when measured.
    pub liveness: Option<f64>,
    /// Capture device id.
    pub device_id: String,
    /// Time from capture start to decision.
    pub duration_ms: u32,
    /// Request id of the local API call, if any.
    pub request_id: Option<String>,
    /// Why the decision is `failed` or `locked_out`.
    pub reason: Option<String>,
}

/// Outcome of a 1:N identification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentificationDecision {
    /// A subject of the gallery matched.
    Matched,
    /// Nobody in the gallery matched.
    NoMatch,
    /// No decision (see `reason`).
    Failed,
}

/// A 1:N identification decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identification {
    /// Modality used.
    pub modality: Modality,
    /// The decision.
    pub decision: IdentificationDecision,
    /// The matched subject when `matched`.
    pub subject_id: Option<Uuid>,
    /// Best score, when a comparison was made.
    pub score: Option<f64>,
    /// Threshold in force.
    pub threshold: Option<f64>,
    /// Number of templates searched.
    pub gallery_size: u32,
    /// Capture device id.
    pub device_id: String,
    /// Time from capture start to decision.
    pub duration_ms: u32,
    /// Request id of the local API call, if any.
    pub request_id: Option<String>,
    /// Why the decision is `failed`.
    pub reason: Option<String>,
}

/// A new template, sealed under the site key so that other agents of the site can import it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    /// The enrolled subject.
    pub subject_id: Uuid,
    /// Modality of the template.
    pub modality: Modality,
    /// The template, encrypted and authenticated under the site key.
    pub template: SealedTemplate,
    /// Quality of the best capture (0..1).
    pub quality: Option<f64>,
    /// Number of captures that went into the template.
    pub captures: u32,
    /// Capture device id.
    pub device_id: String,
}

/// A subject was deleted at the agent, with every template it had there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deletion {
    /// The deleted subject.
    pub subject_id: Uuid,
    /// Why, as entered by the operator.
    pub reason: Option<String>,
    /// The deletion, authenticated under the site key, for the other agents of the site.
    pub authorization: SealedDeletion,
}

/// State of a capture device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// Plugged in and opened.
    Connected,
    /// Unplugged or closed.
    Disconnected,
    /// Faulty (see `detail`).
    Error,
}

/// A capture device changed state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Device id, as listed by the agent.
    pub device_id: String,
    /// Device family (`fingerprint`, `camera`, `microphone`, `imu`, ...).
    pub family: String,
    /// New state.
    pub state: DeviceState,
    /// Human-readable detail (error text, model name).
    pub detail: Option<String>,
}

/// Overall health of an agent or one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Working.
    Ok,
    /// Working with a problem that needs attention (for example an outbox over its limit).
    Degraded,
    /// Not working.
    Failing,
}

/// One named check of a health snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Check name (`store`, `keys`, `devices`, `outbox`, ...).
    pub name: String,
    /// Result.
    pub status: HealthStatus,
    /// What is wrong and what to do, when not `ok`.
    pub detail: Option<String>,
}

/// A periodic health snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Worst status of the checks.
    pub status: HealthStatus,
    /// Events waiting in the outbox when the snapshot was taken.
    pub outbox_depth: u64,
    /// Whether the outbox is above its configured limit.
    pub outbox_over_limit: bool,
    /// The individual checks.
    pub checks: Vec<HealthCheck>,
}

/// One entry of the agent's hash-chained audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    /// Position of the entry in the agent's audit chain.
    pub sequence: u64,
    /// What was done (`subject.create`, `template.enroll`, `key.rotate`, ...).
    pub action: String,
    /// Who did it (API key name, `system`), if known.
    pub actor: Option<String>,
    /// Subject concerned, if any.
    pub subject_id: Option<Uuid>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// Free text without template bytes or keys.
    pub detail: Option<String>,
    /// Hex SHA-256 of the previous entry (chain link).
    pub previous_hash: String,
    /// Hex SHA-256 of this entry.
    pub entry_hash: String,
}
