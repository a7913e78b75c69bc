-- Device identity: certificates the platform CA issued, manufacturer CAs and
-- factory keys that prove a device's origin, claim codes, bootstrap tokens
-- and device tokens. Secrets (codes, tokens) are stored as SHA-256 hashes.
CREATE TABLE device_certificates (
    serial             TEXT COLLATE "C" PRIMARY KEY,
    tenant_id          TEXT COLLATE "C" NOT NULL,
    device_id          TEXT COLLATE "C" NOT NULL,
    subject            TEXT COLLATE "C" NOT NULL,
    fingerprint        TEXT COLLATE "C" NOT NULL UNIQUE,
    key_fingerprint    TEXT COLLATE "C" NOT NULL,
    key_algorithm      TEXT COLLATE "C" NOT NULL,
    method             TEXT COLLATE "C" NOT NULL,
    not_before         BIGINT NOT NULL,
    not_after          BIGINT NOT NULL,
    issued_at          BIGINT NOT NULL,
    predecessor        TEXT COLLATE "C" NOT NULL DEFAULT '',
    successor          TEXT COLLATE "C" NOT NULL DEFAULT '',
    revoked_at         BIGINT NOT NULL DEFAULT 0,
    revocation_reason  TEXT COLLATE "C" NOT NULL DEFAULT '',
    revoked_by         TEXT COLLATE "C" NOT NULL DEFAULT '',
    der                BYTEA NOT NULL
);
CREATE INDEX device_certificates_device ON device_certificates (tenant_id, device_id, issued_at, serial);
CREATE INDEX device_certificates_key ON device_certificates (key_fingerprint);
CREATE INDEX device_certificates_revoked ON device_certificates (revoked_at, not_after);

CREATE TABLE manufacturer_cas (
    id              TEXT COLLATE "C" PRIMARY KEY,
    tenant_id       TEXT COLLATE "C" NOT NULL,
    product_id      TEXT COLLATE "C" NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    name            TEXT COLLATE "C" NOT NULL DEFAULT '',
    subject         TEXT COLLATE "C" NOT NULL,
    subject_key_id  TEXT COLLATE "C" NOT NULL DEFAULT '',
    subject_hash    TEXT COLLATE "C" NOT NULL,
    fingerprint     TEXT COLLATE "C" NOT NULL,
    not_before      BIGINT NOT NULL,
    not_after       BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    created_by      TEXT COLLATE "C" NOT NULL,
    der             BYTEA NOT NULL,
    UNIQUE (product_id, fingerprint)
);
CREATE INDEX manufacturer_cas_product ON manufacturer_cas (tenant_id, product_id, id);
CREATE INDEX manufacturer_cas_skid ON manufacturer_cas (subject_key_id);
CREATE INDEX manufacturer_cas_subject ON manufacturer_cas (subject_hash);

CREATE TABLE device_public_keys (
    fingerprint  TEXT COLLATE "C" PRIMARY KEY,
    tenant_id    TEXT COLLATE "C" NOT NULL,
    device_id    TEXT COLLATE "C" NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    algorithm    TEXT COLLATE "C" NOT NULL,
    created_at   BIGINT NOT NULL,
    der          BYTEA NOT NULL
);
CREATE INDEX device_public_keys_device ON device_public_keys (device_id);

CREATE TABLE claim_codes (
    device_id    TEXT COLLATE "C" PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    lookup       TEXT COLLATE "C" NOT NULL UNIQUE,
    hash         BYTEA NOT NULL,
    tenant_id    TEXT COLLATE "C" NOT NULL,
    created_at   BIGINT NOT NULL,
    created_by   TEXT COLLATE "C" NOT NULL,
    claimed_at   BIGINT NOT NULL DEFAULT 0,
    claimed_by   TEXT COLLATE "C" NOT NULL DEFAULT '',
    enrolled_at  BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE bootstrap_tokens (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    name        TEXT COLLATE "C" NOT NULL DEFAULT '',
    prefix      TEXT COLLATE "C" NOT NULL UNIQUE,
    hash        BYTEA NOT NULL,
    product_id  TEXT COLLATE "C" NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    created_by  TEXT COLLATE "C" NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT NOT NULL DEFAULT 0,
    used_by     TEXT COLLATE "C" NOT NULL DEFAULT '',
    revoked_at  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX bootstrap_tokens_tenant ON bootstrap_tokens (tenant_id, id);

CREATE TABLE device_tokens (
    device_id   TEXT COLLATE "C" PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    tenant_id   TEXT COLLATE "C" NOT NULL,
    prefix      TEXT COLLATE "C" NOT NULL,
    hash        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT COLLATE "C" NOT NULL,
    revoked_at  BIGINT NOT NULL DEFAULT 0
);

-- The platform CA this database belongs to: a node with another CA (a
-- missing copy of data_dir/pki) is refused instead of issuing certificates
-- the other nodes reject.
CREATE TABLE platform_ca (
    id              BIGINT PRIMARY KEY,
    anchor_sha256   TEXT COLLATE "C" NOT NULL,
    issuing_sha256  TEXT COLLATE "C" NOT NULL,
    created_at      BIGINT NOT NULL
);
