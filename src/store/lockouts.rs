//! Failed-attempt counters and locks per subject; they live in the database so a restart does
//! not unlock anyone.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use uuid::Uuid;

use super::{StoreError, StoreResult};

/// Lock state of a subject.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LockState {
    /// Consecutive failed verifications.
    pub failed_attempts: u32,
    /// RFC 3339 end of the lock, if locked.
    pub locked_until: Option<String>,
}

/// Current state (all zero when never failed).
pub fn get(conn: &Connection, subject: Uuid) -> StoreResult<LockState> {
    Ok(conn
        .query_row(
            "SELECT failed_attempts, locked_until FROM lockouts WHERE subject_id = ?1",
            [subject.to_string()],
            |r| {
                Ok(LockState {
                    failed_attempts: r.get(0)?,
                    locked_until: r.get(1)?,
                })
            },
        )
        .optional()
        .map_err(sql)?
        .unwrap_or_default())
}

/// Stores the new state.
pub fn set(tx: &Transaction<'_>, subject: Uuid, state: &LockState, now: &str) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO lockouts (subject_id, failed_attempts, locked_until, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(subject_id) DO UPDATE SET failed_attempts = ?2, locked_until = ?3, updated_at = ?4",
        params![subject.to_string(), state.failed_attempts, state.locked_until, now],
    )
    .map(drop)
    .map_err(sql)
}

/// Clears the counter and any lock.
pub fn clear(tx: &Transaction<'_>, subject: Uuid) -> StoreResult<()> {
    tx.execute(
        "DELETE FROM lockouts WHERE subject_id = ?1",
        [subject.to_string()],
    )
    .map(drop)
    .map_err(sql)
}

fn sql(source: rusqlite::Error) -> StoreError {
    StoreError::Query {
        table: "lockouts",
        source,
    }
}
