package sqlstore

import (
	"context"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

const userCols = `id, tenant_id, email, name, password_hash, role, created_at, created_by, updated_at, disabled_at`

func scanUser(s scanner) (*model.User, error) {
	var u model.User
	var created, updated, disabled int64
	if err := s.Scan(&u.ID, &u.TenantID, &u.Email, &u.Name, &u.PasswordHash, &u.Role, &created, &u.CreatedBy,
		&updated, &disabled); err != nil {
		return nil, err
	}
	u.CreatedAt, u.UpdatedAt, u.DisabledAt = fromMicro(created), fromMicro(updated), ptrFromMicro(disabled)
	return &u, nil
}

func (r reader) GetUser(ctx context.Context, tenantID, id string) (*model.User, error) {
	u, err := scanUser(r.row(ctx, `SELECT `+userCols+` FROM users WHERE tenant_id = ? AND id = ?`, tenantID, id))
	return u, mapErr(err, "")
}

func (r reader) GetUserByEmail(ctx context.Context, email string) (*model.User, error) {
	u, err := scanUser(r.row(ctx, `SELECT `+userCols+` FROM users WHERE email = ?`, email))
	return u, mapErr(err, "")
}

func (r reader) ListUsers(ctx context.Context, tenantID string, o ListOptions) ([]model.User, string, error) {
	return listByID(ctx, r, userCols, "users", "tenant_id = ?", []any{tenantID}, o, scanUser,
		func(u model.User) string { return u.ID })
}

func (t *tx) CreateUser(ctx context.Context, u *model.User) error {
	_, err := t.exec(ctx, `INSERT INTO users (`+userCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		u.ID, u.TenantID, u.Email, u.Name, u.PasswordHash, string(u.Role), toMicro(u.CreatedAt), u.CreatedBy,
		toMicro(u.UpdatedAt), ptrMicro(u.DisabledAt))
	return mapErr(err, "user with email "+quote(u.Email))
}

func (t *tx) UpdateUser(ctx context.Context, u *model.User) error {
	res, err := t.exec(ctx, `UPDATE users SET name = ?, role = ?, password_hash = ?, updated_at = ?, disabled_at = ?
		WHERE tenant_id = ? AND id = ?`, u.Name, string(u.Role), u.PasswordHash, toMicro(u.UpdatedAt), ptrMicro(u.DisabledAt),
		u.TenantID, u.ID)
	if err != nil {
		return err
	}
	return mustAffect(res)
}

func (t *tx) DeleteUserSessions(ctx context.Context, tenantID, userID, keepSessionID string) (int64, error) {
	res, err := t.exec(ctx, `DELETE FROM sessions WHERE tenant_id = ? AND user_id = ? AND id <> ?`,
		tenantID, userID, keepSessionID)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// ---- sessions ----

const sessionCols = `id, user_id, tenant_id, csrf, view_tenant, created_at, expires_at, last_seen`

func (db *DB) CreateSession(ctx context.Context, s *model.Session) error {
	_, err := db.w.ExecContext(ctx, db.d.rebind(`INSERT INTO sessions (`+sessionCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
		s.ID, s.UserID, s.TenantID, s.CSRF, s.ViewTenant, toMicro(s.CreatedAt), toMicro(s.ExpiresAt), toMicro(s.LastSeen))
	return mapErr(err, "session")
}

func (db *DB) GetSession(ctx context.Context, id string) (*model.Session, error) {
	var s model.Session
	var created, expires, seen int64
	err := db.row(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = ?`, id).
		Scan(&s.ID, &s.UserID, &s.TenantID, &s.CSRF, &s.ViewTenant, &created, &expires, &seen)
	if err != nil {
		return nil, mapErr(err, "")
	}
	s.CreatedAt, s.ExpiresAt, s.LastSeen = fromMicro(created), fromMicro(expires), fromMicro(seen)
	return &s, nil
}

func (db *DB) TouchSession(ctx context.Context, id string, lastSeen, expiresAt time.Time) error {
	res, err := db.w.ExecContext(ctx, db.d.rebind(`UPDATE sessions SET last_seen = ?, expires_at = ? WHERE id = ?`),
		toMicro(lastSeen), toMicro(expiresAt), id)
	if err != nil {
		return err
	}
	return mustAffect(res)
}

func (db *DB) SetSessionTenant(ctx context.Context, id, tenantID string) error {
	res, err := db.w.ExecContext(ctx, db.d.rebind(`UPDATE sessions SET view_tenant = ? WHERE id = ?`), tenantID, id)
	if err != nil {
		return err
	}
	return mustAffect(res)
}

func (db *DB) DeleteSession(ctx context.Context, id string) error {
	res, err := db.w.ExecContext(ctx, db.d.rebind(`DELETE FROM sessions WHERE id = ?`), id)
	if err != nil {
		return err
	}
	return mustAffect(res)
}

func (db *DB) DeleteExpiredSessions(ctx context.Context, t time.Time) (int64, error) {
	res, err := db.w.ExecContext(ctx, db.d.rebind(`DELETE FROM sessions WHERE expires_at < ?`), toMicro(t))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

var _ store.Users = (*DB)(nil)
