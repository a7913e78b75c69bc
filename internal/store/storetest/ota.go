package storetest

import (
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

func testOTA(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	pa := createProduct(t, s, tenA, "prd-a")
	art := func(tenant, id, version string) *model.Artifact {
		return &model.Artifact{ID: id, TenantID: tenant, Name: id + ".bin", Version: version, ProductIDs: []string{pa.ID},
			HardwareIDs: []string{"hw-1", "hw-2"}, SBOMRef: "sbom:" + version, ReleaseNotes: "notes", CreatedAt: at(0), CreatedBy: "key-1"}
	}
	mustUpdate(t, s, func(tx store.Tx) error {
		for _, a := range []*model.Artifact{art(tenA, "art-1", "1.0"), art(tenA, "art-2", "1.1"), art(tenA, "art-3", "1.2"), art(tenB, "art-b", "1.0")} {
			if err := tx.CreateArtifact(ctx, a); err != nil {
				return err
			}
		}
		return nil
	})
	wantConflict(t, s.Update(ctx, func(tx store.Tx) error { return tx.CreateArtifact(ctx, art(tenA, "art-1", "9")) }), "art-1", "same ID again")

	got, err := s.GetArtifact(ctx, tenA, "art-1")
	noErr(t, err, "GetArtifact")
	want := art(tenA, "art-1", "1.0")
	wantEqual(t, *got, *want, "artifact read back")
	if got.Uploaded() {
		t.Fatal("a new artifact has content")
	}
	_, err = s.GetArtifact(ctx, tenB, "art-1")
	wantErr(t, err, store.ErrNotFound, "GetArtifact across the wall")

	// Content is set once.
	up := *want
	up.SHA256, up.Length, up.UploadedAt = "ab12", 42, ptr(at(time.Second))
	mustUpdate(t, s, func(tx store.Tx) error { return tx.SetArtifactContent(ctx, &up) })
	got, _ = s.GetArtifact(ctx, tenA, "art-1")
	wantEqual(t, *got, up, "artifact with content")
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.SetArtifactContent(ctx, &up) }), store.ErrStale, "second upload")
	other := up
	other.TenantID = tenB
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.SetArtifactContent(ctx, &other) }), store.ErrNotFound, "upload across the wall")
	inUse, err := s.ArtifactDigestInUse(ctx, "ab12")
	noErr(t, err, "ArtifactDigestInUse")
	if !inUse {
		t.Fatal("the uploaded digest is not in use")
	}

	// Pages, newest (highest ID) first, tenant only.
	var ids []string
	cur := ""
	for {
		page, next, err := s.ListArtifacts(ctx, tenA, store.ListOptions{Limit: 2, Cursor: cur})
		noErr(t, err, "ListArtifacts")
		for _, a := range page {
			ids = append(ids, a.ID)
		}
		if next == "" {
			break
		}
		cur = next
	}
	wantEqual(t, ids, []string{"art-3", "art-2", "art-1"}, "artifact pages")

	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.DeleteArtifact(ctx, tenB, "art-1") }), store.ErrNotFound, "delete across the wall")
	mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteArtifact(ctx, tenA, "art-1") })
	inUse, _ = s.ArtifactDigestInUse(ctx, "ab12")
	if inUse {
		t.Fatal("the digest of a deleted artifact is still in use")
	}
	testOTAMetadata(t, s, pa.ID)
}

func testOTAMetadata(t *testing.T, s store.Store, productID string) {
	ctx := t.Context()
	_, err := s.LatestVendorRoot(ctx, tenA)
	wantErr(t, err, store.ErrNotFound, "no vendor root yet")
	_, err = s.LatestVendorTargets(ctx, tenA)
	wantErr(t, err, store.ErrNotFound, "no vendor targets yet")
	root := func(v int64) *model.VendorRoot {
		return &model.VendorRoot{TenantID: tenA, Version: v, Expires: at(time.Hour), Body: []byte(`{"v":` + string(rune('0'+v)) + `}`),
			CreatedAt: at(0), CreatedBy: "key-1"}
	}
	mustUpdate(t, s, func(tx store.Tx) error {
		for v := int64(1); v <= 3; v++ {
			if err := tx.AddVendorRoot(ctx, root(v)); err != nil {
				return err
			}
		}
		return tx.AddVendorTargets(ctx, &model.VendorTargets{TenantID: tenA, Version: 7, Expires: at(time.Hour), Targets: 2,
			Body: []byte("t7"), CreatedAt: at(0), CreatedBy: "key-1"})
	})
	wantConflict(t, s.Update(ctx, func(tx store.Tx) error { return tx.AddVendorRoot(ctx, root(2)) }), "vendor root version 2", "same root version")
	chain, err := s.VendorRoots(ctx, tenA, 1)
	noErr(t, err, "VendorRoots")
	wantEqual(t, chain, []model.VendorRoot{*root(2), *root(3)}, "root chain after v1")
	latest, err := s.LatestVendorRoot(ctx, tenA)
	noErr(t, err, "LatestVendorRoot")
	wantEqual(t, *latest, *root(3), "latest root")
	if chain, _ := s.VendorRoots(ctx, tenB, 0); len(chain) != 0 {
		t.Fatal("tenant B sees A's roots")
	}
	tg, err := s.LatestVendorTargets(ctx, tenA)
	noErr(t, err, "LatestVendorTargets")
	if tg.Version != 7 || string(tg.Body) != "t7" || tg.Targets != 2 {
		t.Fatalf("targets %+v", tg)
	}

	d := createDevice(t, s, newDevice(tenA, productID, "dev-ota", "SN-OTA"))
	as := &model.Assignment{DeviceID: d.ID, TenantID: tenA, ArtifactID: "art-2", TargetName: "fw.bin", Version: "1.1",
		HardwareID: "hw-1", DirectorVersion: 1, Body: []byte("d1"), Expires: at(time.Hour), CreatedAt: at(0), CreatedBy: "key-1"}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.PutAssignment(ctx, as) })
	got, err := s.GetAssignment(ctx, tenA, d.ID)
	noErr(t, err, "GetAssignment")
	wantEqual(t, *got, *as, "assignment")
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.PutAssignment(ctx, as) }), store.ErrStale, "same director version")
	as2 := *as
	as2.DirectorVersion, as2.Body, as2.CampaignID = 2, []byte("d2"), "cmp-1"
	mustUpdate(t, s, func(tx store.Tx) error { return tx.PutAssignment(ctx, &as2) })
	got, _ = s.GetAssignment(ctx, tenA, d.ID)
	wantEqual(t, *got, as2, "replaced assignment")
	_, err = s.GetAssignment(ctx, tenB, d.ID)
	wantErr(t, err, store.ErrNotFound, "assignment across the wall")
	other := as2
	other.TenantID, other.DirectorVersion = tenB, 9
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.PutAssignment(ctx, &other) }), store.ErrNotFound, "assign across the wall")
}
