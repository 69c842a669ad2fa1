//! Enrolled people.

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde::Serialize;
use uuid::Uuid;

use super::{StoreError, StoreResult};

/// A person known to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subject {
    /// Internal id (UUIDv7), bound into every template ciphertext.
    pub id: Uuid,
    /// The integrator's id for the person (badge number, employee id).
    pub external_id: String,
    /// Optional name for operators.
    pub display_name: Option<String>,
    /// Agent where the person was enrolled.
    pub origin_agent: String,
    /// RFC 3339.
    pub created_at: String,
}

const COLUMNS: &str = "id, external_id, display_name, origin_agent, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Subject> {
    let id: String = row.get(0)?;
    Ok(Subject {
        id: Uuid::parse_str(&id).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?,
        external_id: row.get(1)?,
        display_name: row.get(2)?,
        origin_agent: row.get(3)?,
        created_at: row.get(4)?,
    })
}

/// Inserts a subject; the external id must be new.
pub fn insert(tx: &Transaction<'_>, subject: &Subject) -> StoreResult<()> {
    let result = tx.execute(
        &format!("INSERT INTO subjects ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
        params![
            subject.id.to_string(),
            subject.external_id,
            subject.display_name,
            subject.origin_agent,
            subject.created_at
        ],
    );
    match result {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(StoreError::Conflict {
                what: format!("subject {}", subject.external_id),
            })
        }
        Err(e) => Err(sql(e)),
    }
}

/// Finds a subject by the integrator's id.
pub fn by_external_id(conn: &Connection, external_id: &str) -> StoreResult<Option<Subject>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM subjects WHERE external_id = ?1"),
        [external_id],
        from_row,
    )
    .optional()
    .map_err(sql)
}

/// Finds a subject by internal id.
pub fn by_id(conn: &Connection, id: Uuid) -> StoreResult<Option<Subject>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM subjects WHERE id = ?1"),
        [id.to_string()],
        from_row,
    )
    .optional()
    .map_err(sql)
}

/// Lists subjects in enrollment order.
pub fn list(conn: &Connection, limit: u32, offset: u32) -> StoreResult<Vec<Subject>> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM subjects ORDER BY id LIMIT ?1 OFFSET ?2"
        ))
        .map_err(sql)?;
    let rows = stmt
        .query_map(params![limit, offset], from_row)
        .map_err(sql)?;
    rows.collect::<Result<_, _>>().map_err(sql)
}

/// Number of subjects.
pub fn count(conn: &Connection) -> StoreResult<u64> {
    conn.query_row("SELECT COUNT(*) FROM subjects", [], |r| r.get(0))
        .map_err(sql)
}

/// Deletes a subject; its templates and lockout go with it (foreign keys cascade).
pub fn delete(tx: &Transaction<'_>, id: Uuid) -> StoreResult<bool> {
    tx.execute("DELETE FROM subjects WHERE id = ?1", [id.to_string()])
        .map(|n| n > 0)
        .map_err(sql)
}

fn sql(source: rusqlite::Error) -> StoreError {
    StoreError::Query {
        table: "subjects",
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;

    fn subject(external: &str) -> Subject {
        Subject {
            id: crate::store::new_id(),
            external_id: external.into(),
            display_name: None,
            origin_agent: "agent-1".into(),
            created_at: crate::store::now(),
        }
    }

    #[test]
    fn an_external_id_can_be_enrolled_once() {
        let (_dir, store) = temp_store();
        store.write(|tx| insert(tx, &subject("alice"))).unwrap();
        let err = store.write(|tx| insert(tx, &subject("alice"))).unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
        let found = store.read(|c| by_external_id(c, "alice")).unwrap().unwrap();
        assert_eq!(store.read(|c| by_id(c, found.id)).unwrap().unwrap(), found);
    }
}
