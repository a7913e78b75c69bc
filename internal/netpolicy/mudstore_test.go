package netpolicy_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/netpolicy"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/store/sqlstore"
)

// TestMUDResolver: a MUD URL is followed to a real file in the local
// store and imported for a product that has no profile; a product with
// one keeps it; URLs that leave the store or name no file are refused.
func TestMUDResolver(t *testing.T) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, "sqlite:"+t.TempDir()+"/steward.db", sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC().Truncate(time.Microsecond)
	err = st.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateTenant(ctx, &model.Tenant{ID: "ten-v", Name: "V", Kind: model.TenantVendor, CreatedAt: now}); err != nil {
			return err
		}
		for _, id := range []string{"prd-1", "prd-2"} {
			if err := tx.CreateProduct(ctx, &model.Product{ID: id, TenantID: "ten-v", Vendor: "Example Lighting", Model: id,
				CreatedAt: now, UpdatedAt: now}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "lighting.example.com"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "lighting.example.com", "lightbulb2000"), lightbulb(t), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &netpolicy.MUDResolver{Policy: netpolicy.New(st), Store: st, Dir: dir}
	const url = "https://lighting.example.com/lightbulb2000"
	p, imported, err := r.Resolve(ctx, "ten-v", "prd-1", url)
	if err != nil || !imported || p.MUDURL != url || len(p.Flows) != 7 || p.ImportedBy != netpolicy.MUDStoreActor {
		t.Fatalf("resolve: %+v %v %v", p, imported, err)
	}
	if _, imported, err := r.Resolve(ctx, "ten-v", "prd-1", url); err != nil || imported {
		t.Fatalf("a product with a profile: imported=%v %v", imported, err)
	}
	for _, tc := range []struct{ url, want string }{
		{"http://lighting.example.com/lightbulb2000", "https"},
		{"https://lighting.example.com/../../etc/passwd", "no MUD file"}, // cleaned to /etc/passwd under the host
		{"https://lighting.example.com/", "names no file"},
		{"https://other.example.com/lightbulb2000", "put it at"},
	} {
		if _, _, err := r.Resolve(ctx, "ten-v", "prd-2", tc.url); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.url, err, tc.want)
		}
	}
	// A stored file that names another URL is not taken.
	os.WriteFile(filepath.Join(dir, "lighting.example.com", "other"), lightbulb(t), 0o644)
	if _, _, err := r.Resolve(ctx, "ten-v", "prd-2", "https://lighting.example.com/other"); err == nil || !strings.Contains(err.Error(), "names itself") {
		t.Fatalf("mismatched file: %v", err)
	}
	if _, err := st.GetMUDProfile(ctx, "ten-v", "prd-2"); err == nil {
		t.Fatal("a refused file was imported")
	}
}
