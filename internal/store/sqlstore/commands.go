package sqlstore

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

const commandCols = `id, tenant_id, device_id, name, params, status, created_at, created_by, expires_at, timeout_us,
	sent_at, attempts, completed_at, result, error`

func scanCommand(s scanner) (*model.Command, error) {
	var c model.Command
	var params, result string
	var created, expires, timeout, sent, completed int64
	if err := s.Scan(&c.ID, &c.TenantID, &c.DeviceID, &c.Name, &params, &c.Status, &created, &c.CreatedBy, &expires,
		&timeout, &sent, &c.Attempts, &completed, &result, &c.Error); err != nil {
		return nil, err
	}
	if params != "" {
		c.Params = json.RawMessage(params)
	}
	if result != "" {
		c.Result = json.RawMessage(result)
	}
	c.CreatedAt, c.ExpiresAt = fromMicro(created), fromMicro(expires)
	c.Timeout = time.Duration(timeout) * time.Microsecond
	c.SentAt, c.CompletedAt = ptrFromMicro(sent), ptrFromMicro(completed)
	return &c, nil
}

// dueAt is when the sweeper must look at c again (0: never).
func dueAt(c *model.Command) int64 {
	switch c.Status {
	case model.CommandQueued:
		return toMicro(c.ExpiresAt)
	case model.CommandSent:
		if c.SentAt != nil {
			return toMicro(c.SentAt.Add(c.Timeout))
		}
	}
	return 0
}

func (r reader) GetCommand(ctx context.Context, tenantID, id string) (*model.Command, error) {
	c, err := scanCommand(r.row(ctx, `SELECT `+commandCols+` FROM commands WHERE tenant_id = ? AND id = ?`, tenantID, id))
	return c, mapErr(err, "")
}

func (r reader) ListCommands(ctx context.Context, tenantID, deviceID string, o store.ListOptions) ([]model.Command, string, error) {
	// Newest first: IDs are time-ordered.
	return keysetPage(ctx, r, page{query: `SELECT ` + commandCols + ` FROM commands WHERE tenant_id = ? AND device_id = ?`, keyCol: "id", kind: "commands", desc: true, defLimit: 50},
		[]any{tenantID, deviceID}, o, scanCommand, func(v model.Command) string { return v.ID })
}

func (r reader) PendingCommands(ctx context.Context, tenantID, deviceID string, now time.Time, limit int) ([]model.Command, error) {
	rows, err := r.query(ctx, `SELECT `+commandCols+` FROM commands WHERE tenant_id = ? AND device_id = ?
		AND status IN ('queued', 'sent') AND due_at > ? ORDER BY id LIMIT ?`,
		tenantID, deviceID, toMicro(now), clampLimit(limit, 100, 1000))
	if err != nil {
		return nil, err
	}
	return collectCommands(rows)
}

type rowsLike interface {
	scanner
	Next() bool
	Err() error
	Close() error
}

func collectCommands(rows rowsLike) ([]model.Command, error) {
	defer rows.Close()
	var out []model.Command
	for rows.Next() {
		c, err := scanCommand(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *c)
	}
	return out, rows.Err()
}

func (t *tx) CreateCommand(ctx context.Context, c *model.Command) error {
	_, err := t.exec(ctx, `INSERT INTO commands (id, tenant_id, device_id, name, params, status, created_at, created_by,
		expires_at, timeout_us, sent_at, attempts, completed_at, result, error, due_at)
		SELECT ?, tenant_id, id, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM devices WHERE tenant_id = ? AND id = ?`,
		c.ID, c.Name, string(c.Params), c.Status, toMicro(c.CreatedAt), c.CreatedBy, toMicro(c.ExpiresAt),
		c.Timeout.Microseconds(), ptrMicro(c.SentAt), c.Attempts, ptrMicro(c.CompletedAt), string(c.Result), c.Error,
		dueAt(c), c.TenantID, c.DeviceID)
	if err != nil {
		return mapErr(err, "command "+c.ID)
	}
	return t.mustExist(ctx, `SELECT 1 FROM commands WHERE tenant_id = ? AND id = ?`, c.TenantID, c.ID)
}

// mustExist turns a missing row into ErrNotFound (an INSERT … SELECT that
// found no device inserted nothing).
func (t *tx) mustExist(ctx context.Context, q string, args ...any) error {
	var one int
	return mapErr(t.row(ctx, q, args...).Scan(&one), "")
}

func (t *tx) UpdateCommand(ctx context.Context, c *model.Command, from ...model.CommandStatus) error {
	if len(from) == 0 {
		from = []model.CommandStatus{c.Status}
	}
	args := []any{c.Status, ptrMicro(c.SentAt), c.Attempts, ptrMicro(c.CompletedAt), string(c.Result), c.Error, dueAt(c),
		c.TenantID, c.ID}
	for _, s := range from {
		args = append(args, s)
	}
	res, err := t.exec(ctx, `UPDATE commands SET status = ?, sent_at = ?, attempts = ?, completed_at = ?, result = ?,
		error = ?, due_at = ? WHERE tenant_id = ? AND id = ? AND status IN (`+placeholders(len(from))+`)`, args...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	if _, err := t.GetCommand(ctx, c.TenantID, c.ID); err != nil {
		return err
	}
	return store.ErrStale
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func (db *DB) DueCommands(ctx context.Context, now time.Time, limit int) ([]model.Command, error) {
	rows, err := db.reader.query(ctx, `SELECT `+commandCols+` FROM commands WHERE status IN ('queued', 'sent')
		AND due_at <= ? ORDER BY due_at, id LIMIT ?`, toMicro(now), clampLimit(limit, 100, 1000))
	if err != nil {
		return nil, err
	}
	return collectCommands(rows)
}
