-- Dashboard accounts and their browser sessions.
CREATE TABLE users (
    id             TEXT COLLATE "C" PRIMARY KEY,
    tenant_id      TEXT COLLATE "C" NOT NULL DEFAULT '',   -- '' = platform user
    email          TEXT COLLATE "C" NOT NULL UNIQUE,       -- lower-cased
    name           TEXT COLLATE "C" NOT NULL,
    password_hash  TEXT COLLATE "C" NOT NULL,              -- PHC string, argon2id
    role           TEXT COLLATE "C" NOT NULL,
    created_at     BIGINT NOT NULL,
    created_by     TEXT COLLATE "C" NOT NULL,
    updated_at     BIGINT NOT NULL,
    disabled_at    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX users_tenant ON users (tenant_id, id);

-- id is the SHA-256 (hex) of the cookie token: the token itself is never stored.
CREATE TABLE sessions (
    id          TEXT COLLATE "C" PRIMARY KEY,
    user_id     TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    tenant_id   TEXT COLLATE "C" NOT NULL DEFAULT '',      -- the user's tenant ('' = platform)
    csrf        TEXT COLLATE "C" NOT NULL,
    view_tenant TEXT COLLATE "C" NOT NULL DEFAULT '',      -- tenant a platform admin looks at
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (tenant_id, user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);
