-- Behaviour detection: alarms per device and kind, and the tenant's
-- detection settings (JSON, beside the audit check settings).

CREATE TABLE alarms (
    id                TEXT COLLATE "C" PRIMARY KEY,
    tenant_id         TEXT COLLATE "C" NOT NULL,
    device_id         TEXT COLLATE "C" NOT NULL,
    kind              TEXT COLLATE "C" NOT NULL,
    severity          TEXT COLLATE "C" NOT NULL,
    state             TEXT COLLATE "C" NOT NULL,
    title             TEXT COLLATE "C" NOT NULL,
    first_raised      BIGINT NOT NULL,
    last_raised       BIGINT NOT NULL,
    raised_count      BIGINT NOT NULL DEFAULT 1,
    evidence          TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    acknowledged_by   TEXT COLLATE "C" NOT NULL DEFAULT '',
    acknowledged_at   BIGINT NOT NULL DEFAULT 0,
    ack_note          TEXT COLLATE "C" NOT NULL DEFAULT '',
    cleared_at        BIGINT NOT NULL DEFAULT 0,
    mitigation        TEXT COLLATE "C" NOT NULL DEFAULT ''
);
-- At most one open (active or acknowledged) alarm per device and kind.
CREATE UNIQUE INDEX alarms_open ON alarms (tenant_id, device_id, kind) WHERE state <> 'cleared';
CREATE INDEX alarms_tenant ON alarms (tenant_id, id);
CREATE INDEX alarms_state ON alarms (tenant_id, state, id);
CREATE INDEX alarms_device ON alarms (tenant_id, device_id, id);

ALTER TABLE security_settings ADD COLUMN detection TEXT NOT NULL DEFAULT '';
