//! API keys for the TCP API, stored as SHA-256 hashes only.

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde::Serialize;

use super::{StoreError, StoreResult};

/// An API key's record (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyRecord {
    /// Key id (UUIDv7), also the key's visible prefix.
    pub id: String,
    /// Operator's name for the key (e.g. `lobby-kiosk`).
    pub name: String,
    /// Role name.
    pub role: String,
    /// SHA-256 of the key, hex.
    #[serde(skip)]
    pub key_hash: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; none means no expiry.
    pub expires_at: Option<String>,
    /// RFC 3339, once revoked.
    pub revoked_at: Option<String>,
    /// RFC 3339 of the last accepted use.
    pub last_used_at: Option<String>,
}

const COLUMNS: &str = "id, name, role, key_hash, created_at, expires_at, revoked_at, last_used_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        key_hash: r.get(3)?,
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
        revoked_at: r.get(6)?,
        last_used_at: r.get(7)?,
    })
}

/// Stores a new key record.
pub fn insert(tx: &Transaction<'_>, k: &ApiKeyRecord) -> StoreResult<()> {
    tx.execute(
        &format!("INSERT INTO api_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        params![
            k.id,
            k.name,
            k.role,
            k.key_hash,
            k.created_at,
            k.expires_at,
            k.revoked_at,
            k.last_used_at
        ],
    )
    .map(drop)
    .map_err(sql)
}

/// Finds the record whose hash matches.
pub fn by_hash(conn: &Connection, hash: &str) -> StoreResult<Option<ApiKeyRecord>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM api_keys WHERE key_hash = ?1"),
        [hash],
        from_row,
    )
    .optional()
    .map_err(sql)
}

/// Every key record, oldest first.
pub fn list(conn: &Connection) -> StoreResult<Vec<ApiKeyRecord>> {
    let mut stmt = conn
        .prepare(&format!("SELECT {COLUMNS} FROM api_keys ORDER BY id"))
        .map_err(sql)?;
    let rows = stmt.query_map([], from_row).map_err(sql)?;
    rows.collect::<Result<_, _>>().map_err(sql)
}

/// Revokes a key by id or name; returns whether one was revoked now.
pub fn revoke(tx: &Transaction<'_>, id_or_name: &str, now: &str) -> StoreResult<bool> {
    tx.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE (id = ?1 OR name = ?1) AND revoked_at IS NULL",
        params![id_or_name, now],
    )
    .map(|n| n > 0)
    .map_err(sql)
}

/// Records a use (at most the last one is kept).
pub fn touch(conn: &Connection, id: &str, now: &str) -> StoreResult<()> {
    conn.execute(
        "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1",
        params![id, now],
    )
    .map(drop)
    .map_err(sql)
}

fn sql(source: rusqlite::Error) -> StoreError {
    StoreError::Query {
        table: "api_keys",
        source,
    }
}
