// Package storetest is the conformance suite of the store contract: every
// backend (SQLite and PostgreSQL in package sqlstore) runs the same tests and
// must give the same answers.
//
// Expected results are computed in Go from the fixtures the tests write, not
// copied from what a backend happened to return, so the suite checks the
// contract rather than one implementation.
package storetest

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// Run runs the whole suite. open must return a fresh, empty, migrated store
// and arrange for it to be closed when t ends; it is called once per subtest.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Tenants", testTenants},
		{"Products", testProducts},
		{"Devices", testDevices},
		{"DeviceTenantWall", testDeviceTenantWall},
		{"FleetQuery", testFleetQuery},
		{"Groups", testGroups},
		{"APIKeys", testAPIKeys},
		{"Audit", testAudit},
		{"AuditRollback", testAuditRollback},
		{"AuditConcurrent", testAuditConcurrent},
		{"Outbox", testOutbox},
		{"Webhooks", testWebhooks},
		{"Deliveries", testDeliveries},
		{"Idempotency", testIdempotency},
		{"Identity", testIdentity}, // identity.go
		{"Connectivity", testConnectivity},
		{"Users", testUsers}, {"Sessions", testSessions}, {"Overview", testOverview}, // users.go
		{"Security", testSecurity},   // security.go
		{"OTA", testOTA},             // ota.go
		{"Campaigns", testCampaigns}, // campaigns.go
		{"Alarms", testAlarms},       // alarms.go
		{"Discovery", testDiscovery}, // discovery.go
		{"Baselines", testBaselines}, // detection.go
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			if s == nil {
				t.Fatal("open returned a nil store")
			}
			tc.fn(t, s)
		})
	}
}

// base is the fixtures' clock: whole seconds, so every time survives the
// stores' microsecond precision unchanged.
var base = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return base.Add(d) }

func ptr[T any](v T) *T { return &v }

// errRollback is returned from Update callbacks that must not commit.
var errRollback = errors.New("storetest: roll this transaction back")

// Tenant IDs most tests use.
const (
	tenA = "ten-a"
	tenB = "ten-b"
)

func mustUpdate(t *testing.T, s store.Store, fn func(tx store.Tx) error) {
	t.Helper()
	if err := s.Update(t.Context(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func noErr(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func wantEqual[T any](t *testing.T, got, want T, what string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

// wantConflict checks err is a conflict whose message names the taken value.
func wantConflict(t *testing.T, err error, value, what string) {
	t.Helper()
	wantErr(t, err, store.ErrConflict, what)
	var ce *store.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("%s: %v is not a *store.ConflictError", what, err)
	}
	if !strings.Contains(err.Error(), value) {
		t.Fatalf("%s: conflict message %q does not name %q", what, err.Error(), value)
	}
}

func createTenants(t *testing.T, s store.Store, ids ...string) {
	t.Helper()
	mustUpdate(t, s, func(tx store.Tx) error {
		for _, id := range ids {
			if err := tx.CreateTenant(t.Context(), &model.Tenant{ID: id, Name: "Tenant " + id,
				Kind: model.TenantEnterprise, CreatedAt: base}); err != nil {
				return err
			}
		}
		return nil
	})
}

func newProduct(tenantID, id string) model.Product {
	return model.Product{ID: id, TenantID: tenantID, Vendor: "Acme", Model: "Model " + id,
		CreatedAt: base, UpdatedAt: base}
}

func createProduct(t *testing.T, s store.Store, tenantID, id string) model.Product {
	t.Helper()
	p := newProduct(tenantID, id)
	mustUpdate(t, s, func(tx store.Tx) error { return tx.CreateProduct(t.Context(), &p) })
	return p
}

func newDevice(tenantID, productID, id, serial string) model.Device {
	return model.Device{ID: id, TenantID: tenantID, ProductID: productID, Serial: serial,
		State: model.StateManufactured, CreatedAt: base, UpdatedAt: base}
}

func createDevice(t *testing.T, s store.Store, d model.Device) model.Device {
	t.Helper()
	mustUpdate(t, s, func(tx store.Tx) error { return tx.CreateDevice(t.Context(), &d) })
	return d
}

func getDevice(t *testing.T, s store.Reader, tenantID, id string) model.Device {
	t.Helper()
	d, err := s.GetDevice(t.Context(), tenantID, id)
	noErr(t, err, "GetDevice "+id)
	return *d
}

// walk follows a keyset-paginated list to its end and returns the IDs in
// the order served. It fails on an overfull page, an item served twice, or
// a cursor that leads nowhere.
func walk[T any](t *testing.T, limit int, id func(T) string, list func(cursor string) ([]T, string, error)) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	cursor := ""
	for page := 1; ; page++ {
		if page > 10000 {
			t.Fatal("pagination does not end")
		}
		items, next, err := list(cursor)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		if limit > 0 && len(items) > limit {
			t.Fatalf("page %d holds %d items, limit is %d", page, len(items), limit)
		}
		for _, it := range items {
			k := id(it)
			if seen[k] {
				t.Fatalf("page %d serves %s a second time", page, k)
			}
			seen[k] = true
			out = append(out, k)
		}
		if next == "" {
			return out
		}
		if len(items) == 0 {
			t.Fatalf("page %d is empty but has a next cursor", page)
		}
		cursor = next
	}
}

// wantIDs compares two ID sequences and says where they part.
func wantIDs(t *testing.T, got, want []string, what string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Fatalf("%s: %d IDs, want %d; first difference at position %d\n got  %v\n want %v",
		what, len(got), len(want), i, got, want)
}

func deviceID(d model.Device) string { return d.ID }

// garbageCursors are strings no store issues.
var garbageCursors = []string{
	"not a cursor",
	"!!!!",
	"eyJ9",        // base64 of a broken JSON object
	"e30",         // base64 of {}: no row ID
	"WzEsMl0",     // base64 of [1,2]
	"eyJpIjoiIn0", // base64 of {"i":""}
	strings.Repeat("A", 5000),
}
