-- Times are Unix microseconds (INTEGER) in both backends, so ordering and
-- cursors behave the same everywhere. 0 means "never" where a time is optional.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE products (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants(id),
    vendor            TEXT NOT NULL,
    model             TEXT NOT NULL,
    hardware_revision TEXT NOT NULL DEFAULT '',
    end_of_support    INTEGER NOT NULL DEFAULT 0,
    mud_url           TEXT NOT NULL DEFAULT '',
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    UNIQUE (tenant_id, vendor, model, hardware_revision)
);
CREATE INDEX products_tenant ON products (tenant_id, id);

CREATE TABLE devices (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    product_id  TEXT NOT NULL REFERENCES products(id),
    serial      TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL,
    tags        TEXT NOT NULL DEFAULT '[]',
    attrs       TEXT NOT NULL DEFAULT '{}',
    fw_version  TEXT NOT NULL DEFAULT '',
    fw_key      TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL DEFAULT 0,
    version     INTEGER NOT NULL DEFAULT 1,
    UNIQUE (product_id, serial)
);
-- One index per typical filter, each ending in id so keyset pages walk it.
CREATE INDEX devices_tenant_id ON devices (tenant_id, id);
CREATE INDEX devices_state ON devices (tenant_id, state, id);
CREATE INDEX devices_product ON devices (tenant_id, product_id, id);
CREATE INDEX devices_fw ON devices (tenant_id, fw_key, id);
CREATE INDEX devices_seen ON devices (tenant_id, last_seen, id);
CREATE INDEX devices_serial ON devices (tenant_id, serial, id);
CREATE INDEX devices_created ON devices (tenant_id, created_at, id);

CREATE TABLE device_tags (
    tenant_id  TEXT NOT NULL,
    tag        TEXT NOT NULL,
    device_id  TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    PRIMARY KEY (tenant_id, tag, device_id)
);
CREATE INDEX device_tags_device ON device_tags (device_id);

CREATE TABLE device_attrs (
    tenant_id  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    device_id  TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    PRIMARY KEY (tenant_id, key, value, device_id)
);
CREATE INDEX device_attrs_device ON device_attrs (device_id);

CREATE TABLE transitions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id  TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    actor      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX transitions_device ON transitions (tenant_id, device_id, id);

CREATE TABLE device_groups (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    query        TEXT NOT NULL DEFAULT '',
    description  TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE group_members (
    tenant_id  TEXT NOT NULL,
    group_id   TEXT NOT NULL REFERENCES device_groups(id) ON DELETE CASCADE,
    device_id  TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    PRIMARY KEY (tenant_id, group_id, device_id)
);
CREATE INDEX group_members_device ON group_members (device_id);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL DEFAULT '',
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL UNIQUE,
    hash        BLOB NOT NULL,
    role        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    last_used   INTEGER NOT NULL DEFAULT 0,
    revoked_at  INTEGER NOT NULL DEFAULT 0,
    expires_at  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

CREATE TABLE audit_log (
    tenant_id  TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    summary    BLOB,
    prev_hash  BLOB NOT NULL,
    hash       BLOB NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_target ON audit_log (tenant_id, target, seq);

CREATE TABLE audit_heads (
    tenant_id  TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL,
    hash       BLOB NOT NULL
);

CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    tenant_id  TEXT NOT NULL,
    type       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    at         INTEGER NOT NULL,
    data       BLOB
);

CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    url         TEXT NOT NULL,
    types       TEXT NOT NULL DEFAULT '[]',
    secret      TEXT NOT NULL,
    active      BOOLEAN NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id, id);

CREATE TABLE webhook_deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id    TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    tenant_id     TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    payload       BLOB NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    status        TEXT NOT NULL,
    last_code     INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT NOT NULL DEFAULT '',
    next_attempt  INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (tenant_id, webhook_id, id);

CREATE TABLE idempotency (
    scope         TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  BLOB NOT NULL,
    status        INTEGER NOT NULL DEFAULT 0,
    body          BLOB,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
