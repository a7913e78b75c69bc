package storetest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// testIdentity covers the device PKI records: certificates, manufacturer
// CAs, factory keys, claim codes, moving a device between tenants,
// bootstrap and device tokens. Every tenant-scoped call is also tried from
// the other tenant.
func testIdentity(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	pa := createProduct(t, s, tenA, "prd-a")
	pb := createProduct(t, s, tenB, "prd-b")
	da := newDevice(tenA, pa.ID, "dev-a", "SN-A")
	da.Tags, da.Attributes = []string{"lab"}, map[string]string{"site": "s1"}
	da = createDevice(t, s, da)
	da2 := createDevice(t, s, newDevice(tenA, pa.ID, "dev-a2", "SN-A2"))
	db := createDevice(t, s, newDevice(tenB, pb.ID, "dev-b", "SN-B"))

	cert := func(serial, tenant, device string, issued time.Duration) model.Certificate {
		return model.Certificate{Serial: serial, TenantID: tenant, DeviceID: device, Subject: "CN=" + device,
			Fingerprint: "fp-" + serial, KeyFingerprint: "key-" + device, KeyAlgorithm: "ECDSA-P256",
			Method: model.EnrollBootstrapToken, NotBefore: at(issued), NotAfter: at(issued + 90*24*time.Hour),
			IssuedAt: at(issued), DER: []byte("der-" + serial)}
	}

	t.Run("certificates", func(t *testing.T) {
		var made []model.Certificate
		for i := range 5 {
			c := cert(fmt.Sprintf("%02x", i+1), tenA, da.ID, time.Duration(i)*time.Minute)
			made = append(made, c)
			mustUpdate(t, s, func(tx store.Tx) error { return tx.CreateCertificate(ctx, &c) })
		}
		got, err := s.GetCertificate(ctx, tenA, "01")
		noErr(t, err, "GetCertificate")
		wantEqual(t, *got, made[0], "certificate 01")
		_, err = s.GetCertificate(ctx, tenB, "01")
		wantErr(t, err, store.ErrNotFound, "GetCertificate across tenants")
		loc, err := s.LocateCertificate(ctx, "03")
		noErr(t, err, "LocateCertificate")
		wantEqual(t, *loc, made[2], "located certificate 03")
		_, err = s.LocateCertificate(ctx, "ff")
		wantErr(t, err, store.ErrNotFound, "LocateCertificate of a missing serial")

		// Newest first, across pages.
		ids := walk(t, 2, func(c model.Certificate) string { return c.Serial }, func(cur string) ([]model.Certificate, string, error) {
			return s.ListCertificates(ctx, tenA, da.ID, store.ListOptions{Limit: 2, Cursor: cur})
		})
		wantIDs(t, ids, []string{"05", "04", "03", "02", "01"}, "certificates newest first")
		other, _, err := s.ListCertificates(ctx, tenB, da.ID, store.ListOptions{})
		noErr(t, err, "ListCertificates across tenants")
		if len(other) != 0 {
			t.Fatalf("tenant B lists %d of A's certificates", len(other))
		}
		_, _, err = s.ListCertificates(ctx, tenA, da.ID, store.ListOptions{Cursor: "e30"})
		wantErr(t, err, store.ErrBadCursor, "ListCertificates with a foreign cursor")

		// A certificate for another tenant's device is refused.
		foreign := cert("10", tenA, db.ID, 0)
		err = s.Update(ctx, func(tx store.Tx) error { return tx.CreateCertificate(ctx, &foreign) })
		wantErr(t, err, store.ErrNotFound, "CreateCertificate for B's device in A")
		dup := cert("01", tenA, da.ID, 0)
		err = s.Update(ctx, func(tx store.Tx) error { return tx.CreateCertificate(ctx, &dup) })
		wantErr(t, err, store.ErrConflict, "CreateCertificate with a taken serial")

		// Revocation: once, in its tenant only.
		err = s.Update(ctx, func(tx store.Tx) error {
			return tx.RevokeCertificate(ctx, tenB, "02", at(time.Hour), model.ReasonKeyCompromise, "key:b")
		})
		wantErr(t, err, store.ErrNotFound, "RevokeCertificate across tenants")
		mustUpdate(t, s, func(tx store.Tx) error {
			return tx.RevokeCertificate(ctx, tenA, "02", at(time.Hour), model.ReasonKeyCompromise, "key:a")
		})
		err = s.Update(ctx, func(tx store.Tx) error {
			return tx.RevokeCertificate(ctx, tenA, "02", at(2*time.Hour), model.ReasonUnspecified, "key:a")
		})
		wantErr(t, err, store.ErrStale, "revoking twice")
		r, err := s.GetCertificate(ctx, tenA, "02")
		noErr(t, err, "GetCertificate after revoke")
		if r.RevokedAt == nil || !r.RevokedAt.Equal(at(time.Hour)) || r.RevocationReason != model.ReasonKeyCompromise || r.RevokedBy != "key:a" {
			t.Fatalf("revoked certificate reads back as %+v", r)
		}
		err = s.Update(ctx, func(tx store.Tx) error {
			return tx.RevokeCertificate(ctx, tenA, "ff", at(time.Hour), model.ReasonUnspecified, "key:a")
		})
		wantErr(t, err, store.ErrNotFound, "revoking a missing certificate")

		// The CRL lists revoked certificates that have not expired.
		revoked, err := s.RevokedCertificates(ctx, at(0))
		noErr(t, err, "RevokedCertificates")
		if len(revoked) != 1 || revoked[0].Serial != "02" {
			t.Fatalf("RevokedCertificates: %+v", revoked)
		}
		revoked, err = s.RevokedCertificates(ctx, at(365*24*time.Hour))
		noErr(t, err, "RevokedCertificates later")
		if len(revoked) != 0 {
			t.Fatalf("RevokedCertificates lists expired certificates: %+v", revoked)
		}

		byKey, err := s.CertificatesByKey(ctx, "key-"+da.ID)
		noErr(t, err, "CertificatesByKey")
		if len(byKey) != 5 {
			t.Fatalf("CertificatesByKey: %d certificates, want 5", len(byKey))
		}
		mustUpdate(t, s, func(tx store.Tx) error { return tx.SetCertificateSuccessor(ctx, tenA, "04", "05") })
		r, _ = s.GetCertificate(ctx, tenA, "04")
		if r.Successor != "05" {
			t.Fatalf("successor %q, want 05", r.Successor)
		}
		err = s.Update(ctx, func(tx store.Tx) error { return tx.SetCertificateSuccessor(ctx, tenB, "04", "05") })
		wantErr(t, err, store.ErrNotFound, "SetCertificateSuccessor across tenants")

		// A rolled-back transaction leaves no certificate behind.
		lost := cert("20", tenA, da.ID, 0)
		err = s.Update(ctx, func(tx store.Tx) error {
			if err := tx.CreateCertificate(ctx, &lost); err != nil {
				return err
			}
			return errRollback
		})
		wantErr(t, err, errRollback, "rolled back")
		_, err = s.LocateCertificate(ctx, "20")
		wantErr(t, err, store.ErrNotFound, "certificate of a rolled-back transaction")
	})

	t.Run("devices across tenants", func(t *testing.T) {
		d, err := s.LocateDevice(ctx, db.ID)
		noErr(t, err, "LocateDevice")
		if d.TenantID != tenB {
			t.Fatalf("LocateDevice: tenant %s", d.TenantID)
		}
		d, err = s.FindDeviceBySerial(ctx, pa.ID, "SN-A2")
		noErr(t, err, "FindDeviceBySerial")
		if d.ID != da2.ID {
			t.Fatalf("FindDeviceBySerial found %s", d.ID)
		}
		_, err = s.FindDeviceBySerial(ctx, pb.ID, "SN-A2")
		wantErr(t, err, store.ErrNotFound, "FindDeviceBySerial under another product")
		ds, err := s.DevicesBySerial(ctx, tenA, "SN-A")
		noErr(t, err, "DevicesBySerial")
		if len(ds) != 1 || ds[0].ID != da.ID {
			t.Fatalf("DevicesBySerial: %+v", ds)
		}
		ds, err = s.DevicesBySerial(ctx, tenB, "SN-A")
		noErr(t, err, "DevicesBySerial across tenants")
		if len(ds) != 0 {
			t.Fatalf("tenant B finds A's device by serial")
		}
		p, err := s.DeviceProduct(ctx, tenA, da.ID)
		noErr(t, err, "DeviceProduct")
		wantEqual(t, *p, pa, "product of dev-a")
		_, err = s.DeviceProduct(ctx, tenB, da.ID)
		wantErr(t, err, store.ErrNotFound, "DeviceProduct across tenants")
	})

	t.Run("manufacturer CAs", func(t *testing.T) {
		mca := func(id, tenant, product, fp string) model.ManufacturerCA {
			return model.ManufacturerCA{ID: id, TenantID: tenant, ProductID: product, Name: "factory " + id, Subject: "CN=Acme Factory",
				SubjectKeyID: "skid-" + fp, SubjectHash: "subj-acme", Fingerprint: fp, NotBefore: base, NotAfter: at(24 * time.Hour),
				CreatedAt: base, CreatedBy: "key:a", DER: []byte("der-" + id)}
		}
		c1, c2 := mca("mca-1", tenA, pa.ID, "f1"), mca("mca-2", tenA, pa.ID, "f2")
		mustUpdate(t, s, func(tx store.Tx) error {
			if err := tx.CreateManufacturerCA(ctx, &c1); err != nil {
				return err
			}
			return tx.CreateManufacturerCA(ctx, &c2)
		})
		dup := mca("mca-3", tenA, pa.ID, "f1")
		err := s.Update(ctx, func(tx store.Tx) error { return tx.CreateManufacturerCA(ctx, &dup) })
		wantErr(t, err, store.ErrConflict, "the same CA twice for one product")
		foreign := mca("mca-4", tenB, pa.ID, "f4")
		err = s.Update(ctx, func(tx store.Tx) error { return tx.CreateManufacturerCA(ctx, &foreign) })
		wantErr(t, err, store.ErrNotFound, "a CA for another tenant's product")

		got, err := s.GetManufacturerCA(ctx, tenA, c1.ID)
		noErr(t, err, "GetManufacturerCA")
		wantEqual(t, *got, c1, "manufacturer CA")
		_, err = s.GetManufacturerCA(ctx, tenB, c1.ID)
		wantErr(t, err, store.ErrNotFound, "GetManufacturerCA across tenants")
		list, err := s.ListManufacturerCAs(ctx, tenA, pa.ID)
		noErr(t, err, "ListManufacturerCAs")
		wantEqual(t, list, []model.ManufacturerCA{c1, c2}, "manufacturer CAs")
		list, err = s.ListManufacturerCAs(ctx, tenB, pa.ID)
		noErr(t, err, "ListManufacturerCAs across tenants")
		if len(list) != 0 {
			t.Fatal("tenant B lists A's manufacturer CAs")
		}
		found, err := s.FindManufacturerCAs(ctx, "skid-f2", "")
		noErr(t, err, "FindManufacturerCAs by key ID")
		if len(found) != 1 || found[0].ID != c2.ID {
			t.Fatalf("FindManufacturerCAs by key ID: %+v", found)
		}
		found, err = s.FindManufacturerCAs(ctx, "", "subj-acme")
		noErr(t, err, "FindManufacturerCAs by subject")
		if len(found) != 2 {
			t.Fatalf("FindManufacturerCAs by subject: %d CAs, want 2", len(found))
		}
		found, err = s.FindManufacturerCAs(ctx, "", "")
		noErr(t, err, "FindManufacturerCAs with nothing")
		if len(found) != 0 {
			t.Fatalf("FindManufacturerCAs with nothing found %d", len(found))
		}
		err = s.Update(ctx, func(tx store.Tx) error { return tx.DeleteManufacturerCA(ctx, tenB, pa.ID, c2.ID) })
		wantErr(t, err, store.ErrNotFound, "DeleteManufacturerCA across tenants")
		mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteManufacturerCA(ctx, tenA, pa.ID, c2.ID) })
		_, err = s.GetManufacturerCA(ctx, tenA, c2.ID)
		wantErr(t, err, store.ErrNotFound, "deleted manufacturer CA")

		// A product's CAs go with it.
		spare := createProduct(t, s, tenA, "prd-spare")
		c5 := mca("mca-5", tenA, spare.ID, "f5")
		mustUpdate(t, s, func(tx store.Tx) error { return tx.CreateManufacturerCA(ctx, &c5) })
		mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteProduct(ctx, tenA, spare.ID) })
		_, err = s.GetManufacturerCA(ctx, tenA, c5.ID)
		wantErr(t, err, store.ErrNotFound, "CA of a deleted product")
	})

	t.Run("factory keys", func(t *testing.T) {
		k := model.DevicePublicKey{Fingerprint: "pk-1", TenantID: tenA, DeviceID: da2.ID, Algorithm: "Ed25519", CreatedAt: base, DER: []byte("spki")}
		mustUpdate(t, s, func(tx store.Tx) error { return tx.CreateDevicePublicKey(ctx, &k) })
		got, err := s.FindDevicePublicKey(ctx, "pk-1")
		noErr(t, err, "FindDevicePublicKey")
		wantEqual(t, *got, k, "device public key")
		again := k
		again.DeviceID = da.ID
		err = s.Update(ctx, func(tx store.Tx) error { return tx.CreateDevicePublicKey(ctx, &again) })
		wantErr(t, err, store.ErrConflict, "one key for two devices")
		foreign := model.DevicePublicKey{Fingerprint: "pk-2", TenantID: tenA, DeviceID: db.ID, Algorithm: "Ed25519", CreatedAt: base, DER: []byte("x")}
		err = s.Update(ctx, func(tx store.Tx) error { return tx.CreateDevicePublicKey(ctx, &foreign) })
		wantErr(t, err, store.ErrNotFound, "a key for another tenant's device")
		_, err = s.FindDevicePublicKey(ctx, "pk-missing")
		wantErr(t, err, store.ErrNotFound, "FindDevicePublicKey of a missing key")
	})

	t.Run("claim codes", func(t *testing.T) {
		c := model.ClaimCode{Lookup: "look0001", Hash: []byte("h1"), TenantID: tenA, DeviceID: da2.ID, CreatedAt: base, CreatedBy: "key:a"}
		mustUpdate(t, s, func(tx store.Tx) error { return tx.PutClaimCode(ctx, &c) })
		// A new code replaces the old one.
		c2 := model.ClaimCode{Lookup: "look0002", Hash: []byte("h2"), TenantID: tenA, DeviceID: da2.ID, CreatedAt: at(time.Minute), CreatedBy: "key:a"}
		mustUpdate(t, s, func(tx store.Tx) error { return tx.PutClaimCode(ctx, &c2) })
		_, err := s.ClaimCodeByLookup(ctx, "look0001")
		wantErr(t, err, store.ErrNotFound, "the replaced claim code")
		got, err := s.ClaimCodeByLookup(ctx, "look0002")
		noErr(t, err, "ClaimCodeByLookup")
		wantEqual(t, *got, c2, "claim code")
		got, err = s.DeviceClaimCode(ctx, tenA, da2.ID)
		noErr(t, err, "DeviceClaimCode")
		wantEqual(t, *got, c2, "device claim code")
		_, err = s.DeviceClaimCode(ctx, tenB, da2.ID)
		wantErr(t, err, store.ErrNotFound, "DeviceClaimCode across tenants")
		taken := model.ClaimCode{Lookup: "look0002", Hash: []byte("h3"), TenantID: tenA, DeviceID: da.ID, CreatedAt: base, CreatedBy: "key:a"}
		err = s.Update(ctx, func(tx store.Tx) error { return tx.PutClaimCode(ctx, &taken) })
		wantErr(t, err, store.ErrConflict, "a taken lookup")
		foreign := model.ClaimCode{Lookup: "look0003", Hash: []byte("h"), TenantID: tenA, DeviceID: db.ID, CreatedAt: base, CreatedBy: "key:a"}
		err = s.Update(ctx, func(tx store.Tx) error { return tx.PutClaimCode(ctx, &foreign) })
		wantErr(t, err, store.ErrNotFound, "a claim code for another tenant's device")

		mustUpdate(t, s, func(tx store.Tx) error { return tx.MarkClaimCodeClaimed(ctx, "look0002", tenB, at(time.Hour)) })
		err = s.Update(ctx, func(tx store.Tx) error { return tx.MarkClaimCodeClaimed(ctx, "look0002", tenB, at(2*time.Hour)) })
		wantErr(t, err, store.ErrStale, "claiming twice")
		err = s.Update(ctx, func(tx store.Tx) error { return tx.MarkClaimCodeClaimed(ctx, "nothere0", tenB, at(time.Hour)) })
		wantErr(t, err, store.ErrNotFound, "claiming a missing code")
		got, _ = s.ClaimCodeByLookup(ctx, "look0002")
		if got.ClaimedAt == nil || !got.ClaimedAt.Equal(at(time.Hour)) || got.ClaimedBy != tenB {
			t.Fatalf("claimed code reads back as %+v", got)
		}
		err = s.Update(ctx, func(tx store.Tx) error { return tx.MarkClaimCodeEnrolled(ctx, tenB, "look0002", at(time.Hour)) })
		wantErr(t, err, store.ErrNotFound, "enrolling with a code of another tenant")
		mustUpdate(t, s, func(tx store.Tx) error { return tx.MarkClaimCodeEnrolled(ctx, tenA, "look0002", at(3*time.Hour)) })
		err = s.Update(ctx, func(tx store.Tx) error { return tx.MarkClaimCodeEnrolled(ctx, tenA, "look0002", at(4*time.Hour)) })
		wantErr(t, err, store.ErrStale, "enrolling twice")
	})

	t.Run("move device", func(t *testing.T) {
		g := model.Group{ID: "grp-a", TenantID: tenA, Name: "lab", Kind: model.GroupStatic, CreatedAt: base}
		tok := model.DeviceToken{DeviceID: da.ID, TenantID: tenA, Prefix: "sdt_abc", Hash: []byte("t"), CreatedAt: base, CreatedBy: "key:a"}
		cc := model.ClaimCode{Lookup: "move0001", Hash: []byte("m"), TenantID: tenA, DeviceID: da.ID, CreatedAt: base, CreatedBy: "key:a"}
		mustUpdate(t, s, func(tx store.Tx) error {
			if err := tx.CreateGroup(ctx, &g); err != nil {
				return err
			}
			if err := tx.AddGroupMembers(ctx, tenA, g.ID, []string{da.ID}); err != nil {
				return err
			}
			if err := tx.PutDeviceToken(ctx, &tok); err != nil {
				return err
			}
			if err := tx.PutTwinDesired(ctx, tenA, da.ID, json.RawMessage(`{"vendor":"setting"}`), 0, base); err != nil {
				return err
			}
			return tx.PutClaimCode(ctx, &cc)
		})
		err := s.Update(ctx, func(tx store.Tx) error { return tx.MoveDevice(ctx, tenB, tenA, da.ID) })
		wantErr(t, err, store.ErrNotFound, "MoveDevice from a tenant that does not have it")
		mustUpdate(t, s, func(tx store.Tx) error { return tx.MoveDevice(ctx, tenA, tenB, da.ID) })

		_, err = s.GetDevice(ctx, tenA, da.ID)
		wantErr(t, err, store.ErrNotFound, "the moved device in its old tenant")
		moved := getDevice(t, s, tenB, da.ID)
		if moved.Version != da.Version+1 || moved.ProductID != pa.ID {
			t.Fatalf("moved device: %+v", moved)
		}
		for _, q := range []model.DeviceQuery{{Tags: []string{"lab"}}, {Attrs: map[string]string{"site": "s1"}}} {
			inB, _, err := s.QueryDevices(ctx, tenB, q, model.Page{})
			noErr(t, err, "QueryDevices in B")
			inA, _, err := s.QueryDevices(ctx, tenA, q, model.Page{})
			noErr(t, err, "QueryDevices in A")
			if len(inB) != 1 || len(inA) != 0 {
				t.Fatalf("query %+v after the move: %d in B, %d in A; the tags and attributes must follow the device", q, len(inB), len(inA))
			}
		}
		members, _, err := s.QueryDevices(ctx, tenA, model.DeviceQuery{GroupID: g.ID}, model.Page{})
		noErr(t, err, "group members")
		if len(members) != 0 {
			t.Fatalf("the moved device is still in A's group")
		}
		certs, _, err := s.ListCertificates(ctx, tenB, da.ID, store.ListOptions{})
		noErr(t, err, "ListCertificates in B")
		if len(certs) != 5 {
			t.Fatalf("%d certificates followed the device, want 5", len(certs))
		}
		if c, err := s.DeviceClaimCode(ctx, tenB, da.ID); err != nil || c.Lookup != "move0001" {
			t.Fatalf("claim code after the move: %+v, %v", c, err)
		}
		if tk, err := s.DeviceToken(ctx, da.ID); err != nil || tk.TenantID != tenB {
			t.Fatalf("token after the move: %+v, %v", tk, err)
		}
		// The per-state counts follow the device: A keeps dev-a2, B has dev-b and dev-a.
		for tenant, want := range map[string]int64{tenA: 1, tenB: 2} {
			counts, err := s.CountDevicesByState(ctx, tenant)
			noErr(t, err, "CountDevicesByState")
			if counts[model.StateManufactured] != want {
				t.Fatalf("tenant %s counts after the move: %v, want %d manufactured", tenant, counts, want)
			}
		}
		// The old owner's twin does not follow; the new owner writes its own.
		tw, err := s.GetTwin(ctx, tenB, da.ID)
		noErr(t, err, "GetTwin in B")
		if tw.DesiredVersion != 0 || string(tw.Desired) != "{}" {
			t.Fatalf("A's twin followed the device: %+v", tw)
		}
		mustUpdate(t, s, func(tx store.Tx) error {
			return tx.PutTwinDesired(ctx, tenB, da.ID, json.RawMessage(`{"owner":"b"}`), 0, at(time.Hour))
		})
		// The lifecycle continues in the new tenant.
		mustUpdate(t, s, func(tx store.Tx) error {
			return tx.SetDeviceState(ctx, tenB, &model.Transition{DeviceID: da.ID, From: model.StateManufactured,
				To: model.StateClaimed, Actor: "key:b", Reason: "claimed", At: at(time.Hour)})
		})
		trs, _, err := s.ListTransitions(ctx, tenB, da.ID, store.ListOptions{})
		noErr(t, err, "ListTransitions in B")
		if len(trs) != 1 {
			t.Fatalf("%d transitions in B", len(trs))
		}
	})

	t.Run("bootstrap tokens", func(t *testing.T) {
		mk := func(id, tenant, product string) model.BootstrapToken {
			return model.BootstrapToken{ID: id, TenantID: tenant, Name: "line " + id, Prefix: "pfx-" + id, Hash: []byte("h-" + id),
				ProductID: product, CreatedAt: base, CreatedBy: "key:a", ExpiresAt: at(time.Hour)}
		}
		var want []string
		for i := range 3 {
			b := mk(fmt.Sprintf("btk-%d", i), tenA, pa.ID)
			want = append(want, b.ID)
			mustUpdate(t, s, func(tx store.Tx) error { return tx.CreateBootstrapToken(ctx, &b) })
		}
		foreign := mk("btk-x", tenB, pa.ID)
		err := s.Update(ctx, func(tx store.Tx) error { return tx.CreateBootstrapToken(ctx, &foreign) })
		wantErr(t, err, store.ErrNotFound, "a token scoped to another tenant's product")
		plain := mk("btk-y", tenB, "")
		mustUpdate(t, s, func(tx store.Tx) error { return tx.CreateBootstrapToken(ctx, &plain) })

		got, err := s.BootstrapTokenByPrefix(ctx, "pfx-btk-1")
		noErr(t, err, "BootstrapTokenByPrefix")
		wantEqual(t, *got, mk("btk-1", tenA, pa.ID), "bootstrap token")
		_, err = s.GetBootstrapToken(ctx, tenB, "btk-1")
		wantErr(t, err, store.ErrNotFound, "GetBootstrapToken across tenants")
		ids := walk(t, 2, func(b model.BootstrapToken) string { return b.ID }, func(cur string) ([]model.BootstrapToken, string, error) {
			return s.ListBootstrapTokens(ctx, tenA, store.ListOptions{Limit: 2, Cursor: cur})
		})
		wantIDs(t, ids, want, "A's bootstrap tokens")
		// A cursor of one list is refused by another.
		_, tokCursor, err := s.ListBootstrapTokens(ctx, tenA, store.ListOptions{Limit: 1})
		noErr(t, err, "ListBootstrapTokens")
		_, _, err = s.ListCertificates(ctx, tenB, da.ID, store.ListOptions{Cursor: tokCursor})
		wantErr(t, err, store.ErrBadCursor, "ListCertificates with a bootstrap-token cursor")
		_, certCursor, err := s.ListCertificates(ctx, tenB, da.ID, store.ListOptions{Limit: 1})
		noErr(t, err, "ListCertificates")
		_, _, err = s.ListBootstrapTokens(ctx, tenA, store.ListOptions{Cursor: certCursor})
		wantErr(t, err, store.ErrBadCursor, "ListBootstrapTokens with a certificate cursor")

		err = s.Update(ctx, func(tx store.Tx) error { return tx.UseBootstrapToken(ctx, tenB, "btk-0", db.ID, at(time.Minute)) })
		wantErr(t, err, store.ErrNotFound, "using A's token in B")
		mustUpdate(t, s, func(tx store.Tx) error { return tx.UseBootstrapToken(ctx, tenA, "btk-0", da2.ID, at(time.Minute)) })
		err = s.Update(ctx, func(tx store.Tx) error { return tx.UseBootstrapToken(ctx, tenA, "btk-0", da2.ID, at(2*time.Minute)) })
		wantErr(t, err, store.ErrStale, "using a token twice")
		used, _ := s.GetBootstrapToken(ctx, tenA, "btk-0")
		if used.UsedAt == nil || used.UsedBy != da2.ID {
			t.Fatalf("used token reads back as %+v", used)
		}
		err = s.Update(ctx, func(tx store.Tx) error { return tx.RevokeBootstrapToken(ctx, tenA, "btk-0", at(time.Hour)) })
		wantErr(t, err, store.ErrStale, "revoking a used token")
		mustUpdate(t, s, func(tx store.Tx) error { return tx.RevokeBootstrapToken(ctx, tenA, "btk-1", at(time.Hour)) })
		err = s.Update(ctx, func(tx store.Tx) error { return tx.UseBootstrapToken(ctx, tenA, "btk-1", da2.ID, at(2*time.Hour)) })
		wantErr(t, err, store.ErrStale, "using a revoked token")
		err = s.Update(ctx, func(tx store.Tx) error { return tx.RevokeBootstrapToken(ctx, tenB, "btk-2", at(time.Hour)) })
		wantErr(t, err, store.ErrNotFound, "revoking across tenants")
	})

	t.Run("platform CA", func(t *testing.T) {
		_, err := s.PlatformCA(ctx)
		wantErr(t, err, store.ErrNotFound, "PlatformCA before it is recorded")
		c := model.PlatformCA{AnchorSHA256: "aa", IssuingSHA256: "bb", CreatedAt: base}
		mustUpdate(t, s, func(tx store.Tx) error { return tx.CreatePlatformCA(ctx, &c) })
		got, err := s.PlatformCA(ctx)
		noErr(t, err, "PlatformCA")
		wantEqual(t, *got, c, "platform CA")
		other := model.PlatformCA{AnchorSHA256: "cc", IssuingSHA256: "dd", CreatedAt: base}
		err = s.Update(ctx, func(tx store.Tx) error { return tx.CreatePlatformCA(ctx, &other) })
		wantErr(t, err, store.ErrConflict, "recording a second CA")
	})

	t.Run("device tokens", func(t *testing.T) {
		k := model.DeviceToken{DeviceID: da2.ID, TenantID: tenA, Prefix: "sdt_one", Hash: []byte("one"), CreatedAt: base, CreatedBy: "key:a"}
		mustUpdate(t, s, func(tx store.Tx) error { return tx.PutDeviceToken(ctx, &k) })
		k2 := k
		k2.Prefix, k2.Hash = "sdt_two", []byte("two")
		mustUpdate(t, s, func(tx store.Tx) error { return tx.PutDeviceToken(ctx, &k2) })
		got, err := s.DeviceToken(ctx, da2.ID)
		noErr(t, err, "DeviceToken")
		wantEqual(t, *got, k2, "replaced device token")
		foreign := model.DeviceToken{DeviceID: db.ID, TenantID: tenA, Prefix: "sdt_x", Hash: []byte("x"), CreatedAt: base, CreatedBy: "key:a"}
		err = s.Update(ctx, func(tx store.Tx) error { return tx.PutDeviceToken(ctx, &foreign) })
		wantErr(t, err, store.ErrNotFound, "a token for another tenant's device")
		err = s.Update(ctx, func(tx store.Tx) error { return tx.RevokeDeviceToken(ctx, tenB, da2.ID, at(time.Hour)) })
		wantErr(t, err, store.ErrNotFound, "revoking across tenants")
		mustUpdate(t, s, func(tx store.Tx) error { return tx.RevokeDeviceToken(ctx, tenA, da2.ID, at(time.Hour)) })
		err = s.Update(ctx, func(tx store.Tx) error { return tx.RevokeDeviceToken(ctx, tenA, da2.ID, at(2*time.Hour)) })
		wantErr(t, err, store.ErrNotFound, "revoking twice")
		got, _ = s.DeviceToken(ctx, da2.ID)
		if got.RevokedAt == nil || !got.RevokedAt.Equal(at(time.Hour)) {
			t.Fatalf("revoked token reads back as %+v", got)
		}
		_, err = s.DeviceToken(ctx, "dev-missing")
		wantErr(t, err, store.ErrNotFound, "DeviceToken of a device without one")

		// Erasing a device erases its token, key and claim code.
		mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteDevice(ctx, tenA, da2.ID) })
		_, err = s.DeviceToken(ctx, da2.ID)
		wantErr(t, err, store.ErrNotFound, "token of an erased device")
		_, err = s.FindDevicePublicKey(ctx, "pk-1")
		wantErr(t, err, store.ErrNotFound, "key of an erased device")
	})
}
