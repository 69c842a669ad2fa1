//! Events waiting to be published, in commit order. A row is deleted only after the hub
//! confirmed it (its receipt), so a crash, an outage or a broker that drops a message never
//! loses one.

use rusqlite::{params, Connection, Transaction};
use uuid::Uuid;

use super::{StoreError, StoreResult};

/// One queued event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Commit order.
    pub seq: i64,
    /// Event id (UUIDv7), used by the hub to drop duplicates.
    pub id: Uuid,
    /// Event type (`verification`, `enrollment`, ...), the last topic level.
    pub event_type: String,
    /// JSON payload.
    pub payload: String,
    /// RFC 3339.
    pub created_at: String,
}

/// Queues an event inside the caller's transaction.
pub fn push(
    tx: &Transaction<'_>,
    id: Uuid,
    event_type: &str,
    payload: &str,
    now: &str,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO outbox (id, event_type, payload, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![id.to_string(), event_type, payload, now],
    )
    .map(drop)
    .map_err(sql)
}

/// The oldest `limit` events after position `after` (0: from the first).
pub fn peek(conn: &Connection, after: i64, limit: u32) -> StoreResult<Vec<OutboxRow>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, id, event_type, payload, created_at FROM outbox \
             WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map(params![after, limit], |r| {
            let id: String = r.get(1)?;
            Ok(OutboxRow {
                seq: r.get(0)?,
                id: Uuid::parse_str(&id).unwrap_or_default(),
                event_type: r.get(2)?,
                payload: r.get(3)?,
                created_at: r.get(4)?,
            })
        })
        .map_err(sql)?;
    rows.collect::<Result<_, _>>().map_err(sql)
}

/// Removes an acknowledged event.
pub fn ack(conn: &Connection, id: Uuid) -> StoreResult<bool> {
    conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute([id.to_string()]))
        .map(|n| n > 0)
        .map_err(sql)
}

/// Events waiting.
pub fn depth(conn: &Connection) -> StoreResult<u64> {
    conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
        .map_err(sql)
}

/// Events waiting, and how many of them are not of `snapshot_type` (records, never dropped).
pub fn depth_and_records(conn: &Connection, snapshot_type: &str) -> StoreResult<(u64, u64)> {
    conn.query_row(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE event_type <> ?1) FROM outbox",
        [snapshot_type],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .map_err(sql)
}

/// Removes every event of `event_type` but the newest; returns how many.
pub fn discard_superseded(tx: &Transaction<'_>, event_type: &str) -> StoreResult<u64> {
    tx.execute(
        "DELETE FROM outbox WHERE event_type = ?1 \
         AND seq < (SELECT MAX(seq) FROM outbox WHERE event_type = ?1)",
        [event_type],
    )
    .map(|n| n as u64)
    .map_err(sql)
}

fn sql(source: rusqlite::Error) -> StoreError {
    StoreError::Query {
        table: "outbox",
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;

    #[test]
    fn events_come_out_in_commit_order_and_leave_only_when_acknowledged() {
        let (_dir, store) = temp_store();
        let ids: Vec<Uuid> = (0..3).map(|_| crate::store::new_id()).collect();
        for (i, id) in ids.iter().enumerate() {
            store
                .write(|tx| push(tx, *id, "verification", &format!("{{\"n\":{i}}}"), "t"))
                .unwrap();
        }
        let rows = store.read(|c| peek(c, 0, 10)).unwrap();
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
        assert!(store.read(|c| ack(c, ids[0])).unwrap());
        assert!(
            !store.read(|c| ack(c, ids[0])).unwrap(),
            "a second ack finds nothing"
        );
        assert_eq!(store.read(depth).unwrap(), 2);
    }
}
