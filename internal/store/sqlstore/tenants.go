package sqlstore

import (
	"context"
	"database/sql"

	"github.com/steward-iot/steward/internal/model"
)

func (r reader) GetTenant(ctx context.Context, id string) (*model.Tenant, error) {
	var t model.Tenant
	var created int64
	err := r.row(ctx, `SELECT id, name, kind, created_at FROM tenants WHERE id = ?`, id).
		Scan(&t.ID, &t.Name, &t.Kind, &created)
	if err != nil {
		return nil, mapErr(err, "")
	}
	t.CreatedAt = fromMicro(created)
	return &t, nil
}

func (r reader) ListTenants(ctx context.Context, o ListOptions) ([]model.Tenant, string, error) {
	c, err := decodeCursor(o.Cursor)
	if err != nil {
		return nil, "", err
	}
	limit := clampLimit(o.Limit, 100, 1000)
	after := ""
	if c != nil {
		after = c.I
	}
	rows, err := r.query(ctx, `SELECT id, name, kind, created_at FROM tenants WHERE id > ? ORDER BY id LIMIT ?`, after, limit+1)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var out []model.Tenant
	for rows.Next() {
		var t model.Tenant
		var created int64
		if err := rows.Scan(&t.ID, &t.Name, &t.Kind, &created); err != nil {
			return nil, "", err
		}
		t.CreatedAt = fromMicro(created)
		out = append(out, t)
	}
	return pageOut(out, limit, func(t model.Tenant) string { return t.ID }, rows)
}

func (t *tx) CreateTenant(ctx context.Context, tn *model.Tenant) error {
	_, err := t.exec(ctx, `INSERT INTO tenants (id, name, kind, created_at) VALUES (?, ?, ?, ?)`,
		tn.ID, tn.Name, string(tn.Kind), toMicro(tn.CreatedAt))
	return mapErr(err, "tenant named "+quote(tn.Name))
}

// pageOut trims the extra row fetched to learn whether a next page exists
// and makes the cursor from the last row kept.
func pageOut[T any](items []T, limit int, id func(T) string, rows *sql.Rows) ([]T, string, error) {
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	if len(items) <= limit {
		return items, "", nil
	}
	items = items[:limit]
	return items, encodeCursor(cursor{I: id(items[limit-1])}), nil
}

func quote(s string) string { return "\"" + s + "\"" }
