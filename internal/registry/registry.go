// Package registry is the domain service for tenants, products, devices,
// groups, API keys and webhooks. It validates input, applies the lifecycle
// rules and makes each change in one store transaction together with its
// audit record and its event.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// InvalidError is bad input: it names the field and what is wrong with it.
type InvalidError struct {
	Field   string
	Message string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Message }

func invalid(field, format string, a ...any) error {
	return &InvalidError{Field: field, Message: fmt.Sprintf(format, a...)}
}

// ForbiddenError is a request the principal's role does not allow.
type ForbiddenError struct{ Message string }

func (e *ForbiddenError) Error() string { return e.Message }

// Service is the registry.
type Service struct {
	st  store.Store
	now func() time.Time
}

// New returns a registry over st.
func New(st store.Store) *Service {
	return &Service{st: st, now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }}
}

// Store exposes the store for reads that need no domain logic.
func (s *Service) Store() store.Store { return s.st }

// change is the one way the registry writes: fn's changes, the audit record
// and the event commit together or not at all.
func (s *Service) change(ctx context.Context, tenantID string, audit model.AuditEntry, evType, subject string,
	data func() any, fn func(store.Tx) error) error {
	return s.st.Update(ctx, func(tx store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		if _, err := tx.Audit(ctx, tenantID, audit); err != nil {
			return fmt.Errorf("writing the audit record: %w", err)
		}
		if evType == "" {
			return nil
		}
		var raw json.RawMessage
		if data != nil {
			b, err := json.Marshal(data())
			if err != nil {
				return err
			}
			raw = b
		}
		return tx.Emit(ctx, &model.Event{ID: ids.New("evt"), TenantID: tenantID, Type: evType, Subject: subject,
			Time: s.now(), Data: raw})
	})
}

// ---- tenants ----

// CreateTenant makes a new tenant; platform admins only.
func (s *Service) CreateTenant(ctx context.Context, p *authz.Principal, name string, kind model.TenantKind) (*model.Tenant, error) {
	if !p.Platform() {
		return nil, &ForbiddenError{"only platform admins create tenants"}
	}
	if err := checkName("name", name, 1, 128); err != nil {
		return nil, err
	}
	if !kind.Valid() {
		return nil, invalid("kind", "%q is not a tenant kind; use enterprise, household or vendor", kind)
	}
	t := &model.Tenant{ID: ids.New("ten"), Name: name, Kind: kind, CreatedAt: s.now()}
	entry := model.AuditEntry{Actor: p.Actor(), Action: "tenant.create", Target: t.ID, Summary: t}
	// One transaction: the platform chain records the creation, and the
	// tenant's own chain starts with it, so its trail is complete on its own.
	err := s.st.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateTenant(ctx, t); err != nil {
			return err
		}
		if _, err := tx.Audit(ctx, "", entry); err != nil {
			return fmt.Errorf("writing the audit record: %w", err)
		}
		return s.auditEmit(ctx, tx, t.ID, entry, "tenant.created", t.ID, t)
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// ---- products ----

// ProductInput is what a caller sets on a product.
type ProductInput struct {
	Vendor           string
	Model            string
	HardwareRevision string
	EndOfSupport     *time.Time
	MUDURL           string
}

func (in *ProductInput) validate() error {
	if err := checkName("vendor", in.Vendor, 1, 128); err != nil {
		return err
	}
	if err := checkName("model", in.Model, 1, 128); err != nil {
		return err
	}
	if err := checkName("hardware_revision", in.HardwareRevision, 0, 64); err != nil {
		return err
	}
	if in.MUDURL != "" {
		if err := checkURL("mud_url", in.MUDURL, true); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) CreateProduct(ctx context.Context, p *authz.Principal, tenantID string, in ProductInput) (*model.Product, error) {
	if err := in.validate(); err != nil {
		return nil, err
	}
	now := s.now()
	pr := &model.Product{ID: ids.New("prd"), TenantID: tenantID, Vendor: in.Vendor, Model: in.Model,
		HardwareRevision: in.HardwareRevision, EndOfSupport: in.EndOfSupport, MUDURL: in.MUDURL, CreatedAt: now, UpdatedAt: now}
	err := s.change(ctx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "product.create", Target: pr.ID, Summary: pr},
		"product.created", pr.ID, func() any { return pr }, func(tx store.Tx) error { return tx.CreateProduct(ctx, pr) })
	return pr, err
}

func (s *Service) UpdateProduct(ctx context.Context, p *authz.Principal, tenantID, id string, in ProductInput) (*model.Product, error) {
	if err := in.validate(); err != nil {
		return nil, err
	}
	var pr *model.Product
	err := s.st.Update(ctx, func(tx store.Tx) error {
		old, err := tx.GetProduct(ctx, tenantID, id)
		if err != nil {
			return err
		}
		pr = &model.Product{ID: id, TenantID: tenantID, Vendor: in.Vendor, Model: in.Model, HardwareRevision: in.HardwareRevision,
			EndOfSupport: in.EndOfSupport, MUDURL: in.MUDURL, CreatedAt: old.CreatedAt, UpdatedAt: s.now()}
		if err := tx.UpdateProduct(ctx, pr); err != nil {
			return err
		}
		return s.auditEmit(ctx, tx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "product.update", Target: id,
			Summary: map[string]any{"before": old, "after": pr}}, "product.updated", id, pr)
	})
	return pr, err
}

func (s *Service) DeleteProduct(ctx context.Context, p *authz.Principal, tenantID, id string) error {
	return s.change(ctx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "product.delete", Target: id},
		"product.deleted", id, nil, func(tx store.Tx) error { return tx.DeleteProduct(ctx, tenantID, id) })
}

// auditEmit writes the audit record and event inside an open transaction.
func (s *Service) auditEmit(ctx context.Context, tx store.Tx, tenantID string, a model.AuditEntry, evType, subject string, data any) error {
	if _, err := tx.Audit(ctx, tenantID, a); err != nil {
		return fmt.Errorf("writing the audit record: %w", err)
	}
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return tx.Emit(ctx, &model.Event{ID: ids.New("evt"), TenantID: tenantID, Type: evType, Subject: subject, Time: s.now(), Data: b})
}

// notFound wraps ErrNotFound with what was looked for.
func notFound(what, id string) error { return fmt.Errorf("%w: %s %s", store.ErrNotFound, what, id) }

// IsNotFound reports whether err means a missing record.
func IsNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
