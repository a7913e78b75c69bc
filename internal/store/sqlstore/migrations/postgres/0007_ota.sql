-- Updates (OTA): artifacts. The content lives in the blob store under its
-- SHA-256 (sha256 '' until uploaded); product_ids and hardware_ids are JSON
-- arrays.
CREATE TABLE artifacts (
    id             TEXT COLLATE "C" PRIMARY KEY,
    tenant_id      TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    name           TEXT NOT NULL,
    version        TEXT COLLATE "C" NOT NULL,
    product_ids    TEXT NOT NULL DEFAULT '[]',
    hardware_ids   TEXT NOT NULL DEFAULT '[]',
    sbom_ref       TEXT NOT NULL DEFAULT '',
    release_notes  TEXT NOT NULL DEFAULT '',
    sha256         TEXT COLLATE "C" NOT NULL DEFAULT '',
    length         BIGINT NOT NULL DEFAULT 0,
    uploaded_at    BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    created_by     TEXT COLLATE "C" NOT NULL
);
CREATE INDEX artifacts_tenant ON artifacts (tenant_id, id);
CREATE INDEX artifacts_sha256 ON artifacts (sha256);

-- The vendor's signed metadata (TUF root and targets), kept as signed:
-- every root version (devices walk the chain), every targets version.
CREATE TABLE ota_vendor_roots (
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    version     BIGINT NOT NULL,
    expires     BIGINT NOT NULL,
    body        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE ota_vendor_targets (
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    version     BIGINT NOT NULL,
    expires     BIGINT NOT NULL,
    targets     BIGINT NOT NULL,
    body        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

-- What the director tells each device to install now, with the signed
-- director targets; director_version only grows.
CREATE TABLE ota_assignments (
    device_id         TEXT COLLATE "C" PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    tenant_id         TEXT COLLATE "C" NOT NULL,
    artifact_id       TEXT COLLATE "C" NOT NULL,
    target_name       TEXT NOT NULL,
    version           TEXT COLLATE "C" NOT NULL,
    hardware_id       TEXT NOT NULL,
    campaign_id       TEXT COLLATE "C" NOT NULL DEFAULT '',
    director_version  BIGINT NOT NULL,
    body              BYTEA NOT NULL,
    expires           BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    created_by        TEXT COLLATE "C" NOT NULL
);
CREATE INDEX ota_assignments_tenant ON ota_assignments (tenant_id, device_id);
