//! The outbox the drain reads from: the agent's store implements [`Outbox`].

use std::{
    collections::BTreeMap,
    sync::{Mutex, PoisonError},
};

use apg_wire::{EventBody, EventType};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// One event waiting in the outbox.
///
/// The agent writes it in the same transaction as the decision it reports. The drain wraps it
/// in the wire envelope (version, site, agent) when it publishes it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// Position in the outbox: strictly increasing, never reused (SQLite `AUTOINCREMENT`).
    /// Published as the event's `seq`.
    pub seq: u64,
    /// UUIDv7 chosen when the event was written.
    pub event_id: Uuid,
    /// When the decision was made or the change seen.
    pub occurred_at: DateTime<Utc>,
    /// The type-specific part of the event.
    pub body: EventBody,
}

impl OutboxEvent {
    /// The event's type.
    pub fn event_type(&self) -> EventType {
        self.body.event_type()
    }
}

/// How full the outbox is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxDepth {
    /// Events waiting.
    pub events: u64,
    /// Of which record events (everything but health snapshots): never discarded.
    pub records: u64,
}

/// A failure of the store behind the outbox.
#[derive(Debug, thiserror::Error)]
#[error("outbox store failed while trying to {operation}: {message}")]
pub struct OutboxError {
    /// What the drain was doing (`read events`, `acknowledge events`, ...).
    pub operation: &'static str,
    /// What went wrong, naming the store.
    pub message: String,
}

/// The agent's durable outbox.
///
/// Calls block (the drain runs them on tokio's blocking pool). Every method must be safe to
/// call again after a crash at any point: the drain republishes whatever was not acknowledged,
/// and the hub drops the duplicates by event id.
pub trait Outbox: Send + Sync + 'static {
    /// Up to `max` events in `seq` order, starting after `after` (from the oldest when `None`).
    fn peek_batch(&self, after: Option<u64>, max: usize) -> Result<Vec<OutboxEvent>, OutboxError>;

    /// Removes the given events, which the hub's receipt confirmed. Ids that are no longer in
    /// the outbox are ignored.
    fn ack(&self, event_ids: &[Uuid]) -> Result<(), OutboxError>;

    /// How many events are waiting.
    fn depth(&self) -> Result<OutboxDepth, OutboxError>;

    /// Removes every event of `event_type` except the newest one, and returns how many were
    /// removed. Called only for types that are snapshots superseded by the next one (health),
    /// and only when the outbox is over its limit.
    fn discard_superseded(&self, event_type: EventType) -> Result<u64, OutboxError>;
}

/// An outbox in memory: for tests, benchmarks and tools that publish without a store. It keeps
/// nothing across a restart.
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    next_seq: u64,
    events: BTreeMap<u64, OutboxEvent>,
    positions: BTreeMap<Uuid, u64>,
}

impl MemoryOutbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an event occurring now and returns it.
    pub fn push(&self, body: EventBody) -> OutboxEvent {
        self.push_at(apg_wire::time::now(), body)
    }

    /// Appends an event that occurred at `occurred_at` and returns it.
    pub fn push_at(&self, occurred_at: DateTime<Utc>, body: EventBody) -> OutboxEvent {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.next_seq += 1;
        let event = OutboxEvent {
            seq: inner.next_seq,
            event_id: Uuid::now_v7(),
            occurred_at,
            body,
        };
        inner.positions.insert(event.event_id, event.seq);
        inner.events.insert(event.seq, event.clone());
        event
    }
}

impl Outbox for MemoryOutbox {
    fn peek_batch(&self, after: Option<u64>, max: usize) -> Result<Vec<OutboxEvent>, OutboxError> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let start = after.map_or(0, |a| a.saturating_add(1));
        Ok(inner
            .events
            .range(start..)
            .take(max)
            .map(|(_, e)| e.clone())
            .collect())
    }

    fn ack(&self, event_ids: &[Uuid]) -> Result<(), OutboxError> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for id in event_ids {
            if let Some(seq) = inner.positions.remove(id) {
                inner.events.remove(&seq);
            }
        }
        Ok(())
    }

    fn depth(&self) -> Result<OutboxDepth, OutboxError> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let records = inner
            .events
            .values()
            .filter(|e| e.event_type().is_record())
            .count() as u64;
        Ok(OutboxDepth {
            events: inner.events.len() as u64,
            records,
        })
    }

    fn discard_superseded(&self, event_type: EventType) -> Result<u64, OutboxError> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut of_type: Vec<(u64, Uuid)> = inner
            .events
            .values()
            .filter(|e| e.event_type() == event_type)
            .map(|e| (e.seq, e.event_id))
            .collect();
        of_type.pop(); // keep the newest
        for (seq, id) in &of_type {
            inner.events.remove(seq);
            inner.positions.remove(id);
        }
        Ok(of_type.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apg_wire::{Health, HealthStatus};

    fn health() -> EventBody {
        EventBody::Health(Health {
            status: HealthStatus::Ok,
            outbox_depth: 0,
            outbox_over_limit: false,
            checks: vec![],
        })
    }

    #[test]
    fn peek_after_a_position_skips_what_is_in_flight() {
        let o = MemoryOutbox::new();
        let a = o.push(health());
        let b = o.push(health());
        assert_eq!(o.peek_batch(None, 10).unwrap(), vec![a.clone(), b.clone()]);
        assert_eq!(o.peek_batch(Some(a.seq), 10).unwrap(), vec![b]);
    }

    #[test]
    fn discarding_superseded_snapshots_keeps_the_newest() {
        let o = MemoryOutbox::new();
        for _ in 0..5 {
            o.push(health());
        }
        let newest = o.push(health());
        assert_eq!(o.discard_superseded(EventType::Health).unwrap(), 5);
        assert_eq!(o.peek_batch(None, 10).unwrap(), vec![newest]);
    }
}
