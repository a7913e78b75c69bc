package storetest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

func testTenants(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Written out of ID order, so listing has to sort.
	ids := []string{"ten-05", "ten-02", "ten-07", "ten-01", "ten-06", "ten-03", "ten-04"}
	kinds := []model.TenantKind{model.TenantEnterprise, model.TenantHousehold, model.TenantVendor}
	want := map[string]model.Tenant{}
	mustUpdate(t, s, func(tx store.Tx) error {
		for i, id := range ids {
			tn := model.Tenant{ID: id, Name: "Tenant " + strings.ToUpper(id), Kind: kinds[i%len(kinds)],
				CreatedAt: at(time.Duration(i) * time.Second)}
			if err := tx.CreateTenant(ctx, &tn); err != nil {
				return err
			}
			want[id] = tn
		}
		return nil
	})

	t.Run("get", func(t *testing.T) {
		for _, id := range ids {
			got, err := s.GetTenant(ctx, id)
			noErr(t, err, "GetTenant "+id)
			wantEqual(t, *got, want[id], "tenant "+id)
		}
		_, err := s.GetTenant(ctx, "ten-missing")
		wantErr(t, err, store.ErrNotFound, "GetTenant of a missing tenant")
	})

	sorted := slices.Sorted(maps.Keys(want))
	for _, limit := range []int{0, 1, 2, 3, 6, 7, 8, 100} {
		t.Run(fmt.Sprintf("list/limit=%d", limit), func(t *testing.T) {
			got := walk(t, limit, func(tn model.Tenant) string { return tn.ID },
				func(c string) ([]model.Tenant, string, error) {
					return s.ListTenants(ctx, store.ListOptions{Limit: limit, Cursor: c})
				})
			wantIDs(t, got, sorted, "tenants listed page by page")
		})
	}

	t.Run("list/full pages carry the rows", func(t *testing.T) {
		page, next, err := s.ListTenants(ctx, store.ListOptions{Limit: 3})
		noErr(t, err, "ListTenants")
		if len(page) != 3 || next == "" {
			t.Fatalf("first page of 3: got %d tenants, next cursor %q", len(page), next)
		}
		for _, tn := range page {
			wantEqual(t, tn, want[tn.ID], "listed tenant "+tn.ID)
		}
	})

	t.Run("duplicate name", func(t *testing.T) {
		taken := want["ten-03"].Name
		err := s.Update(ctx, func(tx store.Tx) error {
			return tx.CreateTenant(ctx, &model.Tenant{ID: "ten-99", Name: taken, Kind: model.TenantVendor, CreatedAt: base})
		})
		wantConflict(t, err, taken, "CreateTenant with a taken name")
		_, err = s.GetTenant(ctx, "ten-99")
		wantErr(t, err, store.ErrNotFound, "GetTenant after the refused create")
	})

	t.Run("duplicate id", func(t *testing.T) {
		err := s.Update(ctx, func(tx store.Tx) error {
			return tx.CreateTenant(ctx, &model.Tenant{ID: "ten-01", Name: "Someone else", Kind: model.TenantVendor, CreatedAt: base})
		})
		wantErr(t, err, store.ErrConflict, "CreateTenant with a taken ID")
		got, err := s.GetTenant(ctx, "ten-01")
		noErr(t, err, "GetTenant")
		wantEqual(t, *got, want["ten-01"], "tenant after the refused create")
	})

	t.Run("bad cursor", func(t *testing.T) {
		for _, c := range garbageCursors {
			_, _, err := s.ListTenants(ctx, store.ListOptions{Limit: 2, Cursor: c})
			wantErr(t, err, store.ErrBadCursor, fmt.Sprintf("ListTenants with cursor %.20q", c))
		}
	})
}

func testProducts(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	eos := at(3 * 365 * 24 * time.Hour)
	p := model.Product{ID: "prd-a1", TenantID: tenA, Vendor: "Acme", Model: "Thermo", HardwareRevision: "rev2",
		EndOfSupport: &eos, MUDURL: "https://acme.example/mud/thermo.json", CreatedAt: base, UpdatedAt: base}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.CreateProduct(ctx, &p) })
	// More products, out of ID order, for listing.
	var idsA []string
	for _, id := range []string{"prd-a4", "prd-a0", "prd-a3", "prd-a2"} {
		createProduct(t, s, tenA, id)
		idsA = append(idsA, id)
	}
	idsA = append(idsA, p.ID)
	slices.Sort(idsA)
	createProduct(t, s, tenB, "prd-b1")

	t.Run("get", func(t *testing.T) {
		got, err := s.GetProduct(ctx, tenA, p.ID)
		noErr(t, err, "GetProduct")
		wantEqual(t, *got, p, "product")
		_, err = s.GetProduct(ctx, tenA, "prd-missing")
		wantErr(t, err, store.ErrNotFound, "GetProduct of a missing product")
	})

	t.Run("list", func(t *testing.T) {
		for _, limit := range []int{0, 1, 2, 5} {
			got := walk(t, limit, func(p model.Product) string { return p.ID },
				func(c string) ([]model.Product, string, error) {
					return s.ListProducts(ctx, tenA, store.ListOptions{Limit: limit, Cursor: c})
				})
			wantIDs(t, got, idsA, fmt.Sprintf("products of A, limit %d", limit))
		}
		got := walk(t, 0, func(p model.Product) string { return p.ID },
			func(c string) ([]model.Product, string, error) {
				return s.ListProducts(ctx, tenB, store.ListOptions{Cursor: c})
			})
		wantIDs(t, got, []string{"prd-b1"}, "products of B")
		for _, c := range garbageCursors {
			_, _, err := s.ListProducts(ctx, tenA, store.ListOptions{Cursor: c})
			wantErr(t, err, store.ErrBadCursor, "ListProducts with a garbage cursor")
		}
	})

	t.Run("duplicate", func(t *testing.T) {
		dup := p
		dup.ID = "prd-a9"
		err := s.Update(ctx, func(tx store.Tx) error { return tx.CreateProduct(ctx, &dup) })
		wantConflict(t, err, p.Model, "CreateProduct with a taken vendor/model/revision")
		// The same product in another tenant is that tenant's business.
		other := p
		other.ID, other.TenantID = "prd-b9", tenB
		mustUpdate(t, s, func(tx store.Tx) error { return tx.CreateProduct(ctx, &other) })
	})

	t.Run("update", func(t *testing.T) {
		upd := p
		upd.Model, upd.HardwareRevision, upd.EndOfSupport, upd.MUDURL = "Thermo Pro", "rev3", nil, ""
		upd.UpdatedAt = at(time.Hour)
		mustUpdate(t, s, func(tx store.Tx) error { return tx.UpdateProduct(ctx, &upd) })
		got, err := s.GetProduct(ctx, tenA, p.ID)
		noErr(t, err, "GetProduct")
		wantEqual(t, *got, upd, "updated product")
		p = upd

		missing := newProduct(tenA, "prd-missing")
		err = s.Update(ctx, func(tx store.Tx) error { return tx.UpdateProduct(ctx, &missing) })
		wantErr(t, err, store.ErrNotFound, "UpdateProduct of a missing product")
	})

	t.Run("tenant wall", func(t *testing.T) {
		_, err := s.GetProduct(ctx, tenB, p.ID)
		wantErr(t, err, store.ErrNotFound, "GetProduct across tenants")

		hijack := p
		hijack.TenantID, hijack.Model = tenB, "hijacked"
		err = s.Update(ctx, func(tx store.Tx) error { return tx.UpdateProduct(ctx, &hijack) })
		wantErr(t, err, store.ErrNotFound, "UpdateProduct across tenants")

		err = s.Update(ctx, func(tx store.Tx) error { return tx.DeleteProduct(ctx, tenB, p.ID) })
		wantErr(t, err, store.ErrNotFound, "DeleteProduct across tenants")

		list, _, err := s.ListProducts(ctx, tenB, store.ListOptions{})
		noErr(t, err, "ListProducts")
		for _, q := range list {
			if q.TenantID != tenB {
				t.Fatalf("ListProducts of B returned %s of tenant %s", q.ID, q.TenantID)
			}
		}
		got, err := s.GetProduct(ctx, tenA, p.ID)
		noErr(t, err, "GetProduct")
		wantEqual(t, *got, p, "product after the attempts across the wall")
	})

	t.Run("delete in use", func(t *testing.T) {
		createDevice(t, s, newDevice(tenA, p.ID, "dev-1", "SN-1"))
		createDevice(t, s, newDevice(tenA, p.ID, "dev-2", "SN-2"))
		err := s.Update(ctx, func(tx store.Tx) error { return tx.DeleteProduct(ctx, tenA, p.ID) })
		wantErr(t, err, store.ErrInUse, "DeleteProduct with devices")
		var iu *store.InUseError
		if !errors.As(err, &iu) || iu.Count != 2 {
			t.Fatalf("DeleteProduct with 2 devices: got %v, want an *InUseError counting 2", err)
		}
		// Another tenant learns nothing, not even that the product is in use.
		err = s.Update(ctx, func(tx store.Tx) error { return tx.DeleteProduct(ctx, tenB, p.ID) })
		wantErr(t, err, store.ErrNotFound, "DeleteProduct across tenants while in use")
		if _, err := s.GetProduct(ctx, tenA, p.ID); err != nil {
			t.Fatalf("product is gone after a refused delete: %v", err)
		}

		mustUpdate(t, s, func(tx store.Tx) error {
			if err := tx.DeleteDevice(ctx, tenA, "dev-1"); err != nil {
				return err
			}
			return tx.DeleteDevice(ctx, tenA, "dev-2")
		})
		mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteProduct(ctx, tenA, p.ID) })
		_, err = s.GetProduct(ctx, tenA, p.ID)
		wantErr(t, err, store.ErrNotFound, "GetProduct after delete")
		err = s.Update(ctx, func(tx store.Tx) error { return tx.DeleteProduct(ctx, tenA, p.ID) })
		wantErr(t, err, store.ErrNotFound, "second DeleteProduct")
	})
}
