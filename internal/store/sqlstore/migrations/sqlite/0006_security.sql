-- Security engine: SBOMs per product firmware version and their components,
-- OSV advisories (tenant '' = platform-wide) with their affected packages
-- and aliases, MUD profiles per product, flows observed on devices, audit
-- findings and each tenant's check settings.
CREATE TABLE sboms (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    product_id   TEXT NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    fw_version   TEXT NOT NULL,
    format       TEXT NOT NULL,
    spec_version TEXT NOT NULL DEFAULT '',
    name         TEXT NOT NULL DEFAULT '',
    components   INTEGER NOT NULL DEFAULT 0,
    unmatched    INTEGER NOT NULL DEFAULT 0,
    sha256       TEXT NOT NULL,
    imported_at  INTEGER NOT NULL,
    imported_by  TEXT NOT NULL,
    UNIQUE (product_id, fw_version)
);
CREATE INDEX sboms_tenant ON sboms (tenant_id, product_id, fw_version);

CREATE TABLE sbom_components (
    sbom_id     TEXT NOT NULL REFERENCES sboms(id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    product_id  TEXT NOT NULL,
    fw_version  TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL DEFAULT '',
    purl        TEXT NOT NULL DEFAULT '',
    ecosystem   TEXT NOT NULL DEFAULT '',
    package     TEXT NOT NULL DEFAULT '',
    pkg_key     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (sbom_id, idx)
);
CREATE INDEX sbom_components_pkg ON sbom_components (pkg_key, product_id, fw_version);
CREATE INDEX sbom_components_fw ON sbom_components (product_id, fw_version);

CREATE TABLE advisories (
    tenant_id    TEXT NOT NULL,
    id           TEXT NOT NULL,
    aliases      TEXT NOT NULL DEFAULT '[]',
    summary      TEXT NOT NULL DEFAULT '',
    severity     TEXT NOT NULL DEFAULT 'unknown',
    published    INTEGER NOT NULL DEFAULT 0,
    modified     INTEGER NOT NULL,
    withdrawn    INTEGER NOT NULL DEFAULT 0,
    packages     TEXT NOT NULL DEFAULT '[]',
    record       TEXT NOT NULL,
    imported_at  INTEGER NOT NULL,
    imported_by  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE advisory_aliases (
    tenant_id    TEXT NOT NULL,
    alias        TEXT NOT NULL,
    advisory_id  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, alias, advisory_id)
);

CREATE TABLE advisory_affected (
    tenant_id    TEXT NOT NULL,
    advisory_id  TEXT NOT NULL,
    idx          INTEGER NOT NULL,
    ecosystem    TEXT NOT NULL,
    package      TEXT NOT NULL,
    pkg_key      TEXT NOT NULL,
    ranges       TEXT NOT NULL DEFAULT '[]',
    versions     TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (tenant_id, advisory_id, idx)
);
CREATE INDEX advisory_affected_pkg ON advisory_affected (pkg_key, tenant_id);

CREATE TABLE mud_profiles (
    product_id   TEXT PRIMARY KEY REFERENCES products(id) ON DELETE CASCADE,
    tenant_id    TEXT NOT NULL,
    mud_url      TEXT NOT NULL,
    systeminfo   TEXT NOT NULL DEFAULT '',
    mfg_name     TEXT NOT NULL DEFAULT '',
    model_name   TEXT NOT NULL DEFAULT '',
    last_update  INTEGER NOT NULL DEFAULT 0,
    flows        TEXT NOT NULL,
    document     TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    imported_at  INTEGER NOT NULL,
    imported_by  TEXT NOT NULL
);
CREATE INDEX mud_profiles_tenant ON mud_profiles (tenant_id, product_id);

CREATE TABLE observed_flows (
    tenant_id       TEXT NOT NULL,
    device_id       TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    flow_key        TEXT NOT NULL,
    direction       TEXT NOT NULL,
    protocol        TEXT NOT NULL,
    remote_host     TEXT NOT NULL DEFAULT '',
    remote_address  TEXT NOT NULL DEFAULT '',
    remote_port     INTEGER NOT NULL DEFAULT 0,
    local_port      INTEGER NOT NULL DEFAULT 0,
    first_seen      INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL,
    reports         INTEGER NOT NULL DEFAULT 0,
    bytes           INTEGER NOT NULL DEFAULT 0,
    packets         INTEGER NOT NULL DEFAULT 0,
    verdict         TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, device_id, flow_key)
);
CREATE INDEX observed_flows_seen ON observed_flows (tenant_id, last_seen);
CREATE INDEX observed_flows_device ON observed_flows (device_id);

CREATE TABLE findings (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    check_id          TEXT NOT NULL,
    resource_type     TEXT NOT NULL,
    resource_id       TEXT NOT NULL,
    fkey              TEXT NOT NULL DEFAULT '',
    severity          TEXT NOT NULL,
    severity_rank     INTEGER NOT NULL,
    title             TEXT NOT NULL,
    evidence          TEXT NOT NULL DEFAULT '{}',
    status            TEXT NOT NULL,
    first_seen        INTEGER NOT NULL,
    last_seen         INTEGER NOT NULL,
    resolved_at       INTEGER NOT NULL DEFAULT 0,
    suppressed_until  INTEGER NOT NULL DEFAULT 0,
    suppressed_reason TEXT NOT NULL DEFAULT '',
    suppressed_by     TEXT NOT NULL DEFAULT '',
    UNIQUE (tenant_id, check_id, resource_id, fkey)
);
CREATE INDEX findings_tenant ON findings (tenant_id, id);
CREATE INDEX findings_status ON findings (tenant_id, status, id);
CREATE INDEX findings_resource ON findings (tenant_id, resource_id);

CREATE TABLE security_settings (
    tenant_id              TEXT PRIMARY KEY,
    stale_after_days       INTEGER NOT NULL,
    max_tenant_admin_keys  INTEGER NOT NULL,
    unused_key_days        INTEGER NOT NULL,
    flow_window_hours      INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL,
    updated_by             TEXT NOT NULL
);
