//! Queuing events for the hub in the transaction of the decision they report.
//!
//! The event's `seq` is its outbox row's position, assigned here inside the write transaction,
//! so it is strictly increasing per agent and never reused (the table is AUTOINCREMENT).

use apg_wire::{Event, EventBody};
use rusqlite::{params, OptionalExtension, Transaction};
use uuid::Uuid;

use crate::store::{StoreError, StoreResult};

/// Who the events come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Site id.
    pub site: String,
    /// Agent id.
    pub agent: String,
    /// Whether events are queued at all (sync enabled); a standalone agent keeps only its
    /// history and audit log.
    pub enabled: bool,
}

/// Queues `body` in the outbox; returns the event id, or `None` when sync is off.
pub fn queue(tx: &Transaction<'_>, origin: &Origin, body: EventBody) -> StoreResult<Option<Uuid>> {
    if !origin.enabled {
        return Ok(None);
    }
    let sql = |source| StoreError::Query {
        table: "outbox",
        source,
    };
    let last: Option<i64> = tx
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    let seq = last.unwrap_or(0) + 1;
    let event = Event::new(
        &origin.site,
        &origin.agent,
        seq as u64,
        chrono::Utc::now(),
        body,
    );
    let payload = String::from_utf8(event.to_json()).expect("JSON is UTF-8");
    tx.execute(
        "INSERT INTO outbox (seq, id, event_type, payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            seq,
            event.event_id.to_string(),
            event.event_type().as_str(),
            payload,
            crate::store::now()
        ],
    )
    .map_err(sql)?;
    Ok(Some(event.event_id))
}

/// The wire name of a modality.
pub fn wire_modality(m: crate::modality::Modality) -> apg_wire::Modality {
    use crate::modality::Modality as M;
    use apg_wire::Modality as W;
    match m {
        M::Fingerprint => W::Fingerprint,
        M::Face => W::Face,
        M::Iris => W::Iris,
        M::Palm => W::Palm,
        M::Voice => W::Voice,
        M::Gait => W::Gait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;

    fn health() -> EventBody {
        EventBody::Health(apg_wire::Health {
            status: apg_wire::HealthStatus::Ok,
            outbox_depth: 0,
            outbox_over_limit: false,
            checks: vec![],
        })
    }

    #[test]
    fn sequence_numbers_keep_growing_after_rows_are_acknowledged() {
        let (_dir, store) = temp_store();
        let origin = Origin {
            site: "s".into(),
            agent: "a".into(),
            enabled: true,
        };
        let first = store
            .write(|tx| queue(tx, &origin, health()))
            .unwrap()
            .unwrap();
        assert!(store.read(|c| crate::store::outbox::ack(c, first)).unwrap());
        store.write(|tx| queue(tx, &origin, health())).unwrap();
        let rows = store
            .read(|c| crate::store::outbox::peek(c, 0, 10))
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].seq, 2);
        let event: serde_json::Value = serde_json::from_str(&rows[0].payload).unwrap();
        assert_eq!(event["seq"], 2);
        assert_eq!(event["type"], "health");
    }

    #[test]
    fn nothing_is_queued_when_sync_is_off() {
        let (_dir, store) = temp_store();
        let origin = Origin {
            site: "s".into(),
            agent: "a".into(),
            enabled: false,
        };
        assert_eq!(
            store.write(|tx| queue(tx, &origin, health())).unwrap(),
            None
        );
        assert_eq!(store.read(crate::store::outbox::depth).unwrap(), 0);
    }
}
