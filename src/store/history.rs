//! Verification and identification decisions.

use rusqlite::{params, Connection, Transaction};
use serde::Serialize;
use uuid::Uuid;

use super::{StoreError, StoreResult};

/// One recorded decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRecord {
    /// Decision id (UUIDv7); also the id of its outbox event.
    pub id: Uuid,
    /// RFC 3339.
    pub created_at: String,
    /// `verify` or `identify`.
    pub operation: String,
    /// Claimed (verify) or matched (identify) subject.
    pub subject_id: Option<Uuid>,
    /// Modality name.
    pub modality: String,
    /// `accepted`, `rejected`, `locked`, `no_match`, `error`, ...
    pub decision: String,
    /// Best score, when a comparison was made.
    pub score: Option<f64>,
    /// Threshold in effect.
    pub threshold: Option<f64>,
    /// Device that captured the sample, if any.
    pub device_id: Option<String>,
    /// Request id of the API call.
    pub request_id: Option<String>,
    /// Time to decide.
    pub duration_ms: f64,
    /// Why, for rejections and errors.
    pub reason: Option<String>,
}

/// Records a decision.
pub fn insert(tx: &Transaction<'_>, r: &HistoryRecord) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO verification_history (id, created_at, operation, subject_id, modality, decision, score, threshold, device_id, request_id, duration_ms, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            r.id.to_string(),
            r.created_at,
            r.operation,
            r.subject_id.map(|s| s.to_string()),
            r.modality,
            r.decision,
            r.score,
            r.threshold,
            r.device_id,
            r.request_id,
            r.duration_ms,
            r.reason
        ],
    )
    .map(drop)
    .map_err(sql)
}

/// Most recent decisions, optionally for one subject, newest first.
pub fn recent(
    conn: &Connection,
    subject: Option<Uuid>,
    limit: u32,
) -> StoreResult<Vec<HistoryRecord>> {
    let mut stmt = conn
        .prepare(
            "SELECT id, created_at, operation, subject_id, modality, decision, score, threshold, device_id, request_id, duration_ms, reason
             FROM verification_history WHERE (?1 IS NULL OR subject_id = ?1) ORDER BY created_at DESC, id DESC LIMIT ?2",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map(params![subject.map(|s| s.to_string()), limit], |r| {
            let id: String = r.get(0)?;
            let subject: Option<String> = r.get(3)?;
            Ok(HistoryRecord {
                id: Uuid::parse_str(&id).unwrap_or_default(),
                created_at: r.get(1)?,
                operation: r.get(2)?,
                subject_id: subject.and_then(|s| Uuid::parse_str(&s).ok()),
                modality: r.get(4)?,
                decision: r.get(5)?,
                score: r.get(6)?,
                threshold: r.get(7)?,
                device_id: r.get(8)?,
                request_id: r.get(9)?,
                duration_ms: r.get(10)?,
                reason: r.get(11)?,
            })
        })
        .map_err(sql)?;
    rows.collect::<Result<_, _>>().map_err(sql)
}

/// Counts per (modality, operation, decision) since a time, for analytics.
pub fn summary(conn: &Connection, since: &str) -> StoreResult<Vec<(String, String, String, u64)>> {
    let mut stmt = conn
        .prepare(
            "SELECT modality, operation, decision, COUNT(*) FROM verification_history
             WHERE created_at >= ?1 GROUP BY modality, operation, decision ORDER BY 1, 2, 3",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map([since], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .map_err(sql)?;
    rows.collect::<Result<_, _>>().map_err(sql)
}

fn sql(source: rusqlite::Error) -> StoreError {
    StoreError::Query {
        table: "verification_history",
        source,
    }
}
