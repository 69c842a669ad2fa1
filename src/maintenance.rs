//! Operator maintenance: data-key rotation, backup and restore.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::agent::Agent;
use crate::decision::{audit_in, Actor};
use crate::store::{self, audit, data_keys, Store};
use crate::vault::VaultError;

/// Templates re-sealed per transaction: small enough that verifications never wait long for
/// the write lock.
pub const ROTATION_BATCH: u32 = 500;

/// What a rotation did.
#[derive(Debug, Clone, Serialize)]
pub struct RotationReport {
    /// Active data key version after the rotation.
    pub active_version: u32,
    /// Templates re-sealed.
    pub resealed: usize,
    /// True when every older key was retired.
    pub finished: bool,
    /// Wall time.
    pub duration_ms: f64,
}

/// Rotates the data key, or finishes an interrupted rotation: every template is re-sealed
/// under the new key in batches while verification goes on, then older keys are retired.
pub async fn rotate_keys(agent: &Arc<Agent>, actor: &Actor) -> Result<RotationReport, VaultError> {
    let _guard = agent.rotation.lock().await;
    let agent = agent.clone();
    let actor = actor.clone();
    tokio::task::spawn_blocking(move || rotate_blocking(&agent, &actor))
        .await
        .map_err(|e| {
            VaultError::Store(store::StoreError::Corrupt {
                what: "key rotation task".into(),
                detail: e.to_string(),
            })
        })?
}

fn rotate_blocking(agent: &Agent, actor: &Actor) -> Result<RotationReport, VaultError> {
    let started = Instant::now();
    let resuming = agent.vault.rotation_pending();
    if !resuming {
        agent.vault.begin_rotation(&agent.store)?;
    }
    let version = agent.vault.active_version();
    tracing::info!(version, resuming, "Data key rotation started.");
    let mut cursor = None;
    let mut resealed = 0;
    loop {
        let n = agent
            .vault
            .rotate_batch(&agent.store, ROTATION_BATCH, &mut cursor)?;
        if n == 0 {
            break;
        }
        resealed += n;
    }
    let finished = agent.vault.finish_rotation(&agent.store)?;
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    agent.store.write(|tx| {
        audit_in(
            tx,
            agent,
            actor,
            "keys.rotate",
            None,
            if finished { "rotated" } else { "incomplete" },
            serde_json::json!({ "active_version": version, "resealed": resealed, "resumed": resuming }),
        )
    })?;
    if finished {
        tracing::info!(
            version,
            resealed,
            duration_ms,
            "Data key rotation finished; older keys retired."
        );
    } else {
        tracing::error!(version, resealed, "Data key rotation could not retire the older keys: some templates cannot be opened. Re-enroll or restore them, then rotate again.");
    }
    Ok(RotationReport {
        active_version: version,
        resealed,
        finished,
        duration_ms,
    })
}

/// True when the active data key is older than `days` (0: never).
pub fn rotation_due(store: &Store, days: u32) -> Result<bool, store::StoreError> {
    if days == 0 {
        return Ok(false);
    }
    let keys = store.read(data_keys::list)?;
    let Some(active) = keys.iter().find(|k| k.state == "active") else {
        return Ok(false);
    };
    let age = store::parse_time(&active.created_at).map(|t| chrono::Utc::now() - t);
    Ok(age.is_some_and(|a| a > chrono::Duration::days(i64::from(days))))
}

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The keys failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// File trouble.
    #[error("{path}: {error}")]
    File {
        /// File.
        path: String,
        /// Cause.
        error: String,
    },
    /// The backup is not usable here.
    #[error("backup {path} cannot be restored: {reason}")]
    Refused {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
}

/// What a backup wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// Backup file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
}

/// Copies the live database (online, consistent) to `path` or a time-stamped file in
/// `storage.backup_dir`. Templates stay encrypted; restoring needs this agent's master key.
pub fn backup(
    agent: &Agent,
    actor: &Actor,
    path: Option<PathBuf>,
) -> Result<BackupReport, MaintenanceError> {
    let config = agent.config();
    let path = match path {
        Some(p) if p.is_absolute() => p,
        Some(p) => config.storage.backup_dir.join(p),
        None => config.storage.backup_dir.join(format!(
            "agent-{}.db",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        )),
    };
    let shown = path.display().to_string();
    if path.exists() {
        return Err(MaintenanceError::File {
            path: shown,
            error: "already exists; choose another name".into(),
        });
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| MaintenanceError::File {
            path: dir.display().to_string(),
            error: e.to_string(),
        })?;
    }
    agent.store.backup_to(&path)?;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    agent.store.write(|tx| {
        audit_in(
            tx,
            agent,
            actor,
            "backup",
            None,
            "written",
            serde_json::json!({ "path": shown, "bytes": bytes }),
        )
    })?;
    tracing::info!(path = %shown, bytes, "Backup written.");
    Ok(BackupReport { path, bytes })
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// Backup restored.
    pub path: PathBuf,
    /// Subjects now in the store.
    pub subjects: u64,
    /// Templates that could not be opened after the restore.
    pub unreadable_templates: u64,
}

/// Replaces the store with a backup after checking it: it must open, be of a schema this agent
/// knows, unwrap under this agent's master key, and have an intact audit chain.
pub fn restore(
    agent: &Agent,
    actor: &Actor,
    path: &Path,
) -> Result<RestoreReport, MaintenanceError> {
    let shown = path.display().to_string();
    let refused = |reason: String| MaintenanceError::Refused {
        path: shown.clone(),
        reason,
    };
    if !path.is_file() {
        return Err(refused("no such file".into()));
    }
    // Work on a copy: opening migrates, and the operator's file must stay as it was.
    let scratch = tempfile_dir(agent)?;
    let copy = scratch.join("restore.db");
    std::fs::copy(path, &copy).map_err(|e| MaintenanceError::File {
        path: shown.clone(),
        error: e.to_string(),
    })?;
    let candidate = Store::open(&copy).map_err(|e| refused(e.to_string()))?;
    agent
        .vault
        .check_keys_of(&candidate)
        .map_err(|e| refused(e.to_string()))?;
    let chain = candidate.read(|c| audit::verify(c, agent.vault.audit_key()))?;
    if !chain.intact() {
        return Err(refused(format!(
            "its audit log is broken at entries {:?}: it was altered",
            chain.broken
        )));
    }
    drop(candidate);
    agent.store.restore_from(&copy)?;
    let _ = std::fs::remove_dir_all(&scratch);
    agent.vault.reload(&agent.store)?;
    agent
        .reload_galleries()
        .map_err(|e| refused(e.to_string()))?;
    let subjects = agent.store.read(store::subjects::count)?;
    agent.store.write(|tx| {
        audit_in(
            tx,
            agent,
            actor,
            "restore",
            None,
            "restored",
            serde_json::json!({ "path": shown, "subjects": subjects }),
        )
    })?;
    tracing::warn!(path = %shown, subjects, "Store restored from backup.");
    Ok(RestoreReport {
        path: path.to_path_buf(),
        subjects,
        unreadable_templates: agent.unreadable_templates(),
    })
}

fn tempfile_dir(agent: &Agent) -> Result<PathBuf, MaintenanceError> {
    // Next to the database, so that it lies on the same (writable, private) file system.
    let base = agent
        .store
        .path()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!(".restore-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).map_err(|e| MaintenanceError::File {
        path: dir.display().to_string(),
        error: e.to_string(),
    })?;
    Ok(dir)
}
