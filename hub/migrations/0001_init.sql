-- apg-biometric hub schema, version 1. Applied once, recorded in biometric.schema_migrations.
CREATE SCHEMA IF NOT EXISTS biometric;

CREATE TABLE IF NOT EXISTS biometric.agents (
    site        text NOT NULL,
    agent       text NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    last_seq    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (site, agent)
);

-- One row per event ever received: the idempotency key of every insert.
CREATE TABLE IF NOT EXISTS biometric.events (
    event_id     uuid PRIMARY KEY,
    site         text NOT NULL,
    agent        text NOT NULL,
    seq          bigint NOT NULL,
    event_type   text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS events_agent_seq ON biometric.events (site, agent, seq);

CREATE TABLE IF NOT EXISTS biometric.subjects (
    user_id     uuid PRIMARY KEY,
    site        text NOT NULL,
    created_at  timestamptz NOT NULL,
    deleted_at  timestamptz
);

-- Templates stay sealed under the site key: the hub never holds the key.
CREATE TABLE IF NOT EXISTS biometric.templates (
    template_id   uuid PRIMARY KEY,
    user_id       uuid NOT NULL,
    modality      text NOT NULL,
    site          text NOT NULL,
    origin_agent  text NOT NULL,
    sealed        jsonb NOT NULL,
    created_at    timestamptz NOT NULL,
    event_id      uuid NOT NULL
);
CREATE INDEX IF NOT EXISTS templates_user_modality ON biometric.templates (user_id, modality);
CREATE INDEX IF NOT EXISTS templates_user_created ON biometric.templates (user_id, created_at);
CREATE INDEX IF NOT EXISTS templates_created ON biometric.templates (created_at);
ALTER TABLE biometric.templates ENABLE ROW LEVEL SECURITY;
-- A session sees the templates of the user named in biometric.user_id; the hub's own role owns
-- the table and is not subject to the policy.
DROP POLICY IF EXISTS templates_per_user ON biometric.templates;
CREATE POLICY templates_per_user ON biometric.templates
    USING (user_id = nullif(current_setting('biometric.user_id', true), '')::uuid);

CREATE TABLE IF NOT EXISTS biometric.verification_history (
    event_id     uuid PRIMARY KEY,
    user_id      uuid NOT NULL,
    modality     text NOT NULL,
    decision     text NOT NULL,
    score        double precision,
    site         text NOT NULL,
    agent        text NOT NULL,
    seq          bigint NOT NULL,
    device_id    text NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS vh_user_modality ON biometric.verification_history (user_id, modality);
CREATE INDEX IF NOT EXISTS vh_user_created ON biometric.verification_history (user_id, created_at);
CREATE INDEX IF NOT EXISTS vh_created ON biometric.verification_history (created_at);

-- Every event, whole, partitioned by month of occurrence. Partitions are created on demand.
CREATE TABLE IF NOT EXISTS biometric.audit_logs (
    event_id     uuid NOT NULL,
    user_id      uuid,
    modality     text,
    site         text NOT NULL,
    agent        text NOT NULL,
    event_type   text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (event_id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX IF NOT EXISTS audit_user_modality ON biometric.audit_logs (user_id, modality);
CREATE INDEX IF NOT EXISTS audit_user_created ON biometric.audit_logs (user_id, created_at);
CREATE INDEX IF NOT EXISTS audit_created ON biometric.audit_logs (created_at);

CREATE TABLE IF NOT EXISTS biometric.dead_letters (
    id           bigserial PRIMARY KEY,
    topic        text NOT NULL,
    payload      bytea NOT NULL,
    reason       text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
