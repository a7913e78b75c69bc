package storetest

import (
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/store"
)

// testBaselines covers the saved detection state: a batch upsert
// that replaces, the tenant wall on reads and writes, a bad entry writing
// nothing, and the rows going with the device (erase, move, delete).
func testBaselines(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	pa := createProduct(t, s, tenA, "prd-a")
	pb := createProduct(t, s, tenB, "prd-b")
	for _, id := range []string{"dev-a1", "dev-a2", "dev-a3", "dev-a4"} {
		createDevice(t, s, newDevice(tenA, pa.ID, id, "SN-"+id))
	}
	createDevice(t, s, newDevice(tenB, pb.ID, "dev-b1", "SN-b1"))
	bl := func(tenant, device, doc string, d time.Duration) store.DetectionBaseline {
		return store.DetectionBaseline{TenantID: tenant, DeviceID: device, Doc: []byte(doc), UpdatedAt: at(d)}
	}
	get := func(tenant, device string) *store.DetectionBaseline {
		t.Helper()
		b, err := s.GetDetectionBaseline(ctx, tenant, device)
		noErr(t, err, "GetDetectionBaseline "+device)
		return b
	}

	_, err := s.GetDetectionBaseline(ctx, tenA, "dev-a1")
	wantErr(t, err, store.ErrNotFound, "nothing saved yet")
	noErr(t, s.PutDetectionBaselines(ctx, nil), "empty batch")

	a1 := bl(tenA, "dev-a1", `{"version":1,"n":1}`, time.Minute)
	noErr(t, s.PutDetectionBaselines(ctx, []store.DetectionBaseline{a1, bl(tenA, "dev-a2", `{"version":1,"n":2}`, time.Minute),
		bl(tenB, "dev-b1", `{"version":1,"n":3}`, time.Minute)}), "PutDetectionBaselines")
	wantEqual(t, *get(tenA, "dev-a1"), a1, "saved baseline")
	wantEqual(t, string(get(tenB, "dev-b1").Doc), `{"version":1,"n":3}`, "B's baseline")

	// A later save replaces the document and its time.
	a1 = bl(tenA, "dev-a1", `{"version":1,"n":10}`, 5*time.Minute)
	noErr(t, s.PutDetectionBaselines(ctx, []store.DetectionBaseline{a1}), "second save")
	wantEqual(t, *get(tenA, "dev-a1"), a1, "replaced baseline")

	// Tenant wall: B reads nothing of A's, and a row naming A's device
	// under B is skipped, not written.
	_, err = s.GetDetectionBaseline(ctx, tenB, "dev-a1")
	wantErr(t, err, store.ErrNotFound, "A's baseline read from B")
	noErr(t, s.PutDetectionBaselines(ctx, []store.DetectionBaseline{bl(tenB, "dev-a1", `{"version":1,"n":99}`, 6*time.Minute),
		bl(tenA, "dev-a3", `{"version":1,"n":4}`, 6*time.Minute)}), "batch with a row across the wall")
	_, err = s.GetDetectionBaseline(ctx, tenB, "dev-a1")
	wantErr(t, err, store.ErrNotFound, "a row across the wall was written")
	wantEqual(t, *get(tenA, "dev-a1"), a1, "A's baseline after B's write")
	wantEqual(t, string(get(tenA, "dev-a3").Doc), `{"version":1,"n":4}`, "the rest of the batch")
	noErr(t, s.PutDetectionBaselines(ctx, []store.DetectionBaseline{bl(tenA, "dev-gone", `{"version":1}`, time.Minute)}),
		"a device that does not exist is skipped")

	// Bad entries: a clear error, and nothing of the batch is written.
	for _, bad := range []store.DetectionBaseline{
		bl("", "dev-a4", `{}`, time.Minute),
		bl(tenA, "", `{}`, time.Minute),
		bl(tenA, "dev-a4", ``, time.Minute),
		bl(tenA, "dev-a4", `{"version":`, time.Minute),
		{TenantID: tenA, DeviceID: "dev-a4", Doc: []byte(`{}`)},
	} {
		err := s.PutDetectionBaselines(ctx, []store.DetectionBaseline{bl(tenA, "dev-a2", `{"version":1,"n":77}`, time.Hour), bad})
		if err == nil {
			t.Fatalf("bad baseline %+v accepted", bad)
		}
		wantEqual(t, string(get(tenA, "dev-a2").Doc), `{"version":1,"n":2}`, "baseline after a refused batch")
		_, err = s.GetDetectionBaseline(ctx, tenA, "dev-a4")
		wantErr(t, err, store.ErrNotFound, "a refused entry was written")
	}

	// The rows go with the device's data: erased (from the right tenant
	// only), dropped when the device changes owner, deleted with it.
	mustUpdate(t, s, func(tx store.Tx) error { _, err := tx.EraseDeviceData(ctx, tenB, "dev-a1"); return err })
	get(tenA, "dev-a1")
	mustUpdate(t, s, func(tx store.Tx) error { _, err := tx.EraseDeviceData(ctx, tenA, "dev-a1"); return err })
	_, err = s.GetDetectionBaseline(ctx, tenA, "dev-a1")
	wantErr(t, err, store.ErrNotFound, "baseline after the erase")

	mustUpdate(t, s, func(tx store.Tx) error { return tx.MoveDevice(ctx, tenA, tenB, "dev-a2") })
	for _, ten := range []string{tenA, tenB} {
		_, err = s.GetDetectionBaseline(ctx, ten, "dev-a2")
		wantErr(t, err, store.ErrNotFound, "baseline of a moved device in "+ten)
	}
	// The new owner's detection saves its own.
	noErr(t, s.PutDetectionBaselines(ctx, []store.DetectionBaseline{bl(tenB, "dev-a2", `{"version":1,"n":5}`, 7*time.Minute),
		bl(tenA, "dev-a2", `{"version":1,"n":6}`, 7*time.Minute)}), "saves after the move")
	wantEqual(t, string(get(tenB, "dev-a2").Doc), `{"version":1,"n":5}`, "new owner's baseline")
	_, err = s.GetDetectionBaseline(ctx, tenA, "dev-a2")
	wantErr(t, err, store.ErrNotFound, "the old owner saved a moved device's baseline")

	mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteDevice(ctx, tenA, "dev-a3") })
	_, err = s.GetDetectionBaseline(ctx, tenA, "dev-a3")
	wantErr(t, err, store.ErrNotFound, "baseline of a deleted device")
	wantEqual(t, string(get(tenB, "dev-b1").Doc), `{"version":1,"n":3}`, "other devices' baselines")
}
