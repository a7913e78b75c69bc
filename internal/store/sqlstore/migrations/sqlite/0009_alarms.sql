-- Behaviour detection: alarms per device and kind, and the tenant's
-- detection settings (JSON, beside the audit check settings).

CREATE TABLE alarms (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    device_id         TEXT NOT NULL,
    kind              TEXT NOT NULL,
    severity          TEXT NOT NULL,
    state             TEXT NOT NULL,
    title             TEXT NOT NULL,
    first_raised      INTEGER NOT NULL,
    last_raised       INTEGER NOT NULL,
    raised_count      INTEGER NOT NULL DEFAULT 1,
    evidence          TEXT NOT NULL DEFAULT '{}',
    acknowledged_by   TEXT NOT NULL DEFAULT '',
    acknowledged_at   INTEGER NOT NULL DEFAULT 0,
    ack_note          TEXT NOT NULL DEFAULT '',
    cleared_at        INTEGER NOT NULL DEFAULT 0,
    mitigation        TEXT NOT NULL DEFAULT ''
);
-- At most one open (active or acknowledged) alarm per device and kind.
CREATE UNIQUE INDEX alarms_open ON alarms (tenant_id, device_id, kind) WHERE state <> 'cleared';
CREATE INDEX alarms_tenant ON alarms (tenant_id, id);
CREATE INDEX alarms_state ON alarms (tenant_id, state, id);
CREATE INDEX alarms_device ON alarms (tenant_id, device_id, id);

ALTER TABLE security_settings ADD COLUMN detection TEXT NOT NULL DEFAULT '';
