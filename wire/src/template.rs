//! Templates and deletions as they travel between the agents of a site.
//!
//! Both are sealed by the agent where they happened with the site key (AES-256-GCM), which the
//! hub does not hold: the hub stores and forwards them, and only agents of the site can open
//! them. The associated data and the sealing live in `apg-sync`; these are the wire shapes.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{event::Modality, DecodeError};

/// A template encrypted and authenticated under a site key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedTemplate {
    /// Message version.
    #[serde(with = "crate::version")]
    pub version: u32,
    /// Template id (UUIDv7), the same at every agent.
    pub template_id: Uuid,
    /// Subject the template belongs to.
    pub subject_id: Uuid,
    /// Modality of the template.
    pub modality: Modality,
    /// Template format (`iso-19794-2-2005`, `apg-face-embedding`, ...).
    pub format: String,
    /// Version of that format.
    pub format_version: u32,
    /// Site whose key sealed it.
    pub site: String,
    /// Agent where the subject was enrolled.
    pub origin_agent: String,
    /// Version of the site key used.
    pub key_id: u32,
    /// When the template was enrolled (UTC).
    #[serde(with = "crate::time")]
    pub enrolled_at: DateTime<Utc>,
    /// 96-bit GCM nonce, fresh for every sealing.
    #[serde(with = "crate::b64")]
    pub nonce: Vec<u8>,
    /// Ciphertext followed by the 128-bit GCM tag.
    #[serde(with = "crate::b64")]
    pub ciphertext: Vec<u8>,
}

impl SealedTemplate {
    /// Parses a distributed template.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        crate::decode_versioned("template", bytes)
    }

    /// The JSON bytes of this template.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

// Ciphertext is not secret, but it is large and says nothing to a reader of logs.
impl fmt::Debug for SealedTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedTemplate")
            .field("template_id", &self.template_id)
            .field("subject_id", &self.subject_id)
            .field("modality", &self.modality)
            .field("format", &self.format)
            .field("format_version", &self.format_version)
            .field("site", &self.site)
            .field("origin_agent", &self.origin_agent)
            .field("key_id", &self.key_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// The deletion of a subject at one agent, authenticated under a site key so that the other
/// agents of the site can trust it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedDeletion {
    /// Message version.
    #[serde(with = "crate::version")]
    pub version: u32,
    /// Site whose key authenticated it.
    pub site: String,
    /// The deleted subject.
    pub subject_id: Uuid,
    /// Agent where the deletion was made.
    pub origin_agent: String,
    /// When it was deleted (UTC); templates enrolled later are not affected.
    #[serde(with = "crate::time")]
    pub deleted_at: DateTime<Utc>,
    /// Version of the site key used.
    pub key_id: u32,
    /// 96-bit GCM nonce.
    #[serde(with = "crate::b64")]
    pub nonce: Vec<u8>,
    /// 128-bit GCM tag over an empty plaintext and the associated data.
    #[serde(with = "crate::b64")]
    pub tag: Vec<u8>,
}

impl SealedDeletion {
    /// Parses a distributed deletion.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        crate::decode_versioned("deletion", bytes)
    }

    /// The JSON bytes of this deletion.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}
