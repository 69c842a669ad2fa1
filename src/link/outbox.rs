//! The agent's SQLite outbox as the sync drain sees it.
//!
//! Rows hold the full event JSON written in the decision's transaction; the drain wants the
//! typed event back, so each row is parsed on the way out. A row that no longer parses (which
//! only a damaged database can produce) stops the drain with an error naming it rather than
//! being skipped: verification events are never dropped silently.

use std::sync::Arc;

use apg_sync::{Outbox, OutboxDepth, OutboxError, OutboxEvent};
use apg_wire::{Event, EventType};
use uuid::Uuid;

use crate::store::{outbox, Store};

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

impl Outbox for StoreOutbox {
    fn peek_batch(&self, after: Option<u64>, max: usize) -> Result<Vec<OutboxEvent>, OutboxError> {
        let after = after.map_or(0, |a| a as i64);
        let limit = u32::try_from(max).unwrap_or(u32::MAX);
        let rows = self
            .store
            .read(|c| outbox::peek(c, after, limit))
            .map_err(|e| failed("read events", &self.store, e))?;
        rows.into_iter()
            .map(|row| {
                let event: Event = serde_json::from_str(&row.payload).map_err(|e| {
                    failed(
                        "read events",
                        &self.store,
                        format!("outbox row {} (event {}) is not a valid event ({e}); restore the database from a backup", row.seq, row.id),
                    )
                })?;
                Ok(OutboxEvent {
                    seq: row.seq as u64,
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
                event_ids
                    .iter()
                    .try_for_each(|id| outbox::ack(tx, *id).map(drop))
            })
            .map_err(|e| failed("acknowledge events", &self.store, e))
    }

    fn depth(&self) -> Result<OutboxDepth, OutboxError> {
        self.store
            .read(|c| outbox::depth_and_records(c, EventType::Health.as_str()))
            .map(|(events, records)| OutboxDepth { events, records })
            .map_err(|e| failed("count events", &self.store, e))
    }

    fn discard_superseded(&self, event_type: EventType) -> Result<u64, OutboxError> {
        self.store
            .write(|tx| outbox::discard_superseded(tx, event_type.as_str()))
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
