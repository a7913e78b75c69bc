-- Dashboard accounts and their browser sessions.
CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL DEFAULT '',   -- '' = platform user
    email          TEXT NOT NULL UNIQUE,       -- lower-cased
    name           TEXT NOT NULL,
    password_hash  TEXT NOT NULL,              -- PHC string, argon2id
    role           TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    created_by     TEXT NOT NULL,
    updated_at     INTEGER NOT NULL,
    disabled_at    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX users_tenant ON users (tenant_id, id);

-- id is the SHA-256 (hex) of the cookie token: the token itself is never stored.
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    tenant_id   TEXT NOT NULL DEFAULT '',      -- the user's tenant ('' = platform)
    csrf        TEXT NOT NULL,
    view_tenant TEXT NOT NULL DEFAULT '',      -- tenant a platform admin looks at
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (tenant_id, user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);
