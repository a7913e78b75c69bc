package sqlstore

import (
	"context"
	"database/sql"

	"github.com/steward-iot/steward/internal/model"
)

func (r reader) GetTenant(ctx context.Context, id string) (*model.Tenant, error) {
	t, err := scanTenant(r.row(ctx, `SELECT `+tenantCols+` FROM tenants WHERE id = ?`, id))
	return t, mapErr(err, "")
}

func (r reader) ListTenants(ctx context.Context, o ListOptions) ([]model.Tenant, string, error) {
	return listByID(ctx, r, tenantCols, "tenants", "", nil, o, scanTenant, func(t model.Tenant) string { return t.ID })
}

const tenantCols = `id, name, kind, created_at`

func scanTenant(s scanner) (*model.Tenant, error) {
	var t model.Tenant
	var created int64
	if err := s.Scan(&t.ID, &t.Name, &t.Kind, &created); err != nil {
		return nil, err
	}
	t.CreatedAt = fromMicro(created)
	return &t, nil
}

func (t *tx) CreateTenant(ctx context.Context, tn *model.Tenant) error {
	_, err := t.exec(ctx, `INSERT INTO tenants (id, name, kind, created_at) VALUES (?, ?, ?, ?)`,
		tn.ID, tn.Name, string(tn.Kind), toMicro(tn.CreatedAt))
	return mapErr(err, "tenant named "+quote(tn.Name))
}

// listByID reads one keyset page of a table ordered by id: the rows
// after the cursor's ID that match where (which must scope the tenant).
func listByID[T any](ctx context.Context, r reader, cols, table, where string, args []any, o ListOptions,
	scan func(scanner) (*T, error), id func(T) string) ([]T, string, error) {
	c, err := decodeCursorOf(o.Cursor, table)
	if err != nil {
		return nil, "", err
	}
	limit := clampLimit(o.Limit, 100, 1000)
	after := ""
	if c != nil {
		after = c.I
	}
	if where != "" {
		where += " AND "
	}
	rows, err := r.query(ctx, `SELECT `+cols+` FROM `+table+` WHERE `+where+`id > ? ORDER BY id LIMIT ?`,
		append(args, after, limit+1)...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, "", err
		}
		out = append(out, *v)
	}
	out, next, err := pageOut(out, limit, id, rows)
	if next != "" {
		next = encodeCursor(cursor{I: id(out[len(out)-1]), T: table})
	}
	return out, next, err
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
