//! Wrapped data keys and their lifecycle: `active` (new writes), `retiring` (still opens
//! templates during a rotation), `retired` (wrapped bytes erased, no template left under it).

use rusqlite::{params, Connection, Transaction};

use super::{StoreError, StoreResult};

/// One wrapped data key.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKeyRow {
    /// Key version.
    pub version: u32,
    /// Wrapping nonce.
    pub nonce: Vec<u8>,
    /// Wrapped key (ciphertext + tag); empty once retired.
    pub wrapped: Vec<u8>,
    /// `active`, `retiring` or `retired`.
    pub state: String,
    /// RFC 3339.
    pub created_at: String,
}

impl std::fmt::Debug for DataKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeyRow")
            .field("version", &self.version)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Every key version, oldest first.
pub fn list(conn: &Connection) -> StoreResult<Vec<DataKeyRow>> {
    let mut stmt = conn
        .prepare(
            "SELECT version, nonce, wrapped, state, created_at FROM data_keys ORDER BY version",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(DataKeyRow {
                version: r.get(0)?,
                nonce: r.get(1)?,
                wrapped: r.get(2)?,
                state: r.get(3)?,
                created_at: r.get(4)?,
            })
        })
        .map_err(sql)?;
    rows.collect::<Result<_, _>>().map_err(sql)
}

/// Adds a new active key and marks the previous active one as retiring.
pub fn add_active(tx: &Transaction<'_>, row: &DataKeyRow) -> StoreResult<()> {
    tx.execute(
        "UPDATE data_keys SET state = 'retiring' WHERE state = 'active'",
        [],
    )
    .map_err(sql)?;
    tx.execute(
        "INSERT INTO data_keys (version, nonce, wrapped, state, created_at) VALUES (?1, ?2, ?3, 'active', ?4)",
        params![row.version, row.nonce, row.wrapped, row.created_at],
    )
    .map(drop)
    .map_err(sql)
}

/// Retires every retiring key: erases its wrapped bytes so it can never open data again.
pub fn retire_retiring(tx: &Transaction<'_>, now: &str) -> StoreResult<usize> {
    tx.execute(
        "UPDATE data_keys SET state = 'retired', wrapped = x'', nonce = x'', retired_at = ?1 WHERE state = 'retiring'",
        [now],
    )
    .map_err(sql)
}

fn sql(source: rusqlite::Error) -> StoreError {
    StoreError::Query {
        table: "data_keys",
        source,
    }
}
