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

/// Advisory lock key held while migrating ("apg-hub" in ASCII).
const MIGRATION_LOCK: i64 = 0x0061_7067_2d68_7562;

/// Applies the migrations not yet recorded, each in its own transaction. Hubs starting
/// together on a new database take turns: even `CREATE SCHEMA IF NOT EXISTS` collides when
/// two sessions run it at the same moment.
pub async fn migrate(client: &mut Client) -> anyhow::Result<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .context("cannot take the migration lock")?;
    let result = migrate_locked(client).await;
    // The lock also ends with the session; unlocking here lets a waiting hub go on now.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result
}

async fn migrate_locked(client: &mut Client) -> anyhow::Result<()> {
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

    // One statement per table for the whole batch: per-row round trips were what limited the
    // hub (about 320 µs per event). Enrollments and deletions, which are rare and depend on
    // each other's order, are still applied one by one, in order.
    async fn write_rows(
        &mut self,
        tx: &tokio_postgres::Transaction<'_>,
        events: &[Event],
        out: &mut Outcome,
    ) -> anyhow::Result<()> {
        let mut new_ids = insert_events(tx, events).await?;
        // `remove`, not `contains`: a second copy of an event in the same batch is a duplicate.
        let fresh: Vec<&Event> = events
            .iter()
            .filter(|e| new_ids.remove(&e.event_id))
            .collect();
        out.inserted = fresh.len() as u64;
        out.duplicates = (events.len() - fresh.len()) as u64;
        if fresh.is_empty() {
            return Ok(());
        }
        upsert_agents(tx, &fresh).await?;
        insert_audit_logs(tx, &fresh).await?;
        insert_verifications(tx, &fresh).await?;
        for e in fresh {
            match &e.body {
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

fn seq_of(e: &Event) -> i64 {
    i64::try_from(e.seq).unwrap_or(i64::MAX)
}

/// Inserts the batch's envelopes; returns the ids that were not there yet (a duplicate within
/// the batch counts once).
async fn insert_events(
    tx: &tokio_postgres::Transaction<'_>,
    events: &[Event],
) -> anyhow::Result<HashSet<Uuid>> {
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let sites: Vec<&str> = events.iter().map(|e| e.site.as_str()).collect();
    let agents: Vec<&str> = events.iter().map(|e| e.agent.as_str()).collect();
    let seqs: Vec<i64> = events.iter().map(seq_of).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type().as_str()).collect();
    let times: Vec<DateTime<Utc>> = events.iter().map(|e| e.occurred_at).collect();
    let rows = tx
        .query(
            "INSERT INTO biometric.events (event_id, site, agent, seq, event_type, occurred_at)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[])
             ON CONFLICT (event_id) DO NOTHING
             RETURNING event_id",
            &[&ids, &sites, &agents, &seqs, &kinds, &times],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Records each agent of the batch once, in (site, agent) order: every hub locks the agents'
/// rows in the same order, so concurrent hubs wait for each other instead of deadlocking.
async fn upsert_agents(
    tx: &tokio_postgres::Transaction<'_>,
    events: &[&Event],
) -> anyhow::Result<()> {
    let mut last_seq = std::collections::BTreeMap::<(&str, &str), i64>::new();
    for e in events {
        let seq = last_seq.entry((&e.site, &e.agent)).or_insert(i64::MIN);
        *seq = (*seq).max(seq_of(e));
    }
    let sites: Vec<&str> = last_seq.keys().map(|k| k.0).collect();
    let agents: Vec<&str> = last_seq.keys().map(|k| k.1).collect();
    let seqs: Vec<i64> = last_seq.values().copied().collect();
    tx.execute(
        "INSERT INTO biometric.agents (site, agent, last_seq)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
         ON CONFLICT (site, agent) DO UPDATE SET last_seen = now(),
         last_seq = greatest(biometric.agents.last_seq, excluded.last_seq)",
        &[&sites, &agents, &seqs],
    )
    .await?;
    Ok(())
}

/// The subject and modality an event is about, for the audit log's indexes.
fn audit_keys(e: &Event) -> (Option<Uuid>, Option<&'static str>) {
    match &e.body {
        EventBody::Verification(v) => (Some(v.subject_id), Some(v.modality.as_str())),
        EventBody::Identification(i) => (i.subject_id, Some(i.modality.as_str())),
        EventBody::Enrollment(en) => (Some(en.subject_id), Some(en.modality.as_str())),
        EventBody::Deletion(d) => (Some(d.subject_id), None),
        _ => (None, None),
    }
}

/// Every new event goes to the audit log with its full payload.
async fn insert_audit_logs(
    tx: &tokio_postgres::Transaction<'_>,
    events: &[&Event],
) -> anyhow::Result<()> {
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let (users, modalities): (Vec<Option<Uuid>>, Vec<Option<&str>>) =
        events.iter().map(|e| audit_keys(e)).unzip();
    let sites: Vec<&str> = events.iter().map(|e| e.site.as_str()).collect();
    let agents: Vec<&str> = events.iter().map(|e| e.agent.as_str()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type().as_str()).collect();
    let payloads = events
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    let times: Vec<DateTime<Utc>> = events.iter().map(|e| e.occurred_at).collect();
    tx.execute(
        "INSERT INTO biometric.audit_logs (event_id, user_id, modality, site, agent, event_type, payload, created_at)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[], $8::timestamptz[])",
        &[&ids, &users, &modalities, &sites, &agents, &kinds, &payloads, &times],
    )
    .await?;
    Ok(())
}

/// The batch's verifications, one statement.
async fn insert_verifications(
    tx: &tokio_postgres::Transaction<'_>,
    events: &[&Event],
) -> anyhow::Result<()> {
    let verifications: Vec<(&Event, &apg_wire::Verification)> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Verification(v) => Some((*e, v)),
            _ => None,
        })
        .collect();
    if verifications.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = verifications.iter().map(|(e, _)| e.event_id).collect();
    let users: Vec<Uuid> = verifications.iter().map(|(_, v)| v.subject_id).collect();
    let modalities: Vec<&str> = verifications
        .iter()
        .map(|(_, v)| v.modality.as_str())
        .collect();
    let decisions = verifications
        .iter()
        .map(|(_, v)| {
            serde_json::to_value(v.decision).map(|d| d.as_str().unwrap_or_default().to_owned())
        })
        .collect::<Result<Vec<String>, _>>()?;
    let scores: Vec<Option<f64>> = verifications.iter().map(|(_, v)| v.score).collect();
    let sites: Vec<&str> = verifications.iter().map(|(e, _)| e.site.as_str()).collect();
    let agents: Vec<&str> = verifications
        .iter()
        .map(|(e, _)| e.agent.as_str())
        .collect();
    let seqs: Vec<i64> = verifications.iter().map(|(e, _)| seq_of(e)).collect();
    let devices: Vec<&str> = verifications
        .iter()
        .map(|(_, v)| v.device_id.as_str())
        .collect();
    let times: Vec<DateTime<Utc>> = verifications.iter().map(|(e, _)| e.occurred_at).collect();
    tx.execute(
        "INSERT INTO biometric.verification_history
         (event_id, user_id, modality, decision, score, site, agent, seq, device_id, created_at)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::float8[],
                              $6::text[], $7::text[], $8::bigint[], $9::text[], $10::timestamptz[])",
        &[&ids, &users, &modalities, &decisions, &scores, &sites, &agents, &seqs, &devices, &times],
    )
    .await?;
    Ok(())
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
