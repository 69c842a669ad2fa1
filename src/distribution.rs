//! Template distribution between the agents of a site.
//!
//! An enrollment here is queued as an `enrollment` event whose template is sealed under the
//! **site key** (which the hub never holds); the hub forwards it to the other agents of the
//! site, which open it, check every binding, and store it under their own data key. Deletions
//! travel the same way, authenticated with the site key.
//!
//! The sealed plaintext is a small envelope of ours, so that the subject's external id and
//! name travel end to end encrypted too:
//!
//! ```text
//! u8      envelope version (1)
//! u16 BE  external id length, then the external id (UTF-8)
//! u16 BE  display name length (0 = none), then the name (UTF-8)
//! ...     the engine template
//! ```

use std::path::Path;

use apg_sync::seal::{seal_deletion, seal_template, SiteKey, SiteKeyring, TemplateToSeal};
use apg_wire::EventBody;
use rusqlite::Transaction;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::agent::Agent;
use crate::decision::DecisionError;
use crate::events::{self, wire_modality};
use crate::store::subjects;
use crate::store::templates::TemplateRow;

const ENVELOPE_VERSION: u8 = 1;

/// Why the site key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SiteKeyError {
    /// The file cannot be read.
    #[error("cannot read site key file {path}: {error}; it is set by sync.site_key_file")]
    Read {
        /// File.
        path: String,
        /// Cause.
        error: std::io::Error,
    },
    /// A line is not `<key id> <64 hex>` or `<64 hex>`.
    #[error("site key file {path} line {line}: expected `<key id> <64 hexadecimal characters>` (or just the 64 characters for key id 1)")]
    Format {
        /// File.
        path: String,
        /// 1-based line number.
        line: usize,
    },
    /// The file holds no key.
    #[error(
        "site key file {path} holds no key; every agent of site {site} needs the same site key"
    )]
    Empty {
        /// File.
        path: String,
        /// Site.
        site: String,
    },
    /// Group or others may read it.
    #[error("site key file {path} has mode {mode:04o}; run `chmod 600 {path}`")]
    TooOpen {
        /// File.
        path: String,
        /// Mode.
        mode: u32,
    },
}

/// Reads the site keys: one `<key id> <hex>` per line, the highest id sealing new messages and
/// every listed id opening received ones (so a site can roll its key agent by agent).
pub fn load_site_keys(path: &Path, site: &str, strict: bool) -> Result<SiteKeyring, SiteKeyError> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|error| SiteKeyError::Read {
        path: shown.clone(),
        error,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if strict && mode & 0o077 != 0 {
        return Err(SiteKeyError::TooOpen { path: shown, mode });
    }
    let text =
        Zeroizing::new(
            std::fs::read_to_string(path).map_err(|error| SiteKeyError::Read {
                path: shown.clone(),
                error,
            })?,
        );
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || SiteKeyError::Format {
            path: shown.clone(),
            line: n + 1,
        };
        let (id, hex_key) = match line.split_once(char::is_whitespace) {
            Some((id, key)) => (id.parse::<u32>().map_err(|_| bad())?, key.trim()),
            None => (1, line),
        };
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_key, bytes.as_mut()).map_err(|_| bad())?;
        keys.push(SiteKey::from_bytes(id, bytes.as_ref()).map_err(|_| bad())?);
    }
    keys.sort_by_key(SiteKey::key_id);
    let current = keys.pop().ok_or(SiteKeyError::Empty {
        path: shown,
        site: site.to_string(),
    })?;
    Ok(keys
        .into_iter()
        .fold(SiteKeyring::new(site, current), SiteKeyring::with_key))
}

/// Splits `apg-fp/1` into (`apg-fp`, 1).
fn split_format(format: &str) -> (&str, u32) {
    match format.rsplit_once('/') {
        Some((name, version)) => (name, version.parse().unwrap_or(1)),
        None => (format, 1),
    }
}

/// Wraps a template with the subject's identity for distribution.
pub fn envelope(
    external_id: &str,
    display_name: Option<&str>,
    template: &[u8],
) -> Zeroizing<Vec<u8>> {
    let name = display_name.unwrap_or("");
    let mut out = Vec::with_capacity(5 + external_id.len() + name.len() + template.len());
    out.push(ENVELOPE_VERSION);
    for field in [external_id, name] {
        out.extend_from_slice(&(field.len().min(u16::MAX as usize) as u16).to_be_bytes());
        out.extend_from_slice(&field.as_bytes()[..field.len().min(u16::MAX as usize)]);
    }
    out.extend_from_slice(template);
    Zeroizing::new(out)
}

/// The parts of an opened envelope.
pub struct Unwrapped<'a> {
    /// Subject external id.
    pub external_id: String,
    /// Display name, if any.
    pub display_name: Option<String>,
    /// Engine template.
    pub template: &'a [u8],
}

/// Reads an envelope; `None` when it is malformed.
pub fn open_envelope(bytes: &[u8]) -> Option<Unwrapped<'_>> {
    let (&version, mut rest) = bytes.split_first()?;
    if version != ENVELOPE_VERSION {
        return None;
    }
    let mut field = || -> Option<String> {
        let len = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
        let text = std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_string();
        rest = &rest[2 + len..];
        Some(text)
    };
    let external_id = field()?;
    let name = field()?;
    if external_id.is_empty() {
        return None;
    }
    Some(Unwrapped {
        external_id,
        display_name: (!name.is_empty()).then_some(name),
        template: rest,
    })
}

/// Queues the enrollment event of one stored template (nothing when sync is off).
pub fn queue_enrollment(
    tx: &Transaction<'_>,
    agent: &Agent,
    row: &TemplateRow,
    plaintext: &[u8],
    captures: u32,
    device_id: Option<&str>,
) -> Result<(), DecisionError> {
    let origin = agent.origin();
    let Some(keys) = agent.site_keys() else {
        return Ok(());
    };
    if !origin.enabled {
        return Ok(());
    }
    let subject =
        subjects::by_id(tx, row.subject_id)?.ok_or_else(|| crate::store::StoreError::NotFound {
            what: format!("subject {}", row.subject_id),
        })?;
    let modality: crate::modality::Modality =
        row.modality.parse().map_err(|m| DecisionError::Invalid {
            field: "modality".into(),
            message: m,
        })?;
    let (format, format_version) = split_format(&row.format);
    let meta = TemplateToSeal {
        template_id: row.id,
        subject_id: row.subject_id,
        modality: wire_modality(modality),
        format: format.to_string(),
        format_version,
        origin_agent: row.origin_agent.clone(),
        enrolled_at: crate::store::parse_time(&row.created_at).unwrap_or_else(chrono::Utc::now),
    };
    let plain = envelope(
        &subject.external_id,
        subject.display_name.as_deref(),
        plaintext,
    );
    let sealed = seal_template(&keys, &meta, &plain);
    events::queue(
        tx,
        &origin,
        EventBody::Enrollment(apg_wire::Enrollment {
            subject_id: row.subject_id,
            modality: wire_modality(modality),
            template: sealed,
            quality: Some(row.quality),
            captures,
            device_id: device_id.unwrap_or("upload").to_string(),
        }),
    )?;
    Ok(())
}

/// Queues the deletion event of a subject (nothing when sync is off).
pub fn queue_deletion(
    tx: &Transaction<'_>,
    agent: &Agent,
    subject_id: Uuid,
) -> Result<(), DecisionError> {
    let origin = agent.origin();
    let Some(keys) = agent.site_keys() else {
        return Ok(());
    };
    if !origin.enabled {
        return Ok(());
    }
    let authorization = seal_deletion(&keys, subject_id, &origin.agent, chrono::Utc::now());
    events::queue(
        tx,
        &origin,
        EventBody::Deletion(apg_wire::Deletion {
            subject_id,
            reason: None,
            authorization,
        }),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_round_trips_and_garbage_is_refused() {
        let bytes = envelope("alice", Some("Alice A."), b"\x01\x02template");
        let u = open_envelope(&bytes).unwrap();
        assert_eq!(u.external_id, "alice");
        assert_eq!(u.display_name.as_deref(), Some("Alice A."));
        assert_eq!(u.template, b"\x01\x02template");
        assert!(open_envelope(&bytes[..4]).is_none());
        assert!(open_envelope(b"").is_none());
        assert!(open_envelope(&[2, 0, 1, b'a', 0, 0]).is_none());
    }

    #[test]
    fn site_key_files_list_versions_and_the_highest_seals() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.key");
        std::fs::write(
            &path,
            format!(
                "# site keys\n1 {}\n2 {}\n",
                "11".repeat(32),
                "22".repeat(32)
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ring = load_site_keys(&path, "site-1", true).unwrap();
        let sealed = seal_deletion(&ring, Uuid::now_v7(), "a", chrono::Utc::now());
        assert_eq!(sealed.key_id, 2);
        std::fs::write(&path, "2 nothex\n").unwrap();
        let err = load_site_keys(&path, "site-1", true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
