//! The agent's SQLite store: one file in WAL mode, versioned migrations, and one module per
//! table. Every write that reports a decision goes through [`Store::write`], so the state
//! change, its audit entry and its outbox event commit together or not at all.
//!
//! Functions here move sealed bytes only; encryption happens in [`crate::vault`].

pub mod api_keys;
pub mod audit;
pub mod data_keys;
pub mod history;
pub mod lockouts;
mod migrations;
pub mod outbox;
pub mod subjects;
pub mod templates;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction};

pub use migrations::MIGRATIONS;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database {path}: {source}")]
    Sqlite {
        /// Database file.
        path: PathBuf,
        /// Cause.
        source: rusqlite::Error,
    },
    /// A query on one table failed.
    #[error("database query on table {table} failed: {source}")]
    Query {
        /// Table.
        table: &'static str,
        /// Cause.
        source: rusqlite::Error,
    },
    /// The database was written by a newer agent.
    #[error("database {path} has schema version {found}, newer than this agent's {supported}; install the newer agent or restore a backup")]
    TooNew {
        /// Database file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Highest version this build knows.
        supported: i64,
    },
    /// The database directory could not be created.
    #[error("cannot create database directory {path}: {source}")]
    Directory {
        /// Directory.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A row holds data this agent cannot interpret.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// Which row.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// A row that must exist does not.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// A unique value is taken.
    #[error("{what} already exists")]
    Conflict {
        /// What collided.
        what: String,
    },
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// The open database.
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
    after_commit: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let sql = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(path, flags).map_err(sql)?;
        restrict_permissions(path);
        configure(&conn).map_err(sql)?;
        let store = Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            after_commit: OnceLock::new(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Maps a SQLite error to a [`StoreError`] naming this database.
    pub fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back on
        // drop), so a poisoned lock is still safe to use.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in one immediate transaction; commits when it returns `Ok`.
    pub fn write<T, E>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let value = f(&tx)?;
        tx.commit().map_err(|e| self.err(e))?;
        drop(conn);
        if let Some(hook) = self.after_commit.get() {
            hook();
        }
        Ok(value)
    }

    /// Sets what runs after every committed write (waking the sync drain, which then finds
    /// the transaction's outbox rows). Only the first call takes effect.
    pub fn set_after_commit(&self, hook: impl Fn() + Send + Sync + 'static) {
        let _ = self.after_commit.set(Box::new(hook));
    }

    /// Runs read-only work on the connection.
    pub fn read<T, E>(&self, f: impl FnOnce(&Connection) -> Result<T, E>) -> Result<T, E> {
        f(&self.lock())
    }

    /// Schema version in the file.
    pub fn schema_version(&self) -> StoreResult<i64> {
        self.lock()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn migrate(&self) -> StoreResult<()> {
        let supported = MIGRATIONS.len() as i64;
        let found = self.schema_version()?;
        if found > supported {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found,
                supported,
            });
        }
        for (index, script) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let version = index as i64 + 1;
            self.write(|tx| {
                tx.execute_batch(script).map_err(|e| self.err(e))?;
                tx.pragma_update(None, "user_version", version)
                    .map_err(|e| self.err(e))
            })?;
            tracing::info!(path = %self.path.display(), version, "Applied database migration.");
        }
        Ok(())
    }

    /// Quick integrity probe for health checks.
    pub fn check(&self) -> StoreResult<()> {
        let ok: String = self
            .lock()
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if ok == "ok" {
            Ok(())
        } else {
            Err(StoreError::Corrupt {
                what: format!("database {}", self.path.display()),
                detail: ok,
            })
        }
    }

    /// Copies the live database into `dest` with SQLite's online backup (templates stay
    /// encrypted; the master key is not included).
    pub fn backup_to(&self, dest: &Path) -> StoreResult<()> {
        let conn = self.lock();
        let mut out = Connection::open(dest).map_err(|e| self.err(e))?;
        restrict_permissions(dest);
        let backup = rusqlite::backup::Backup::new(&conn, &mut out).map_err(|e| self.err(e))?;
        backup
            .run_to_completion(256, Duration::from_millis(0), None)
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Replaces the live database content with `src` (already validated by the caller).
    pub fn restore_from(&self, src: &Path) -> StoreResult<()> {
        let mut conn = self.lock();
        conn.restore(
            rusqlite::MAIN_DB,
            src,
            None::<fn(rusqlite::backup::Progress)>,
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Writes the WAL back into the main file (on shutdown).
    pub fn checkpoint(&self) -> StoreResult<()> {
        self.lock()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .map_err(|e| self.err(e))
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    // secure_delete zeroes freed pages, so an erased subject's ciphertexts do not linger.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = ON;",
    )
}

/// Database, WAL and backups hold encrypted data, but no one else needs to read them.
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

/// Current time in the store's format: RFC 3339, UTC, milliseconds (sorts as text).
pub fn now() -> String {
    timestamp(chrono::Utc::now())
}

/// Formats a time in the store's format.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Parses a time written by [`timestamp`].
pub fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// A new time-ordered id.
pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// A migrated store in a temporary directory.
    pub fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("agent.db")).unwrap();
        (dir, store)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::temp_store;
    use super::*;

    #[test]
    fn opening_twice_keeps_the_schema_and_uses_wal() {
        let (dir, store) = temp_store();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        drop(store);
        let store = Store::open(&dir.path().join("agent.db")).unwrap();
        let mode: String = store
            .read(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(mode, "wal");
        store.check().unwrap();
    }

    #[test]
    fn a_database_from_a_newer_agent_is_refused() {
        let (dir, store) = temp_store();
        store
            .read(|c| c.pragma_update(None, "user_version", 99))
            .unwrap();
        drop(store);
        let err = Store::open(&dir.path().join("agent.db")).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn the_database_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, _store) = temp_store();
        let mode = std::fs::metadata(dir.path().join("agent.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
    }
}
