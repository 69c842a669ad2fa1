//! The agent's SQLite outbox as the sync drain sees it.
//!
//! Rows hold the full event JSON written in the decision's transaction; the drain wants the
//! typed event back, so each row is parsed on the way out. A row that no longer parses (which
//! only a damaged database can produce) stops the drain with an error naming it rather than
//! being skipped: verification events are never dropped silently.

use std::sync::Arc;

use apg_sync::{Outbox, OutboxDepth, OutboxError, OutboxEvent};
use apg_wire::{Event, EventType};
use rusqlite::{params, Connection};
use uuid::Uuid;

use crate::store::Store;

/// [`Outbox`] over the agent's store.
#[derive(Debug, Clone)]
pub struct StoreOutbox {
    store: Arc<Store>,
}

impl StoreOutbox {
    /// The outbox of `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }
}

fn failed(operation: &'static str, store: &Store, e: impl std::fmt::Display) -> OutboxError {
    OutboxError {
        operation,
        message: format!("{}: {e}", store.path().display()),
    }
}

fn read_batch(
    conn: &Connection,
    after: i64,
    max: usize,
) -> rusqlite::Result<Vec<(i64, String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, id, payload FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, max as i64], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    rows.collect()
}

impl Outbox for StoreOutbox {
    fn peek_batch(&self, after: Option<u64>, max: usize) -> Result<Vec<OutboxEvent>, OutboxError> {
        let after = after.map_or(0, |a| a as i64);
        let rows = self
            .store
            .read(|c| read_batch(c, after, max))
            .map_err(|e| failed("read events", &self.store, e))?;
        rows.into_iter()
            .map(|(seq, id, payload)| {
                let event: Event = serde_json::from_str(&payload).map_err(|e| {
                    failed(
                        "read events",
                        &self.store,
                        format!("outbox row {seq} (event {id}) is not a valid event ({e}); restore the database from a backup"),
                    )
                })?;
                Ok(OutboxEvent {
                    seq: seq as u64,
                    event_id: event.event_id,
                    occurred_at: event.occurred_at,
                    body: event.body,
                })
            })
            .collect()
    }

    fn ack(&self, event_ids: &[Uuid]) -> Result<(), OutboxError> {
        if event_ids.is_empty() {
            return Ok(());
        }
        self.store
            .write(|tx| {
                let mut stmt = tx
                    .prepare_cached("DELETE FROM outbox WHERE id = ?1")
                    .map_err(|e| self.store.err(e))?;
                for id in event_ids {
                    stmt.execute([id.to_string()])
                        .map_err(|e| self.store.err(e))?;
                }
                Ok::<_, crate::store::StoreError>(())
            })
            .map_err(|e| failed("acknowledge events", &self.store, e))
    }

    fn depth(&self) -> Result<OutboxDepth, OutboxError> {
        self.store
            .read(|c| {
                c.query_row(
                    "SELECT COUNT(*), COUNT(*) FILTER (WHERE event_type <> ?1) FROM outbox",
                    [EventType::Health.as_str()],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                )
            })
            .map(|(events, records)| OutboxDepth {
                events: events as u64,
                records: records as u64,
            })
            .map_err(|e| failed("count events", &self.store, e))
    }

    fn discard_superseded(&self, event_type: EventType) -> Result<u64, OutboxError> {
        self.store
            .write(|tx| {
                tx.execute(
                    "DELETE FROM outbox WHERE event_type = ?1 \
                     AND seq < (SELECT MAX(seq) FROM outbox WHERE event_type = ?1)",
                    [event_type.as_str()],
                )
                .map_err(|e| self.store.err(e))
            })
            .map(|n| n as u64)
            .map_err(|e| failed("discard superseded events", &self.store, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{queue, Origin};
    use apg_wire::{EventBody, Health, HealthStatus};

    fn health() -> EventBody {
        EventBody::Health(Health {
            status: HealthStatus::Ok,
            outbox_depth: 0,
            outbox_over_limit: false,
            checks: vec![],
        })
    }

    fn origin() -> Origin {
        Origin {
            site: "site1".into(),
            agent: "kiosk-a".into(),
            enabled: true,
        }
    }

    #[test]
    fn events_come_back_in_order_and_leave_only_when_acknowledged() {
        let (_dir, store) = crate::store::test_support::temp_store();
        let store = Arc::new(store);
        let ids: Vec<Uuid> = (0..3)
            .map(|_| {
                store
                    .write(|tx| queue(tx, &origin(), health()))
                    .unwrap()
                    .unwrap()
            })
            .collect();
        let outbox = StoreOutbox::new(store.clone());
        let all = outbox.peek_batch(None, 10).unwrap();
        assert_eq!(all.iter().map(|e| e.event_id).collect::<Vec<_>>(), ids);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
        let rest = outbox.peek_batch(Some(all[0].seq), 10).unwrap();
        assert_eq!(rest.len(), 2);

        outbox.ack(&ids[..2]).unwrap();
        outbox.ack(&ids[..1]).unwrap(); // acknowledging twice is harmless
        let left = outbox.peek_batch(None, 10).unwrap();
        assert_eq!(
            left.iter().map(|e| e.event_id).collect::<Vec<_>>(),
            &ids[2..]
        );
        assert_eq!(
            outbox.depth().unwrap(),
            OutboxDepth {
                events: 1,
                records: 0
            }
        );
    }

    #[test]
    fn only_older_snapshots_of_the_type_are_discarded() {
        let (_dir, store) = crate::store::test_support::temp_store();
        let store = Arc::new(store);
        for _ in 0..4 {
            store.write(|tx| queue(tx, &origin(), health())).unwrap();
        }
        let outbox = StoreOutbox::new(store);
        assert_eq!(outbox.discard_superseded(EventType::Health).unwrap(), 3);
        assert_eq!(outbox.discard_superseded(EventType::Audit).unwrap(), 0);
        assert_eq!(outbox.depth().unwrap().events, 1);
    }

    #[test]
    fn a_damaged_row_is_named_instead_of_skipped() {
        let (_dir, store) = crate::store::test_support::temp_store();
        let store = Arc::new(store);
        store.write(|tx| queue(tx, &origin(), health())).unwrap();
        store
            .write(|tx| {
                tx.execute("UPDATE outbox SET payload = '{not json'", [])
                    .map_err(|e| crate::store::StoreError::Query {
                        table: "outbox",
                        source: e,
                    })
            })
            .unwrap();
        let err = StoreOutbox::new(store).peek_batch(None, 10).unwrap_err();
        assert!(err.to_string().contains("outbox row 1"), "{err}");
    }
}
