//! The append-only audit log.
//!
//! Each entry carries an HMAC-SHA256 over its own fields and the previous entry's MAC, under a
//! key derived from the master key. Triggers refuse UPDATE and DELETE; and anyone who edits the
//! file directly cannot recompute the chain without the master key, so `audit verify` finds
//! any altered, removed or inserted entry.

use hmac::{Hmac, Mac};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;
use sha2::Sha256;
use uuid::Uuid;

use super::{StoreError, StoreResult};

/// MAC of the (virtual) entry before the first one.
pub const GENESIS_MAC: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry as appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Entry id (UUIDv7).
    pub id: Uuid,
    /// RFC 3339.
    pub created_at: String,
    /// Who: `api-key:<name>`, `cli:uid=<n>`, `agent` (automatic actions) or `hub`.
    pub actor: String,
    /// What: `subject.create`, `enroll`, `verify`, `template.corrupt`, ...
    pub action: String,
    /// About whom, when a subject is concerned.
    pub subject_id: Option<Uuid>,
    /// JSON object with details; never template or key bytes.
    pub detail: serde_json::Value,
}

/// Result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Entries checked.
    pub entries: u64,
    /// Sequence numbers whose MAC or link does not check, in order.
    pub broken: Vec<i64>,
}

impl ChainReport {
    /// True when every entry checks.
    pub fn intact(&self) -> bool {
        self.broken.is_empty()
    }
}

/// The MAC covers the detail exactly as stored: re-serialising parsed JSON need not give the
/// same text (floats do not always round-trip), which would break an untouched chain.
fn mac_of(key: &[u8; 32], prev_mac: &str, seq: i64, e: &AuditEntry, detail: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    let subject = e.subject_id.map(|s| s.to_string()).unwrap_or_default();
    // Length-prefix every field so that no two different entries encode alike.
    for field in [
        prev_mac,
        &seq.to_string(),
        &e.id.to_string(),
        &e.created_at,
        &e.actor,
        &e.action,
        &subject,
        detail,
    ] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Where an appended entry landed in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Sequence number.
    pub seq: i64,
    /// MAC of the entry before it.
    pub prev_mac: String,
    /// MAC of this entry.
    pub mac: String,
}

/// Appends an entry to the chain inside the caller's transaction.
pub fn append(tx: &Transaction<'_>, key: &[u8; 32], entry: &AuditEntry) -> StoreResult<Appended> {
    let last: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql)?;
    let (seq, prev_mac) = match last {
        Some((seq, mac)) => (seq + 1, mac),
        None => (1, GENESIS_MAC.to_string()),
    };
    let detail = entry.detail.to_string();
    let mac = mac_of(key, &prev_mac, seq, entry, &detail);
    tx.execute(
        "INSERT INTO audit_log (seq, id, created_at, actor, action, subject_id, detail, prev_mac, mac)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            seq,
            entry.id.to_string(),
            entry.created_at,
            entry.actor,
            entry.action,
            entry.subject_id.map(|s| s.to_string()),
            detail,
            prev_mac,
            mac
        ],
    )
    .map_err(sql)?;
    Ok(Appended { seq, prev_mac, mac })
}

/// Walks the whole chain and reports every entry that does not check.
pub fn verify(conn: &Connection, key: &[u8; 32]) -> StoreResult<ChainReport> {
    let mut stmt = conn
        .prepare("SELECT seq, id, created_at, actor, action, subject_id, detail, prev_mac, mac FROM audit_log ORDER BY seq")
        .map_err(sql)?;
    let mut rows = stmt.query([]).map_err(sql)?;
    let mut report = ChainReport {
        entries: 0,
        broken: Vec::new(),
    };
    let mut expected_prev = GENESIS_MAC.to_string();
    let mut expected_seq = 1;
    while let Some(row) = rows.next().map_err(sql)? {
        report.entries += 1;
        let seq: i64 = row.get(0).map_err(sql)?;
        let detail_text: Option<String> = row.get(6).ok();
        let parsed = (|| -> Option<AuditEntry> {
            Some(AuditEntry {
                id: Uuid::parse_str(&row.get::<_, String>(1).ok()?).ok()?,
                created_at: row.get(2).ok()?,
                actor: row.get(3).ok()?,
                action: row.get(4).ok()?,
                subject_id: match row.get::<_, Option<String>>(5).ok()? {
                    Some(s) => Some(Uuid::parse_str(&s).ok()?),
                    None => None,
                },
                detail: serde_json::from_str(detail_text.as_deref()?).ok()?,
            })
        })();
        let prev_mac: String = row.get(7).map_err(sql)?;
        let mac: String = row.get(8).map_err(sql)?;
        let ok = seq == expected_seq
            && prev_mac == expected_prev
            && parsed.is_some_and(|e| {
                mac_of(
                    key,
                    &prev_mac,
                    seq,
                    &e,
                    detail_text.as_deref().unwrap_or_default(),
                ) == mac
            });
        if !ok {
            report.broken.push(seq);
        }
        expected_prev = mac;
        expected_seq = seq + 1;
    }
    Ok(report)
}

/// The most recent entries, newest first.
pub fn recent(conn: &Connection, limit: u32) -> StoreResult<Vec<AuditEntry>> {
    let mut stmt = conn
        .prepare("SELECT id, created_at, actor, action, subject_id, detail FROM audit_log ORDER BY seq DESC LIMIT ?1")
        .map_err(sql)?;
    let rows = stmt
        .query_map([limit], |r| {
            let id: String = r.get(0)?;
            let subject: Option<String> = r.get(4)?;
            let detail: String = r.get(5)?;
            Ok(AuditEntry {
                id: Uuid::parse_str(&id).unwrap_or_default(),
                created_at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                subject_id: subject.and_then(|s| Uuid::parse_str(&s).ok()),
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
            })
        })
        .map_err(sql)?;
    rows.collect::<Result<_, _>>().map_err(sql)
}

fn sql(source: rusqlite::Error) -> StoreError {
    StoreError::Query {
        table: "audit_log",
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;

    fn entry(action: &str) -> AuditEntry {
        AuditEntry {
            id: crate::store::new_id(),
            created_at: crate::store::now(),
            actor: "agent".into(),
            action: action.into(),
            subject_id: None,
            detail: serde_json::json!({"n": 1}),
        }
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let (_dir, store) = temp_store();
        for a in ["one", "two", "three"] {
            store.write(|tx| append(tx, &[1; 32], &entry(a))).unwrap();
        }
        let report = store.read(|c| verify(c, &[1; 32])).unwrap();
        assert_eq!(
            report,
            ChainReport {
                entries: 3,
                broken: vec![]
            }
        );
    }

    #[test]
    fn scores_that_do_not_round_trip_through_json_keep_the_chain_intact() {
        let (_dir, store) = temp_store();
        // Scores are f32 widened to f64: such values need not re-serialise to the same text.
        for score in [
            0.014080199413001537_f64,
            0.21958205103874207,
            f64::from(0.1_f32),
            1e-7,
        ] {
            let mut e = entry("verify");
            e.detail = serde_json::json!({ "score": score });
            store.write(|tx| append(tx, &[1; 32], &e)).unwrap();
        }
        let report = store.read(|c| verify(c, &[1; 32])).unwrap();
        assert!(report.intact(), "{report:?}");
    }

    #[test]
    fn updates_and_deletes_are_refused_by_the_database() {
        let (_dir, store) = temp_store();
        store
            .write(|tx| append(tx, &[1; 32], &entry("one")))
            .unwrap();
        let update = store.read(|c| c.execute("UPDATE audit_log SET action = 'x'", []));
        assert!(update.unwrap_err().to_string().contains("append-only"));
        let delete = store.read(|c| c.execute("DELETE FROM audit_log", []));
        assert!(delete.is_err());
    }

    #[test]
    fn an_edited_entry_is_found_even_with_the_triggers_dropped() {
        let (_dir, store) = temp_store();
        for a in ["one", "two", "three"] {
            store.write(|tx| append(tx, &[1; 32], &entry(a))).unwrap();
        }
        store
            .read(|c| {
                c.execute_batch(
                    "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET actor = 'mallory' WHERE seq = 2;",
                )
            })
            .unwrap();
        let report = store.read(|c| verify(c, &[1; 32])).unwrap();
        assert_eq!(report.broken, vec![2]);
    }

    #[test]
    fn a_removed_entry_breaks_the_link_of_the_next() {
        let (_dir, store) = temp_store();
        for a in ["one", "two", "three"] {
            store.write(|tx| append(tx, &[1; 32], &entry(a))).unwrap();
        }
        store
            .read(|c| {
                c.execute_batch(
                    "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 2;",
                )
            })
            .unwrap();
        let report = store.read(|c| verify(c, &[1; 32])).unwrap();
        assert_eq!(report.broken, vec![3]);
    }

    #[test]
    fn another_key_cannot_vouch_for_the_chain() {
        let (_dir, store) = temp_store();
        store
            .write(|tx| append(tx, &[1; 32], &entry("one")))
            .unwrap();
        assert!(!store.read(|c| verify(c, &[2; 32])).unwrap().intact());
    }
}
