//! PostgreSQL side: migrations, idempotent batched inserts, dead letters.

use std::collections::HashSet;

use anyhow::Context;
use apg_wire::{Event, EventBody, SealedDeletion, SealedTemplate};
use chrono::{DateTime, Datelike, TimeZone, Utc};
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../migrations/0001_init.sql"))];

/// Connects and spawns the connection driver.
pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| "cannot connect to PostgreSQL (postgres.url): check that the server is up and the role may log in")?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

/// Applies the migrations not yet recorded, each in its own transaction.
pub async fn migrate(client: &mut Client) -> anyhow::Result<()> {
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS biometric;
             CREATE TABLE IF NOT EXISTS biometric.schema_migrations (
                 version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .context("cannot create biometric.schema_migrations")?;
    for (version, sql) in MIGRATIONS {
        let tx = client.transaction().await?;
        // Serialise concurrent hub starts.
        tx.batch_execute("LOCK TABLE biometric.schema_migrations IN EXCLUSIVE MODE")
            .await?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM biometric.schema_migrations WHERE version = $1",
                &[version],
            )
            .await?
            .is_some();
        if !done {
            tx.batch_execute(sql)
                .await
                .with_context(|| format!("migration {version} failed"))?;
            tx.execute(
                "INSERT INTO biometric.schema_migrations (version) VALUES ($1)",
                &[version],
            )
            .await?;
            tracing::info!(version, "applied migration");
        }
        tx.commit().await?;
    }
    Ok(())
}

/// What a committed batch asks the hub to distribute.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Events inserted for the first time.
    pub inserted: u64,
    /// Events already in the database (redeliveries).
    pub duplicates: u64,
    /// New templates to publish to the site.
    pub templates: Vec<SealedTemplate>,
    /// Deletions to publish, with the template ids they removed.
    pub deletions: Vec<(SealedDeletion, Vec<Uuid>)>,
}

fn month_bounds(t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = Utc
        .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(t);
    let (y, m) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    let end = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(t);
    (start, end)
}

/// Writes events and keeps track of the audit partitions already created.
#[derive(Default)]
pub struct Writer {
    partitions: HashSet<(i32, u32)>,
}

impl Writer {
    async fn ensure_partition(
        &mut self,
        tx: &tokio_postgres::Transaction<'_>,
        t: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let key = (t.year(), t.month());
        if self.partitions.contains(&key) {
            return Ok(());
        }
        let (start, end) = month_bounds(t);
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS biometric.audit_logs_{:04}_{:02} PARTITION OF biometric.audit_logs \
             FOR VALUES FROM ('{}') TO ('{}')",
            key.0,
            key.1,
            start.to_rfc3339(),
            end.to_rfc3339()
        );
        tx.batch_execute(&sql).await?;
        self.partitions.insert(key);
        Ok(())
    }

    /// Inserts a batch in one transaction; events already present are counted as duplicates
    /// and otherwise ignored. On error nothing is committed.
    pub async fn write(
        &mut self,
        client: &mut Client,
        events: &[Event],
    ) -> anyhow::Result<Outcome> {
        let mut out = Outcome::default();
        let tx = client.transaction().await?;
        for e in events {
            self.ensure_partition(&tx, e.occurred_at).await?;
        }
        if let Err(err) = self.write_rows(&tx, events, &mut out).await {
            // A partition created in the failed transaction is gone: forget the cache.
            self.partitions.clear();
            return Err(err);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn write_rows(
        &mut self,
        tx: &tokio_postgres::Transaction<'_>,
        events: &[Event],
        out: &mut Outcome,
    ) -> anyhow::Result<()> {
        let ins_event = tx
            .prepare(
                "INSERT INTO biometric.events (event_id, site, agent, seq, event_type, occurred_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
            )
            .await?;
        let ins_agent = tx
            .prepare(
                "INSERT INTO biometric.agents (site, agent, last_seq) VALUES ($1, $2, $3)
                 ON CONFLICT (site, agent) DO UPDATE SET last_seen = now(),
                 last_seq = greatest(biometric.agents.last_seq, excluded.last_seq)",
            )
            .await?;
        let ins_audit = tx
            .prepare(
                "INSERT INTO biometric.audit_logs (event_id, user_id, modality, site, agent, event_type, payload, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .await?;
        let ins_verif = tx
            .prepare(
                "INSERT INTO biometric.verification_history
                 (event_id, user_id, modality, decision, score, site, agent, seq, device_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .await?;
        for e in events {
            let seq = i64::try_from(e.seq).unwrap_or(i64::MAX);
            let kind = e.event_type().as_str();
            let n = tx
                .execute(
                    &ins_event,
                    &[&e.event_id, &e.site, &e.agent, &seq, &kind, &e.occurred_at],
                )
                .await?;
            if n == 0 {
                out.duplicates += 1;
                continue;
            }
            out.inserted += 1;
            tx.execute(&ins_agent, &[&e.site, &e.agent, &seq]).await?;
            let (user, modality): (Option<Uuid>, Option<&str>) = match &e.body {
                EventBody::Verification(v) => (Some(v.subject_id), Some(v.modality.as_str())),
                EventBody::Identification(i) => (i.subject_id, Some(i.modality.as_str())),
                EventBody::Enrollment(en) => (Some(en.subject_id), Some(en.modality.as_str())),
                EventBody::Deletion(d) => (Some(d.subject_id), None),
                _ => (None, None),
            };
            let payload = serde_json::to_value(e)?;
            tx.execute(
                &ins_audit,
                &[
                    &e.event_id,
                    &user,
                    &modality,
                    &e.site,
                    &e.agent,
                    &kind,
                    &payload,
                    &e.occurred_at,
                ],
            )
            .await?;
            match &e.body {
                EventBody::Verification(v) => {
                    let decision = serde_json::to_value(v.decision)?
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    tx.execute(
                        &ins_verif,
                        &[
                            &e.event_id,
                            &v.subject_id,
                            &v.modality.as_str(),
                            &decision,
                            &v.score,
                            &e.site,
                            &e.agent,
                            &seq,
                            &v.device_id,
                            &e.occurred_at,
                        ],
                    )
                    .await?;
                }
                EventBody::Enrollment(en) => {
                    tx.execute(
                        "INSERT INTO biometric.subjects (user_id, site, created_at) VALUES ($1, $2, $3)
                         ON CONFLICT (user_id) DO UPDATE SET deleted_at = NULL
                         WHERE biometric.subjects.deleted_at IS NOT NULL AND biometric.subjects.deleted_at < excluded.created_at",
                        &[&en.subject_id, &e.site, &en.template.enrolled_at],
                    )
                    .await?;
                    let sealed = serde_json::to_value(&en.template)?;
                    let n = tx
                        .execute(
                            "INSERT INTO biometric.templates
                             (template_id, user_id, modality, site, origin_agent, sealed, created_at, event_id)
                             SELECT $1, $2, $3, $4, $5, $6, $7, $8
                             WHERE NOT EXISTS (SELECT 1 FROM biometric.subjects
                                 WHERE user_id = $2 AND deleted_at IS NOT NULL AND deleted_at >= $7)
                             ON CONFLICT (template_id) DO NOTHING",
                            &[
                                &en.template.template_id,
                                &en.subject_id,
                                &en.modality.as_str(),
                                &e.site,
                                &en.template.origin_agent,
                                &sealed,
                                &en.template.enrolled_at,
                                &e.event_id,
                            ],
                        )
                        .await?;
                    if n == 1 {
                        out.templates.push(en.template.clone());
                    }
                }
                EventBody::Deletion(d) => {
                    let rows = tx
                        .query(
                            "DELETE FROM biometric.templates WHERE user_id = $1 AND created_at <= $2
                             RETURNING template_id",
                            &[&d.subject_id, &d.authorization.deleted_at],
                        )
                        .await?;
                    tx.execute(
                        "INSERT INTO biometric.subjects (user_id, site, created_at, deleted_at)
                         VALUES ($1, $2, $3, $3)
                         ON CONFLICT (user_id) DO UPDATE SET deleted_at = greatest(
                             coalesce(biometric.subjects.deleted_at, excluded.deleted_at), excluded.deleted_at)",
                        &[&d.subject_id, &e.site, &d.authorization.deleted_at],
                    )
                    .await?;
                    out.deletions.push((
                        d.authorization.clone(),
                        rows.iter().map(|r| r.get(0)).collect(),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Records a message the hub cannot use, with the reason.
pub async fn dead_letter(
    client: &Client,
    topic: &str,
    payload: &[u8],
    reason: &str,
) -> anyhow::Result<()> {
    client
        .execute(
            "INSERT INTO biometric.dead_letters (topic, payload, reason) VALUES ($1, $2, $3)",
            &[&topic, &payload, &reason],
        )
        .await?;
    Ok(())
}
