//! Versioned schema migrations, applied in order inside one transaction each.
//!
//! `PRAGMA user_version` records the last applied migration. Migrations are append-only: a
//! released migration is never edited, a change is a new entry.

/// Migration scripts; index + 1 is the schema version they produce.
pub const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );

    -- Data keys, each wrapped (AES-256-GCM) under a key derived from the master key.
    CREATE TABLE data_keys (
        version    INTEGER PRIMARY KEY,
        nonce      BLOB NOT NULL,
        wrapped    BLOB NOT NULL,
        state      TEXT NOT NULL CHECK (state IN ('active', 'retiring', 'retired')),
        created_at TEXT NOT NULL,
        retired_at TEXT
    );

    CREATE TABLE subjects (
        id           TEXT PRIMARY KEY,
        external_id  TEXT NOT NULL UNIQUE,
        display_name TEXT,
        origin_agent TEXT NOT NULL,
        created_at   TEXT NOT NULL
    );

    -- key_version 0 marks a plaintext template (development profile only).
    CREATE TABLE templates (
        id           TEXT PRIMARY KEY,
        subject_id   TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
        modality     TEXT NOT NULL,
        format       TEXT NOT NULL,
        quality      REAL NOT NULL,
        key_version  INTEGER NOT NULL,
        nonce        BLOB NOT NULL,
        ciphertext   BLOB NOT NULL,
        origin_agent TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL
    );
    CREATE INDEX templates_by_subject ON templates(subject_id, modality);
    CREATE INDEX templates_by_key_version ON templates(key_version);

    CREATE TABLE verification_history (
        id          TEXT PRIMARY KEY,
        created_at  TEXT NOT NULL,
        operation   TEXT NOT NULL CHECK (operation IN ('verify', 'identify')),
        subject_id  TEXT,
        modality    TEXT NOT NULL,
        decision    TEXT NOT NULL,
        score       REAL,
        threshold   REAL,
        device_id   TEXT,
        request_id  TEXT,
        duration_ms REAL NOT NULL,
        reason      TEXT
    );
    CREATE INDEX history_by_subject ON verification_history(subject_id, created_at);
    CREATE INDEX history_by_time ON verification_history(created_at);

    -- Append-only, MAC-chained audit log (see store/audit.rs).
    CREATE TABLE audit_log (
        seq        INTEGER PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        actor      TEXT NOT NULL,
        action     TEXT NOT NULL,
        subject_id TEXT,
        detail     TEXT NOT NULL,
        prev_mac   TEXT NOT NULL,
        mac        TEXT NOT NULL
    );
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

    -- API keys are kept only as SHA-256 hashes.
    CREATE TABLE api_keys (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        role         TEXT NOT NULL,
        key_hash     TEXT NOT NULL UNIQUE,
        created_at   TEXT NOT NULL,
        expires_at   TEXT,
        revoked_at   TEXT,
        last_used_at TEXT
    );

    CREATE TABLE lockouts (
        subject_id      TEXT PRIMARY KEY REFERENCES subjects(id) ON DELETE CASCADE,
        failed_attempts INTEGER NOT NULL,
        locked_until    TEXT,
        updated_at      TEXT NOT NULL
    );

    -- Events waiting for the sync task, in commit order.
    CREATE TABLE outbox (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        id         TEXT NOT NULL UNIQUE,
        event_type TEXT NOT NULL,
        payload    TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    "#,
];
