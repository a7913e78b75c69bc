-- Updates (OTA): artifacts. The content lives in the blob store under its
-- SHA-256 (sha256 '' until uploaded); product_ids and hardware_ids are JSON
-- arrays.
CREATE TABLE artifacts (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    name           TEXT NOT NULL,
    version        TEXT NOT NULL,
    product_ids    TEXT NOT NULL DEFAULT '[]',
    hardware_ids   TEXT NOT NULL DEFAULT '[]',
    sbom_ref       TEXT NOT NULL DEFAULT '',
    release_notes  TEXT NOT NULL DEFAULT '',
    sha256         TEXT NOT NULL DEFAULT '',
    length         INTEGER NOT NULL DEFAULT 0,
    uploaded_at    INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    created_by     TEXT NOT NULL
);
CREATE INDEX artifacts_tenant ON artifacts (tenant_id, id);
CREATE INDEX artifacts_sha256 ON artifacts (sha256);

-- The vendor's signed metadata (TUF root and targets), kept as signed:
-- every root version (devices walk the chain), every targets version.
CREATE TABLE ota_vendor_roots (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    version     INTEGER NOT NULL,
    expires     INTEGER NOT NULL,
    body        BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE ota_vendor_targets (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    version     INTEGER NOT NULL,
    expires     INTEGER NOT NULL,
    targets     INTEGER NOT NULL,
    body        BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

-- What the director tells each device to install now, with the signed
-- director targets; director_version only grows.
CREATE TABLE ota_assignments (
    device_id         TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    tenant_id         TEXT NOT NULL,
    artifact_id       TEXT NOT NULL,
    target_name       TEXT NOT NULL,
    version           TEXT NOT NULL,
    hardware_id       TEXT NOT NULL,
    campaign_id       TEXT NOT NULL DEFAULT '',
    director_version  INTEGER NOT NULL,
    body              BLOB NOT NULL,
    expires           INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    created_by        TEXT NOT NULL
);
CREATE INDEX ota_assignments_tenant ON ota_assignments (tenant_id, device_id);
