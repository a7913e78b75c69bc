package sqlstore

import (
	"context"

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
	if where == "" {
		where = "1 = 1"
	}
	return pageByKey(ctx, r, `SELECT `+cols+` FROM `+table+` WHERE `+where, "id", table, args, o, scan, id)
}

func quote(s string) string { return "\"" + s + "\"" }
