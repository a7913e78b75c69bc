package sqlstore

import (
	"context"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

const keyCols = `id, tenant_id, name, prefix, hash, role, created_at, created_by, last_used, revoked_at, expires_at`

func scanKey(s scanner) (*model.APIKey, error) {
	var k model.APIKey
	var created, used, revoked, expires int64
	if err := s.Scan(&k.ID, &k.TenantID, &k.Name, &k.Prefix, &k.Hash, &k.Role, &created, &k.CreatedBy,
		&used, &revoked, &expires); err != nil {
		return nil, err
	}
	k.CreatedAt = fromMicro(created)
	k.LastUsed, k.RevokedAt, k.ExpiresAt = ptrFromMicro(used), ptrFromMicro(revoked), ptrFromMicro(expires)
	return &k, nil
}

func (r reader) GetAPIKeyByPrefix(ctx context.Context, prefix string) (*model.APIKey, error) {
	k, err := scanKey(r.row(ctx, `SELECT `+keyCols+` FROM api_keys WHERE prefix = ?`, prefix))
	return k, mapErr(err, "")
}

func (r reader) GetAPIKey(ctx context.Context, tenantID, id string) (*model.APIKey, error) {
	k, err := scanKey(r.row(ctx, `SELECT `+keyCols+` FROM api_keys WHERE tenant_id = ? AND id = ?`, tenantID, id))
	return k, mapErr(err, "")
}

func (r reader) ListAPIKeys(ctx context.Context, tenantID string, o ListOptions) ([]model.APIKey, string, error) {
	return listByID(ctx, r, keyCols, "api_keys", "tenant_id = ?", []any{tenantID}, o, scanKey,
		func(v model.APIKey) string { return v.ID })
}

func (t *tx) CreateAPIKey(ctx context.Context, k *model.APIKey) error {
	_, err := t.exec(ctx, `INSERT INTO api_keys (`+keyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.TenantID, k.Name, k.Prefix, k.Hash, string(k.Role), toMicro(k.CreatedAt), k.CreatedBy,
		ptrMicro(k.LastUsed), ptrMicro(k.RevokedAt), ptrMicro(k.ExpiresAt))
	return mapErr(err, "API key prefix")
}

func (t *tx) RevokeAPIKey(ctx context.Context, tenantID, id string, at time.Time) error {
	res, err := t.exec(ctx, `UPDATE api_keys SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at = 0`,
		toMicro(at), tenantID, id)
	if err != nil {
		return err
	}
	return mustAffect(res)
}

func (db *DB) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	_, err := db.w.ExecContext(ctx, db.d.rebind(`UPDATE api_keys SET last_used = ? WHERE id = ?`), toMicro(at), id)
	return err
}
