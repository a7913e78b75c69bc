package sqlstore

import (
	"context"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// ListOptions is the contract's plain page request.
type ListOptions = store.ListOptions

const productCols = `id, tenant_id, vendor, model, hardware_revision, end_of_support, mud_url, created_at, updated_at`

type scanner interface{ Scan(...any) error }

func scanProduct(s scanner) (*model.Product, error) {
	var p model.Product
	var eos, created, updated int64
	if err := s.Scan(&p.ID, &p.TenantID, &p.Vendor, &p.Model, &p.HardwareRevision, &eos, &p.MUDURL, &created, &updated); err != nil {
		return nil, err
	}
	p.EndOfSupport = ptrFromMicro(eos)
	p.CreatedAt, p.UpdatedAt = fromMicro(created), fromMicro(updated)
	return &p, nil
}

func (r reader) GetProduct(ctx context.Context, tenantID, id string) (*model.Product, error) {
	p, err := scanProduct(r.row(ctx, `SELECT `+productCols+` FROM products WHERE tenant_id = ? AND id = ?`, tenantID, id))
	return p, mapErr(err, "")
}

func (r reader) ListProducts(ctx context.Context, tenantID string, o ListOptions) ([]model.Product, string, error) {
	return listByID(ctx, r, productCols, "products", "tenant_id = ?", []any{tenantID}, o, scanProduct,
		func(v model.Product) string { return v.ID })
}

func productConflict(p *model.Product) string {
	return "product " + quote(p.Vendor+" "+p.Model+" "+p.HardwareRevision)
}

func (t *tx) CreateProduct(ctx context.Context, p *model.Product) error {
	_, err := t.exec(ctx, `INSERT INTO products (`+productCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.TenantID, p.Vendor, p.Model, p.HardwareRevision, ptrMicro(p.EndOfSupport), p.MUDURL,
		toMicro(p.CreatedAt), toMicro(p.UpdatedAt))
	return mapErr(err, productConflict(p))
}

func (t *tx) UpdateProduct(ctx context.Context, p *model.Product) error {
	res, err := t.exec(ctx, `UPDATE products SET vendor = ?, model = ?, hardware_revision = ?, end_of_support = ?,
		mud_url = ?, updated_at = ? WHERE tenant_id = ? AND id = ?`,
		p.Vendor, p.Model, p.HardwareRevision, ptrMicro(p.EndOfSupport), p.MUDURL, toMicro(p.UpdatedAt), p.TenantID, p.ID)
	if err != nil {
		return mapErr(err, productConflict(p))
	}
	return mustAffect(res)
}

func (t *tx) DeleteProduct(ctx context.Context, tenantID, id string) error {
	// Another tenant's product is not found, rather than "in use".
	if _, err := t.GetProduct(ctx, tenantID, id); err != nil {
		return err
	}
	var n int
	if err := t.row(ctx, `SELECT COUNT(*) FROM devices WHERE product_id = ?`, id).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return &store.InUseError{What: "product", Count: n}
	}
	res, err := t.exec(ctx, `DELETE FROM products WHERE tenant_id = ? AND id = ?`, tenantID, id)
	if err != nil {
		return mapErr(err, "")
	}
	return mustAffect(res)
}

type result interface{ RowsAffected() (int64, error) }

func mustAffect(res result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}
