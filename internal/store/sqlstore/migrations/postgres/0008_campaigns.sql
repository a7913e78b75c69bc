-- Update campaigns: one artifact rolled out to the devices a query selects,
-- a canary then waves; rev guards the scheduler's steps (two nodes never
-- start the same wave). query and maint_window are JSON ('' = no window).
CREATE TABLE campaigns (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    tenant_id          TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    name               TEXT NOT NULL,
    artifact_id        TEXT COLLATE "C" NOT NULL,
    version            TEXT COLLATE "C" NOT NULL,
    query              TEXT NOT NULL,
    dynamic            BIGINT NOT NULL DEFAULT 0,
    state              TEXT COLLATE "C" NOT NULL,
    reason             TEXT NOT NULL DEFAULT '',
    canary             BIGINT NOT NULL,
    wave_size          BIGINT NOT NULL,
    wave_interval      BIGINT NOT NULL,
    success_ratio      DOUBLE PRECISION NOT NULL,
    max_failure_ratio  DOUBLE PRECISION NOT NULL,
    pause_on_failure   BIGINT NOT NULL DEFAULT 0,
    maint_window       TEXT NOT NULL DEFAULT '',
    require_consent    BIGINT NOT NULL DEFAULT 0,
    wave               BIGINT NOT NULL DEFAULT 0,
    wave_started_at    BIGINT NOT NULL DEFAULT 0,
    total              BIGINT NOT NULL DEFAULT 0,
    rev                BIGINT NOT NULL DEFAULT 1,
    created_at         BIGINT NOT NULL,
    created_by         TEXT COLLATE "C" NOT NULL,
    updated_at         BIGINT NOT NULL,
    finished_at        BIGINT NOT NULL DEFAULT 0,
    -- the highest device ID taken into a wave so far: the next wave is
    -- read from there on (the scheduler alone writes it)
    taken_to           TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX campaigns_tenant ON campaigns (tenant_id, id);
CREATE INDEX campaigns_open ON campaigns (state, tenant_id);
CREATE INDEX campaigns_artifact ON campaigns (tenant_id, artifact_id);

-- One row per targeted device; wave 0 = not in a wave yet. The primary key
-- serves taking the next wave (from campaigns.taken_to on, by device ID);
-- the partial index holds only rows already in a wave (counts, devices
-- ready to be told), so creating a campaign writes one B-tree entry per
-- device, not two.
CREATE TABLE campaign_devices (
    campaign_id  TEXT COLLATE "C" NOT NULL,
    device_id    TEXT COLLATE "C" NOT NULL,
    tenant_id    TEXT COLLATE "C" NOT NULL,
    wave         BIGINT NOT NULL DEFAULT 0,
    status       TEXT COLLATE "C" NOT NULL,
    consent      TEXT COLLATE "C" NOT NULL DEFAULT '',
    detail       TEXT NOT NULL DEFAULT '',
    bytes        BIGINT NOT NULL DEFAULT 0,
    total        BIGINT NOT NULL DEFAULT 0,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, device_id)
);
CREATE INDEX campaign_devices_wave ON campaign_devices (campaign_id, wave, status, device_id) WHERE wave > 0;

-- A release found bad: no device may install it any more.
ALTER TABLE artifacts ADD COLUMN invalidated_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE artifacts ADD COLUMN invalidated_reason TEXT NOT NULL DEFAULT '';

-- The device's last report on its assignment; a final status ends it.
ALTER TABLE ota_assignments ADD COLUMN status TEXT COLLATE "C" NOT NULL DEFAULT 'pending';
ALTER TABLE ota_assignments ADD COLUMN detail TEXT NOT NULL DEFAULT '';
ALTER TABLE ota_assignments ADD COLUMN status_at BIGINT NOT NULL DEFAULT 0;
