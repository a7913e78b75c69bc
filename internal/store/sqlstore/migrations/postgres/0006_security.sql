-- Security engine: SBOMs per product firmware version and their components,
-- OSV advisories (tenant '' = platform-wide) with their affected packages
-- and aliases, MUD profiles per product, flows observed on devices, audit
-- findings and each tenant's check settings.
CREATE TABLE sboms (
    id           TEXT COLLATE "C" PRIMARY KEY,
    tenant_id    TEXT COLLATE "C" NOT NULL,
    product_id   TEXT COLLATE "C" NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    fw_version   TEXT COLLATE "C" NOT NULL,
    format       TEXT COLLATE "C" NOT NULL,
    spec_version TEXT COLLATE "C" NOT NULL DEFAULT '',
    name         TEXT COLLATE "C" NOT NULL DEFAULT '',
    components   BIGINT NOT NULL DEFAULT 0,
    unmatched    BIGINT NOT NULL DEFAULT 0,
    sha256       TEXT COLLATE "C" NOT NULL,
    imported_at  BIGINT NOT NULL,
    imported_by  TEXT COLLATE "C" NOT NULL,
    UNIQUE (product_id, fw_version)
);
CREATE INDEX sboms_tenant ON sboms (tenant_id, product_id, fw_version);

CREATE TABLE sbom_components (
    sbom_id     TEXT COLLATE "C" NOT NULL REFERENCES sboms(id) ON DELETE CASCADE,
    idx         BIGINT NOT NULL,
    product_id  TEXT COLLATE "C" NOT NULL,
    fw_version  TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    version     TEXT COLLATE "C" NOT NULL DEFAULT '',
    purl        TEXT COLLATE "C" NOT NULL DEFAULT '',
    ecosystem   TEXT COLLATE "C" NOT NULL DEFAULT '',
    package     TEXT COLLATE "C" NOT NULL DEFAULT '',
    pkg_key     TEXT COLLATE "C" NOT NULL DEFAULT '',
    PRIMARY KEY (sbom_id, idx)
);
CREATE INDEX sbom_components_pkg ON sbom_components (pkg_key, product_id, fw_version);
CREATE INDEX sbom_components_fw ON sbom_components (product_id, fw_version);

CREATE TABLE advisories (
    tenant_id    TEXT COLLATE "C" NOT NULL,
    id           TEXT COLLATE "C" NOT NULL,
    aliases      TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    summary      TEXT COLLATE "C" NOT NULL DEFAULT '',
    severity     TEXT COLLATE "C" NOT NULL DEFAULT 'unknown',
    published    BIGINT NOT NULL DEFAULT 0,
    modified     BIGINT NOT NULL,
    withdrawn    BIGINT NOT NULL DEFAULT 0,
    packages     TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    record       TEXT COLLATE "C" NOT NULL,
    imported_at  BIGINT NOT NULL,
    imported_by  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE advisory_aliases (
    tenant_id    TEXT COLLATE "C" NOT NULL,
    alias        TEXT COLLATE "C" NOT NULL,
    advisory_id  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, alias, advisory_id)
);

CREATE TABLE advisory_affected (
    tenant_id    TEXT COLLATE "C" NOT NULL,
    advisory_id  TEXT COLLATE "C" NOT NULL,
    idx          BIGINT NOT NULL,
    ecosystem    TEXT COLLATE "C" NOT NULL,
    package      TEXT COLLATE "C" NOT NULL,
    pkg_key      TEXT COLLATE "C" NOT NULL,
    ranges       TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    versions     TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    PRIMARY KEY (tenant_id, advisory_id, idx)
);
CREATE INDEX advisory_affected_pkg ON advisory_affected (pkg_key, tenant_id);

CREATE TABLE mud_profiles (
    product_id   TEXT COLLATE "C" PRIMARY KEY REFERENCES products(id) ON DELETE CASCADE,
    tenant_id    TEXT COLLATE "C" NOT NULL,
    mud_url      TEXT COLLATE "C" NOT NULL,
    systeminfo   TEXT COLLATE "C" NOT NULL DEFAULT '',
    mfg_name     TEXT COLLATE "C" NOT NULL DEFAULT '',
    model_name   TEXT COLLATE "C" NOT NULL DEFAULT '',
    last_update  BIGINT NOT NULL DEFAULT 0,
    flows        TEXT COLLATE "C" NOT NULL,
    document     TEXT COLLATE "C" NOT NULL,
    sha256       TEXT COLLATE "C" NOT NULL,
    imported_at  BIGINT NOT NULL,
    imported_by  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX mud_profiles_tenant ON mud_profiles (tenant_id, product_id);

CREATE TABLE observed_flows (
    tenant_id       TEXT COLLATE "C" NOT NULL,
    device_id       TEXT COLLATE "C" NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    flow_key        TEXT COLLATE "C" NOT NULL,
    direction       TEXT COLLATE "C" NOT NULL,
    protocol        TEXT COLLATE "C" NOT NULL,
    remote_host     TEXT COLLATE "C" NOT NULL DEFAULT '',
    remote_address  TEXT COLLATE "C" NOT NULL DEFAULT '',
    remote_port     BIGINT NOT NULL DEFAULT 0,
    local_port      BIGINT NOT NULL DEFAULT 0,
    first_seen      BIGINT NOT NULL,
    last_seen       BIGINT NOT NULL,
    reports         BIGINT NOT NULL DEFAULT 0,
    bytes           BIGINT NOT NULL DEFAULT 0,
    packets         BIGINT NOT NULL DEFAULT 0,
    verdict         TEXT COLLATE "C" NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, device_id, flow_key)
);
CREATE INDEX observed_flows_seen ON observed_flows (tenant_id, last_seen);
CREATE INDEX observed_flows_device ON observed_flows (device_id);

CREATE TABLE findings (
    id                TEXT COLLATE "C" PRIMARY KEY,
    tenant_id         TEXT COLLATE "C" NOT NULL,
    check_id          TEXT COLLATE "C" NOT NULL,
    resource_type     TEXT COLLATE "C" NOT NULL,
    resource_id       TEXT COLLATE "C" NOT NULL,
    fkey              TEXT COLLATE "C" NOT NULL DEFAULT '',
    severity          TEXT COLLATE "C" NOT NULL,
    severity_rank     BIGINT NOT NULL,
    title             TEXT COLLATE "C" NOT NULL,
    evidence          TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    status            TEXT COLLATE "C" NOT NULL,
    first_seen        BIGINT NOT NULL,
    last_seen         BIGINT NOT NULL,
    resolved_at       BIGINT NOT NULL DEFAULT 0,
    suppressed_until  BIGINT NOT NULL DEFAULT 0,
    suppressed_reason TEXT COLLATE "C" NOT NULL DEFAULT '',
    suppressed_by     TEXT COLLATE "C" NOT NULL DEFAULT '',
    UNIQUE (tenant_id, check_id, resource_id, fkey)
);
CREATE INDEX findings_tenant ON findings (tenant_id, id);
CREATE INDEX findings_status ON findings (tenant_id, status, id);
CREATE INDEX findings_resource ON findings (tenant_id, resource_id);

CREATE TABLE security_settings (
    tenant_id              TEXT COLLATE "C" PRIMARY KEY,
    stale_after_days       BIGINT NOT NULL,
    max_tenant_admin_keys  BIGINT NOT NULL,
    unused_key_days        BIGINT NOT NULL,
    flow_window_hours      BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL,
    updated_by             TEXT COLLATE "C" NOT NULL
);
