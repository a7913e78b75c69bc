-- Device identity: certificates the platform CA issued, manufacturer CAs and
-- factory keys that prove a device's origin, claim codes, bootstrap tokens
-- and device tokens. Secrets (codes, tokens) are stored as SHA-256 hashes.
CREATE TABLE device_certificates (
    serial             TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL,
    device_id          TEXT NOT NULL,
    subject            TEXT NOT NULL,
    fingerprint        TEXT NOT NULL UNIQUE,
    key_fingerprint    TEXT NOT NULL,
    key_algorithm      TEXT NOT NULL,
    method             TEXT NOT NULL,
    not_before         INTEGER NOT NULL,
    not_after          INTEGER NOT NULL,
    issued_at          INTEGER NOT NULL,
    predecessor        TEXT NOT NULL DEFAULT '',
    successor          TEXT NOT NULL DEFAULT '',
    revoked_at         INTEGER NOT NULL DEFAULT 0,
    revocation_reason  TEXT NOT NULL DEFAULT '',
    revoked_by         TEXT NOT NULL DEFAULT '',
    der                BLOB NOT NULL
);
CREATE INDEX device_certificates_device ON device_certificates (tenant_id, device_id, issued_at, serial);
CREATE INDEX device_certificates_key ON device_certificates (key_fingerprint);
CREATE INDEX device_certificates_revoked ON device_certificates (revoked_at, not_after);

CREATE TABLE manufacturer_cas (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    product_id      TEXT NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    name            TEXT NOT NULL DEFAULT '',
    subject         TEXT NOT NULL,
    subject_key_id  TEXT NOT NULL DEFAULT '',
    subject_hash    TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    not_before      INTEGER NOT NULL,
    not_after       INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    created_by      TEXT NOT NULL,
    der             BLOB NOT NULL,
    UNIQUE (product_id, fingerprint)
);
CREATE INDEX manufacturer_cas_product ON manufacturer_cas (tenant_id, product_id, id);
CREATE INDEX manufacturer_cas_skid ON manufacturer_cas (subject_key_id);
CREATE INDEX manufacturer_cas_subject ON manufacturer_cas (subject_hash);

CREATE TABLE device_public_keys (
    fingerprint  TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    device_id    TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    algorithm    TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    der          BLOB NOT NULL
);
CREATE INDEX device_public_keys_device ON device_public_keys (device_id);

CREATE TABLE claim_codes (
    device_id    TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    lookup       TEXT NOT NULL UNIQUE,
    hash         BLOB NOT NULL,
    tenant_id    TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    created_by   TEXT NOT NULL,
    claimed_at   INTEGER NOT NULL DEFAULT 0,
    claimed_by   TEXT NOT NULL DEFAULT '',
    enrolled_at  INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE bootstrap_tokens (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL DEFAULT '',
    prefix      TEXT NOT NULL UNIQUE,
    hash        BLOB NOT NULL,
    product_id  TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER NOT NULL DEFAULT 0,
    used_by     TEXT NOT NULL DEFAULT '',
    revoked_at  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX bootstrap_tokens_tenant ON bootstrap_tokens (tenant_id, id);

CREATE TABLE device_tokens (
    device_id   TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    tenant_id   TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    hash        BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    revoked_at  INTEGER NOT NULL DEFAULT 0
);

-- The platform CA this database belongs to: a node with another CA (a
-- missing copy of data_dir/pki) is refused instead of issuing certificates
-- the other nodes reject.
CREATE TABLE platform_ca (
    id              INTEGER PRIMARY KEY,
    anchor_sha256   TEXT NOT NULL,
    issuing_sha256  TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
