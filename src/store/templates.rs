//! Sealed templates. Rows hold ciphertext only; [`crate::vault`] seals and opens them.

use rusqlite::{params, Connection, Row, Transaction};
use uuid::Uuid;

use super::{StoreError, StoreResult};

/// One stored template, still sealed.
#[derive(Clone, PartialEq)]
pub struct TemplateRow {
    /// Row id, bound into the ciphertext.
    pub id: Uuid,
    /// Owner, bound into the ciphertext.
    pub subject_id: Uuid,
    /// Modality name, bound into the ciphertext.
    pub modality: String,
    /// Engine template format and version, e.g. `apg-fp/1`.
    pub format: String,
    /// Quality of the sample it came from, 0..1.
    pub quality: f64,
    /// Data key version (0: plaintext, development profile only).
    pub key_version: u32,
    /// GCM nonce (empty for plaintext).
    pub nonce: Vec<u8>,
    /// Ciphertext and tag.
    pub ciphertext: Vec<u8>,
    /// Agent that enrolled it.
    pub origin_agent: String,
    /// RFC 3339.
    pub created_at: String,
}

impl std::fmt::Debug for TemplateRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateRow")
            .field("id", &self.id)
            .field("subject_id", &self.subject_id)
            .field("modality", &self.modality)
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "id, subject_id, modality, format, quality, key_version, nonce, ciphertext, \
                       origin_agent, created_at";

fn uuid_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Uuid> {
    let text: String = row.get(i)?;
    Uuid::parse_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<TemplateRow> {
    Ok(TemplateRow {
        id: uuid_at(row, 0)?,
        subject_id: uuid_at(row, 1)?,
        modality: row.get(2)?,
        format: row.get(3)?,
        quality: row.get(4)?,
        key_version: row.get(5)?,
        nonce: row.get(6)?,
        ciphertext: row.get(7)?,
        origin_agent: row.get(8)?,
        created_at: row.get(9)?,
    })
}

/// Inserts a sealed template.
pub fn insert(tx: &Transaction<'_>, t: &TemplateRow) -> StoreResult<()> {
    tx.execute(
        &format!("INSERT INTO templates ({COLUMNS}, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)"),
        params![
            t.id.to_string(),
            t.subject_id.to_string(),
            t.modality,
            t.format,
            t.quality,
            t.key_version,
            t.nonce,
            t.ciphertext,
            t.origin_agent,
            t.created_at
        ],
    )
    .map(drop)
    .map_err(sql)
}

fn query(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> StoreResult<Vec<TemplateRow>> {
    let mut stmt = conn
        .prepare(&format!("SELECT {COLUMNS} FROM templates {filter}"))
        .map_err(sql)?;
    let rows = stmt.query_map(args, from_row).map_err(sql)?;
    rows.collect::<Result<_, _>>().map_err(sql)
}

/// Every template of a modality (to fill the in-memory gallery at start).
pub fn by_modality(conn: &Connection, modality: &str) -> StoreResult<Vec<TemplateRow>> {
    query(conn, "WHERE modality = ?1 ORDER BY id", [modality])
}

/// Templates of one subject.
pub fn by_subject(conn: &Connection, subject_id: Uuid) -> StoreResult<Vec<TemplateRow>> {
    query(
        conn,
        "WHERE subject_id = ?1 ORDER BY id",
        [subject_id.to_string()],
    )
}

/// Up to `limit` templates sealed under a key version other than `version`, with ids after
/// `after`, in id order: the rotation's cursor walk.
pub fn not_under_version(
    conn: &Connection,
    version: u32,
    after: Option<Uuid>,
    limit: u32,
) -> StoreResult<Vec<TemplateRow>> {
    let after = after.map(|a| a.to_string()).unwrap_or_default();
    query(
        conn,
        "WHERE key_version != ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        params![version, after, limit],
    )
}

/// Number of templates sealed under a key version other than `version`.
pub fn count_not_under_version(conn: &Connection, version: u32) -> StoreResult<u64> {
    conn.query_row(
        "SELECT COUNT(*) FROM templates WHERE key_version != ?1",
        [version],
        |r| r.get(0),
    )
    .map_err(sql)
}

/// Replaces a template's ciphertext after re-sealing it under another key version.
/// Only touches the row if it is still under `old_version`, so a concurrent delete or
/// re-enrollment wins.
pub fn reseal(
    tx: &Transaction<'_>,
    id: Uuid,
    old_version: u32,
    new_version: u32,
    nonce: &[u8],
    ciphertext: &[u8],
    now: &str,
) -> StoreResult<bool> {
    tx.execute(
        "UPDATE templates SET key_version = ?3, nonce = ?4, ciphertext = ?5, updated_at = ?6
         WHERE id = ?1 AND key_version = ?2",
        params![
            id.to_string(),
            old_version,
            new_version,
            nonce,
            ciphertext,
            now
        ],
    )
    .map(|n| n > 0)
    .map_err(sql)
}

/// Template counts per modality.
pub fn count_by_modality(conn: &Connection) -> StoreResult<Vec<(String, u64)>> {
    let mut stmt = conn
        .prepare("SELECT modality, COUNT(*) FROM templates GROUP BY modality ORDER BY modality")
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql)?;
    rows.collect::<Result<_, _>>().map_err(sql)
}

/// Deletes every template of a subject in one modality (re-enrollment); returns how many.
pub fn delete_for_subject(
    tx: &Transaction<'_>,
    subject_id: Uuid,
    modality: &str,
) -> StoreResult<usize> {
    tx.execute(
        "DELETE FROM templates WHERE subject_id = ?1 AND modality = ?2",
        params![subject_id.to_string(), modality],
    )
    .map_err(sql)
}

/// Whether a template with this id is stored.
pub fn exists(conn: &Connection, id: Uuid) -> StoreResult<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM templates WHERE id = ?1)",
        [id.to_string()],
        |r| r.get(0),
    )
    .map_err(sql)
}

/// Deletes one template; returns whether it was there.
pub fn delete(tx: &Transaction<'_>, id: Uuid) -> StoreResult<bool> {
    tx.execute("DELETE FROM templates WHERE id = ?1", [id.to_string()])
        .map(|n| n > 0)
        .map_err(sql)
}

fn sql(source: rusqlite::Error) -> StoreError {
    StoreError::Query {
        table: "templates",
        source,
    }
}
