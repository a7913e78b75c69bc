-- Times are Unix microseconds (BIGINT) in both backends, so ordering and
-- cursors behave the same everywhere. 0 means "never" where a time is optional.
CREATE TABLE tenants (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    kind        TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE products (
    id                TEXT COLLATE "C" PRIMARY KEY,
    tenant_id         TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    vendor            TEXT COLLATE "C" NOT NULL,
    model             TEXT COLLATE "C" NOT NULL,
    hardware_revision TEXT COLLATE "C" NOT NULL DEFAULT '',
    end_of_support    BIGINT NOT NULL DEFAULT 0,
    mud_url           TEXT COLLATE "C" NOT NULL DEFAULT '',
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (tenant_id, vendor, model, hardware_revision)
);
CREATE INDEX products_tenant ON products (tenant_id, id);

CREATE TABLE devices (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    product_id  TEXT COLLATE "C" NOT NULL REFERENCES products(id),
    serial      TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL DEFAULT '',
    state       TEXT COLLATE "C" NOT NULL,
    tags        TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    attrs       TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    fw_version  TEXT COLLATE "C" NOT NULL DEFAULT '',
    fw_key      TEXT COLLATE "C" NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL DEFAULT 0,
    version     BIGINT NOT NULL DEFAULT 1,
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
    tenant_id  TEXT COLLATE "C" NOT NULL,
    tag        TEXT COLLATE "C" NOT NULL,
    device_id  TEXT COLLATE "C" NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    PRIMARY KEY (tenant_id, tag, device_id)
);
CREATE INDEX device_tags_device ON device_tags (device_id);

CREATE TABLE device_attrs (
    tenant_id  TEXT COLLATE "C" NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,
    value      TEXT COLLATE "C" NOT NULL,
    device_id  TEXT COLLATE "C" NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    PRIMARY KEY (tenant_id, key, value, device_id)
);
CREATE INDEX device_attrs_device ON device_attrs (device_id);

CREATE TABLE transitions (
    id         BIGSERIAL PRIMARY KEY,
    tenant_id  TEXT COLLATE "C" NOT NULL,
    device_id  TEXT COLLATE "C" NOT NULL,
    from_state TEXT COLLATE "C" NOT NULL,
    to_state   TEXT COLLATE "C" NOT NULL,
    actor      TEXT COLLATE "C" NOT NULL,
    reason     TEXT COLLATE "C" NOT NULL,
    at         BIGINT NOT NULL
);
CREATE INDEX transitions_device ON transitions (tenant_id, device_id, id);

CREATE TABLE device_groups (
    id           TEXT COLLATE "C" PRIMARY KEY,
    tenant_id    TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    name         TEXT COLLATE "C" NOT NULL,
    kind         TEXT COLLATE "C" NOT NULL,
    query        TEXT COLLATE "C" NOT NULL DEFAULT '',
    description  TEXT COLLATE "C" NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE group_members (
    tenant_id  TEXT COLLATE "C" NOT NULL,
    group_id   TEXT COLLATE "C" NOT NULL REFERENCES device_groups(id) ON DELETE CASCADE,
    device_id  TEXT COLLATE "C" NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    PRIMARY KEY (tenant_id, group_id, device_id)
);
CREATE INDEX group_members_device ON group_members (device_id);

CREATE TABLE api_keys (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL DEFAULT '',
    name        TEXT COLLATE "C" NOT NULL,
    prefix      TEXT COLLATE "C" NOT NULL UNIQUE,
    hash        BYTEA NOT NULL,
    role        TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT COLLATE "C" NOT NULL,
    last_used   BIGINT NOT NULL DEFAULT 0,
    revoked_at  BIGINT NOT NULL DEFAULT 0,
    expires_at  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

CREATE TABLE audit_log (
    tenant_id  TEXT COLLATE "C" NOT NULL,
    seq        BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    actor      TEXT COLLATE "C" NOT NULL,
    action     TEXT COLLATE "C" NOT NULL,
    target     TEXT COLLATE "C" NOT NULL,
    summary    BYTEA,
    prev_hash  BYTEA NOT NULL,
    hash       BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_target ON audit_log (tenant_id, target, seq);

CREATE TABLE audit_heads (
    tenant_id  TEXT COLLATE "C" PRIMARY KEY,
    seq        BIGINT NOT NULL,
    hash       BYTEA NOT NULL
);

CREATE TABLE outbox (
    seq        BIGSERIAL PRIMARY KEY,
    id         TEXT COLLATE "C" NOT NULL UNIQUE,
    tenant_id  TEXT COLLATE "C" NOT NULL,
    type       TEXT COLLATE "C" NOT NULL,
    subject    TEXT COLLATE "C" NOT NULL,
    at         BIGINT NOT NULL,
    data       BYTEA
);

CREATE TABLE webhooks (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    url         TEXT COLLATE "C" NOT NULL,
    types       TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    secret      TEXT COLLATE "C" NOT NULL,
    active      BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  BIGINT NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id, id);

CREATE TABLE webhook_deliveries (
    id            BIGSERIAL PRIMARY KEY,
    webhook_id    TEXT COLLATE "C" NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    tenant_id     TEXT COLLATE "C" NOT NULL,
    event_id      TEXT COLLATE "C" NOT NULL,
    event_type    TEXT COLLATE "C" NOT NULL,
    payload       BYTEA NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    status        TEXT COLLATE "C" NOT NULL,
    last_code     BIGINT NOT NULL DEFAULT 0,
    last_error    TEXT COLLATE "C" NOT NULL DEFAULT '',
    next_attempt  BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (tenant_id, webhook_id, id);

CREATE TABLE idempotency (
    scope         TEXT COLLATE "C" NOT NULL,
    key           TEXT COLLATE "C" NOT NULL,
    request_hash  BYTEA NOT NULL,
    status        BIGINT NOT NULL DEFAULT 0,
    body          BYTEA,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
