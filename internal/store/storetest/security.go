package storetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// testSecurity covers the security engine's records: SBOMs and the
// firmware their devices run, advisories in platform and tenant scope,
// MUD profiles, observed flows, findings, settings and the certificates
// the audit checks read. Every tenant-scoped call is also tried from the
// other tenant.
func testSecurity(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	pa := createProduct(t, s, tenA, "prd-a")
	pa2 := createProduct(t, s, tenA, "prd-a2")
	pb := createProduct(t, s, tenB, "prd-b")
	dev := func(tenant, product, id, fw string) model.Device {
		d := newDevice(tenant, product, id, "SN-"+id)
		d.FirmwareVersion = fw
		return createDevice(t, s, d)
	}
	da1 := dev(tenA, pa.ID, "dev-a1", "1.0")
	dev(tenA, pa.ID, "dev-a2", "1.0")
	dev(tenA, pa.ID, "dev-a3", "1.1")
	dev(tenA, pa2.ID, "dev-a4", "1.0")
	db1 := dev(tenB, pb.ID, "dev-b1", "1.0")

	comp := func(i int, name, version, eco string) model.SBOMComponent {
		c := model.SBOMComponent{Index: i, Name: name, Version: version}
		if eco != "" {
			c.PURL, c.Ecosystem, c.Package = "pkg:x/"+name+"@"+version, eco, name
		}
		return c
	}
	putSBOM := func(tenant, product, fw string, comps ...model.SBOMComponent) error {
		b := &model.SBOM{ID: "sbm-" + product + "-" + fw, TenantID: tenant, ProductID: product, FirmwareVersion: fw,
			Format: model.SBOMCycloneDX, SpecVersion: "1.5", Components: len(comps), SHA256: "00", ImportedAt: base, ImportedBy: "test"}
		return s.Update(ctx, func(tx store.Tx) error { return tx.PutSBOM(ctx, b, comps) })
	}

	t.Run("sboms", func(t *testing.T) {
		noErr(t, putSBOM(tenA, pa.ID, "1.0", comp(0, "net", "0.1.0", "Go"), comp(1, "busybox", "1.36", "")), "PutSBOM 1.0")
		many := make([]model.SBOMComponent, 120) // more than one insert batch
		for i := range many {
			many[i] = comp(i, fmt.Sprintf("lib%03d", i), "1", "npm")
		}
		many[7] = comp(7, "net", "0.17.0", "Go")
		noErr(t, putSBOM(tenA, pa.ID, "1.1", many...), "PutSBOM 1.1")
		noErr(t, putSBOM(tenA, pa2.ID, "1.0", comp(0, "net", "0.2.0", "Go")), "PutSBOM a2")
		noErr(t, putSBOM(tenB, pb.ID, "1.0", comp(0, "net", "0.1.0", "Go")), "PutSBOM b")
		wantErr(t, putSBOM(tenA, pb.ID, "9.9", comp(0, "x", "1", "")), store.ErrNotFound, "PutSBOM on another tenant's product")
		// Replacing keeps one SBOM per version.
		noErr(t, putSBOM(tenA, pa.ID, "1.0", comp(0, "net", "0.1.0", "Go"), comp(1, "busybox", "1.36", ""),
			comp(2, "gogo", "1.3.1", "Go")), "replace 1.0")

		got, err := s.GetSBOM(ctx, tenA, pa.ID, "1.0")
		noErr(t, err, "GetSBOM")
		wantEqual(t, got.Components, 3, "components of the replaced SBOM")
		_, err = s.GetSBOM(ctx, tenB, pa.ID, "1.0")
		wantErr(t, err, store.ErrNotFound, "GetSBOM across tenants")
		vs := walk(t, 1, func(b model.SBOM) string { return b.FirmwareVersion }, func(c string) ([]model.SBOM, string, error) {
			return s.ListSBOMs(ctx, tenA, pa.ID, store.ListOptions{Limit: 1, Cursor: c})
		})
		wantIDs(t, vs, []string{"1.0", "1.1"}, "SBOMs by version")
		other, _, err := s.ListSBOMs(ctx, tenB, pa.ID, store.ListOptions{})
		noErr(t, err, "ListSBOMs across tenants")
		wantEqual(t, len(other), 0, "B's view of A's SBOMs")
		idx := walk(t, 50, func(c model.SBOMComponent) string { return fmt.Sprint(c.Index) }, func(c string) ([]model.SBOMComponent, string, error) {
			return s.ListSBOMComponents(ctx, tenA, pa.ID, "1.1", store.ListOptions{Limit: 50, Cursor: c})
		})
		wantEqual(t, len(idx), 120, "components paged")
		_, _, err = s.ListSBOMComponents(ctx, tenB, pa.ID, "1.1", store.ListOptions{})
		wantErr(t, err, store.ErrNotFound, "ListSBOMComponents across tenants")
		for _, c := range garbageCursors {
			_, _, err := s.ListSBOMs(ctx, tenA, pa.ID, store.ListOptions{Cursor: c})
			wantErr(t, err, store.ErrBadCursor, "ListSBOMs with "+c)
		}
	})

	t.Run("firmware components", func(t *testing.T) {
		cs, err := s.DeviceFirmwareComponents(ctx, tenA, da1.ID)
		noErr(t, err, "DeviceFirmwareComponents")
		wantEqual(t, len(cs), 3, "components of dev-a1's firmware")
		wantEqual(t, cs[0].ProductID+"@"+cs[0].FirmwareVersion, pa.ID+"@1.0", "firmware of the components")
		_, err = s.DeviceFirmwareComponents(ctx, tenB, da1.ID)
		wantErr(t, err, store.ErrNotFound, "DeviceFirmwareComponents across tenants")

		run, err := s.RunningFirmwareComponents(ctx, tenA, []string{"Go/net"})
		noErr(t, err, "RunningFirmwareComponents")
		var got []string
		for _, c := range run {
			got = append(got, c.ProductID+"@"+c.FirmwareVersion+" "+c.Version)
		}
		wantIDs(t, got, []string{pa.ID + "@1.0 0.1.0", pa.ID + "@1.1 0.17.0", pa2.ID + "@1.0 0.2.0"}, "running net components")
		all, err := s.RunningFirmwareComponents(ctx, tenA, nil)
		noErr(t, err, "RunningFirmwareComponents (all)")
		for _, c := range all {
			if c.Ecosystem == "" {
				t.Fatalf("a component without a package: %+v", c)
			}
		}
		bs, err := s.RunningFirmwareComponents(ctx, tenB, []string{"Go/net"})
		noErr(t, err, "RunningFirmwareComponents B")
		wantEqual(t, len(bs), 1, "B runs one firmware with net")

		pcs, err := s.ProductFirmwareComponents(ctx, tenA, pa.ID, []string{"Go/net"})
		noErr(t, err, "ProductFirmwareComponents")
		wantEqual(t, len(pcs), 2, "net in the product's SBOMs")
		none, err := s.ProductFirmwareComponents(ctx, tenB, pa.ID, []string{"Go/net"})
		noErr(t, err, "ProductFirmwareComponents across tenants")
		wantEqual(t, len(none), 0, "B's view of A's product SBOMs")
		vs, err := s.ProductFirmwareVersions(ctx, tenA, pa.ID)
		noErr(t, err, "ProductFirmwareVersions")
		wantIDs(t, vs, []string{"1.0", "1.1"}, "firmware versions with SBOMs")
		vs, err = s.ProductFirmwareVersions(ctx, tenB, pa.ID)
		noErr(t, err, "ProductFirmwareVersions across tenants")
		wantEqual(t, len(vs), 0, "B's view of A's versions")

		fw := []model.FirmwareRef{{ProductID: pa.ID, FirmwareVersion: "1.0"}, {ProductID: pa2.ID, FirmwareVersion: "1.0"}}
		ids := walk(t, 1, deviceID, func(c string) ([]model.Device, string, error) {
			return s.DevicesRunning(ctx, tenA, fw, store.ListOptions{Limit: 1, Cursor: c})
		})
		wantIDs(t, ids, []string{"dev-a1", "dev-a2", "dev-a4"}, "devices running 1.0")
		bd, _, err := s.DevicesRunning(ctx, tenB, fw, store.ListOptions{})
		noErr(t, err, "DevicesRunning B")
		wantEqual(t, len(bd), 0, "B's devices running A's firmware")
		empty, next, err := s.DevicesRunning(ctx, tenA, nil, store.ListOptions{})
		noErr(t, err, "DevicesRunning of nothing")
		wantEqual(t, len(empty)+len(next), 0, "nothing runs no firmware")

		mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteSBOM(ctx, tenA, pa2.ID, "1.0") })
		wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.DeleteSBOM(ctx, tenB, pa.ID, "1.0") }), store.ErrNotFound,
			"DeleteSBOM across tenants")
		_, err = s.GetSBOM(ctx, tenA, pa2.ID, "1.0")
		wantErr(t, err, store.ErrNotFound, "deleted SBOM")
	})

	t.Run("advisories", func(t *testing.T) {
		adv := func(tenant, id string, modified time.Duration, aliases ...string) (*model.Advisory, []model.AffectedPackage) {
			a := &model.Advisory{TenantID: tenant, ID: id, Aliases: aliases, Summary: id, Severity: "high", Modified: at(modified),
				Packages: []string{"Go/net"}, Record: json.RawMessage(`{"id":"` + id + `"}`), ImportedAt: base, ImportedBy: "test"}
			aff := []model.AffectedPackage{{TenantID: tenant, AdvisoryID: id, Ecosystem: "Go", Package: "net",
				Ranges: json.RawMessage(`[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"0.4.0"}]}]`)}}
			return a, aff
		}
		put := func(tenant, id string, modified time.Duration, aliases ...string) bool {
			a, aff := adv(tenant, id, modified, aliases...)
			var changed bool
			mustUpdate(t, s, func(tx store.Tx) error {
				var err error
				changed, err = tx.PutAdvisory(ctx, a, aff)
				return err
			})
			return changed
		}
		wantEqual(t, put("", "GO-1", 0, "CVE-1"), true, "new platform advisory")
		wantEqual(t, put("", "GO-1", 0, "CVE-1"), false, "same modified time")
		wantEqual(t, put("", "GO-1", -time.Hour), false, "older record")
		wantEqual(t, put("", "GO-1", time.Hour, "CVE-1", "GHSA-1"), true, "newer record")
		wantEqual(t, put("", "GO-2", 0), true, "second platform advisory")
		wantEqual(t, put(tenA, "VENDOR-1", 0, "CVE-1"), true, "A's own advisory")
		wantEqual(t, put(tenA, "GO-2", time.Hour), true, "A's own copy of GO-2")

		got, err := s.GetAdvisories(ctx, tenA, "CVE-1")
		noErr(t, err, "GetAdvisories by alias")
		var ids []string
		for _, a := range got {
			ids = append(ids, a.TenantID+"/"+a.ID)
		}
		wantIDs(t, ids, []string{tenA + "/VENDOR-1", "/GO-1"}, "records of CVE-1 seen by A (own first)")
		wantEqual(t, got[1].Aliases, []string{"CVE-1", "GHSA-1"}, "aliases after the update")
		got, err = s.GetAdvisories(ctx, tenB, "CVE-1")
		noErr(t, err, "GetAdvisories B")
		wantEqual(t, len(got), 1, "B sees only the platform record")
		_, err = s.GetAdvisories(ctx, tenB, "VENDOR-1")
		wantErr(t, err, store.ErrNotFound, "A's advisory from B")
		got, err = s.GetAdvisories(ctx, tenA, "GO-2")
		noErr(t, err, "GetAdvisories GO-2")
		wantEqual(t, got[0].TenantID, tenA, "the tenant's copy shadows the platform's")

		list := walk(t, 1, func(a model.Advisory) string { return a.TenantID + "/" + a.ID }, func(c string) ([]model.Advisory, string, error) {
			return s.ListAdvisories(ctx, tenA, store.ListOptions{Limit: 1, Cursor: c})
		})
		wantIDs(t, list, []string{"/GO-1", tenA + "/GO-2", tenA + "/VENDOR-1"}, "A's advisories")
		list = walk(t, 0, func(a model.Advisory) string { return a.TenantID + "/" + a.ID }, func(c string) ([]model.Advisory, string, error) {
			return s.ListAdvisories(ctx, tenB, store.ListOptions{Cursor: c})
		})
		wantIDs(t, list, []string{"/GO-1", "/GO-2"}, "B's advisories")

		aff, err := s.AffectedPackages(ctx, tenA, []string{"Go/net", "npm/none"})
		noErr(t, err, "AffectedPackages")
		var affIDs []string
		for _, a := range aff {
			affIDs = append(affIDs, a.TenantID+"/"+a.AdvisoryID)
		}
		wantIDs(t, affIDs, []string{"/GO-1", tenA + "/GO-2", tenA + "/VENDOR-1"}, "affected entries A sees")
		aff, err = s.AffectedPackages(ctx, tenB, []string{"Go/net"})
		noErr(t, err, "AffectedPackages B")
		wantEqual(t, len(aff), 2, "affected entries B sees")
		aff, err = s.AdvisoryAffected(ctx, tenB, []string{"VENDOR-1", "GO-1"})
		noErr(t, err, "AdvisoryAffected B")
		wantEqual(t, len(aff), 1, "B gets GO-1 but not A's VENDOR-1")
	})

	t.Run("mud and flows", func(t *testing.T) {
		p := &model.MUDProfile{TenantID: tenA, ProductID: pa.ID, MUDURL: "https://a.example/m", LastUpdate: ptr(base),
			Flows:    []model.AllowedFlow{{Direction: "from-device", Protocol: "tcp", RemoteHost: "x.example", RemotePorts: [2]int{443, 443}}},
			Document: json.RawMessage(`{"ietf-mud:mud":{}}`), SHA256: "00", ImportedAt: base, ImportedBy: "test"}
		mustUpdate(t, s, func(tx store.Tx) error { return tx.PutMUDProfile(ctx, p) })
		bad := *p
		bad.TenantID = tenB
		wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.PutMUDProfile(ctx, &bad) }), store.ErrNotFound,
			"PutMUDProfile on another tenant's product")
		got, err := s.GetMUDProfile(ctx, tenA, pa.ID)
		noErr(t, err, "GetMUDProfile")
		wantEqual(t, got.Flows, p.Flows, "stored flows")
		_, err = s.GetMUDProfile(ctx, tenB, pa.ID)
		wantErr(t, err, store.ErrNotFound, "GetMUDProfile across tenants")
		dp, err := s.DeviceMUDProfile(ctx, tenA, da1.ID)
		noErr(t, err, "DeviceMUDProfile")
		wantEqual(t, dp.MUDURL, p.MUDURL, "device's profile")
		_, err = s.DeviceMUDProfile(ctx, tenB, da1.ID)
		wantErr(t, err, store.ErrNotFound, "DeviceMUDProfile across tenants")

		flow := func(key string, seen time.Duration, bytes int64) model.ObservedFlow {
			return model.ObservedFlow{Key: key, Direction: "from-device", Protocol: "tcp", RemoteHost: key + ".example",
				RemotePort: 443, FirstSeen: at(seen), LastSeen: at(seen), Reports: 1, Bytes: bytes, Verdict: "allowed"}
		}
		mustUpdate(t, s, func(tx store.Tx) error {
			return tx.PutObservedFlows(ctx, tenA, da1.ID, []model.ObservedFlow{flow("f1", 0, 10), flow("f2", time.Hour, 5)})
		})
		later := flow("f1", 2*time.Hour, 7)
		later.Verdict = "outside_profile"
		mustUpdate(t, s, func(tx store.Tx) error { return tx.PutObservedFlows(ctx, tenA, da1.ID, []model.ObservedFlow{later}) })
		wantErr(t, s.Update(ctx, func(tx store.Tx) error {
			return tx.PutObservedFlows(ctx, tenB, da1.ID, []model.ObservedFlow{flow("f9", 0, 1)})
		}), store.ErrNotFound, "PutObservedFlows across tenants")
		fs := walk(t, 1, func(f model.ObservedFlow) string { return f.Key }, func(c string) ([]model.ObservedFlow, string, error) {
			return s.ListObservedFlows(ctx, tenA, da1.ID, store.ListOptions{Limit: 1, Cursor: c})
		})
		wantIDs(t, fs, []string{"f1", "f2"}, "flows by key")
		all, _, err := s.ListObservedFlows(ctx, tenA, da1.ID, store.ListOptions{})
		noErr(t, err, "ListObservedFlows")
		f1 := all[0]
		if f1.Reports != 2 || f1.Bytes != 17 || !f1.FirstSeen.Equal(at(0)) || !f1.LastSeen.Equal(at(2*time.Hour)) || f1.Verdict != "outside_profile" {
			t.Fatalf("merged flow: %+v", f1)
		}
		_, _, err = s.ListObservedFlows(ctx, tenB, da1.ID, store.ListOptions{})
		wantErr(t, err, store.ErrNotFound, "ListObservedFlows across tenants")
		recent, err := s.RecentFlows(ctx, tenA, "", at(90*time.Minute))
		noErr(t, err, "RecentFlows")
		wantEqual(t, len(recent), 1, "flows seen since 90 minutes")
		recent, err = s.RecentFlows(ctx, tenB, "", at(0))
		noErr(t, err, "RecentFlows B")
		wantEqual(t, len(recent), 0, "B's recent flows")
		var pruned int64
		mustUpdate(t, s, func(tx store.Tx) error {
			var err error
			pruned, err = tx.PruneObservedFlows(ctx, tenA, at(90*time.Minute))
			return err
		})
		wantEqual(t, pruned, int64(1), "pruned flows")

		mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteMUDProfile(ctx, tenA, pa.ID) })
		wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.DeleteMUDProfile(ctx, tenA, pa.ID) }), store.ErrNotFound,
			"deleting a missing profile")
	})

	t.Run("findings", func(t *testing.T) {
		mk := func(tenant, id, check, resource, key string, sev model.Severity, seen time.Duration) model.Finding {
			return model.Finding{ID: id, TenantID: tenant, Check: check, ResourceType: "device", ResourceID: resource, Key: key,
				Severity: sev, Title: id, Evidence: json.RawMessage(`{"n":1}`), Status: model.FindingOpen, FirstSeen: at(seen), LastSeen: at(seen)}
		}
		fs := []model.Finding{
			mk(tenA, "fnd-1", "c1", "dev-a1", "", model.SeverityHigh, 0),
			mk(tenA, "fnd-2", "c1", "dev-a2", "", model.SeverityLow, time.Minute),
			mk(tenA, "fnd-3", "c2", "dev-a1", "k1", model.SeverityCritical, 2*time.Minute),
			mk(tenA, "fnd-4", "c2", "dev-a1", "k2", model.SeverityMedium, 3*time.Minute),
			mk(tenB, "fnd-5", "c1", "dev-b1", "", model.SeverityHigh, 0),
		}
		for i := range fs {
			mustUpdate(t, s, func(tx store.Tx) error { return tx.CreateFinding(ctx, &fs[i]) })
		}
		dup := mk(tenA, "fnd-9", "c1", "dev-a1", "", model.SeverityHigh, 0)
		err := s.Update(ctx, func(tx store.Tx) error { return tx.CreateFinding(ctx, &dup) })
		wantErr(t, err, store.ErrConflict, "a second finding of one check on one resource")

		got, err := s.GetFinding(ctx, tenA, "fnd-3")
		noErr(t, err, "GetFinding")
		wantEqual(t, *got, fs[2], "stored finding")
		_, err = s.GetFinding(ctx, tenB, "fnd-3")
		wantErr(t, err, store.ErrNotFound, "GetFinding across tenants")

		list := func(q model.FindingQuery, limit int) []string {
			return walk(t, limit, func(f model.Finding) string { return f.ID }, func(c string) ([]model.Finding, string, error) {
				return s.ListFindings(ctx, tenA, q, store.ListOptions{Limit: limit, Cursor: c})
			})
		}
		wantIDs(t, list(model.FindingQuery{}, 1), []string{"fnd-4", "fnd-3", "fnd-2", "fnd-1"}, "A's findings newest first")
		wantIDs(t, list(model.FindingQuery{Check: "c2"}, 0), []string{"fnd-4", "fnd-3"}, "findings of c2")
		wantIDs(t, list(model.FindingQuery{ResourceID: "dev-a2"}, 0), []string{"fnd-2"}, "findings of dev-a2")
		wantIDs(t, list(model.FindingQuery{MinSeverity: model.SeverityHigh}, 0), []string{"fnd-3", "fnd-1"}, "high and worse")

		// Resolve one, suppress another.
		f := fs[1]
		f.Status, f.ResolvedAt, f.LastSeen = model.FindingResolved, ptr(at(time.Hour)), at(time.Hour)
		mustUpdate(t, s, func(tx store.Tx) error { return tx.UpdateFinding(ctx, &f) })
		other := fs[4]
		other.TenantID = tenA
		wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.UpdateFinding(ctx, &other) }), store.ErrNotFound,
			"UpdateFinding across tenants")
		mustUpdate(t, s, func(tx store.Tx) error {
			return tx.SetFindingSuppression(ctx, tenA, "fnd-4", ptr(at(48*time.Hour)), "accepted risk", "key:k")
		})
		wantErr(t, s.Update(ctx, func(tx store.Tx) error {
			return tx.SetFindingSuppression(ctx, tenB, "fnd-4", ptr(at(48*time.Hour)), "x", "key:k")
		}), store.ErrNotFound, "SetFindingSuppression across tenants")
		now := at(24 * time.Hour)
		wantIDs(t, list(model.FindingQuery{Status: model.FindingOpen, Suppressed: ptr(false), Now: now}, 0), []string{"fnd-3", "fnd-1"},
			"open, not suppressed")
		wantIDs(t, list(model.FindingQuery{Suppressed: ptr(true), Now: now}, 0), []string{"fnd-4"}, "suppressed")
		wantIDs(t, list(model.FindingQuery{Suppressed: ptr(false), Now: at(72 * time.Hour)}, 0), []string{"fnd-4", "fnd-3", "fnd-2", "fnd-1"},
			"after the suppression expired")
		wantIDs(t, list(model.FindingQuery{Status: model.FindingResolved}, 0), []string{"fnd-2"}, "resolved")
		got, _ = s.GetFinding(ctx, tenA, "fnd-4")
		if got.SuppressedReason != "accepted risk" || got.SuppressedBy != "key:k" || !got.Suppressed(now) {
			t.Fatalf("suppression not kept: %+v", got)
		}
		mustUpdate(t, s, func(tx store.Tx) error { return tx.SetFindingSuppression(ctx, tenA, "fnd-4", nil, "", "") })
		got, _ = s.GetFinding(ctx, tenA, "fnd-4")
		if got.SuppressedUntil != nil || got.SuppressedReason != "" {
			t.Fatalf("suppression not lifted: %+v", got)
		}

		cf, err := s.CheckFindings(ctx, tenA, "c2", nil)
		noErr(t, err, "CheckFindings")
		wantEqual(t, len(cf), 2, "findings of c2")
		cf, err = s.CheckFindings(ctx, tenA, "c1", []string{"dev-a2", "dev-b1"})
		noErr(t, err, "CheckFindings scoped")
		wantEqual(t, len(cf), 1, "c1 on dev-a2 (dev-b1 is B's)")
		cf, err = s.CheckFindings(ctx, tenB, "c2", nil)
		noErr(t, err, "CheckFindings B")
		wantEqual(t, len(cf), 0, "B's c2 findings")
		for _, c := range garbageCursors {
			_, _, err := s.ListFindings(ctx, tenA, model.FindingQuery{}, store.ListOptions{Cursor: c})
			wantErr(t, err, store.ErrBadCursor, "ListFindings with "+c)
		}
	})

	t.Run("settings, certificates, tenants", func(t *testing.T) {
		st, err := s.GetSecuritySettings(ctx, tenA)
		noErr(t, err, "GetSecuritySettings")
		wantEqual(t, st, model.DefaultSecuritySettings(), "defaults")
		set := model.SecuritySettings{StaleAfterDays: 3, MaxTenantAdminKeys: 5, UnusedKeyDays: 30, FlowWindowHours: 12,
			UpdatedAt: ptr(base), UpdatedBy: "key:k"}
		mustUpdate(t, s, func(tx store.Tx) error { return tx.PutSecuritySettings(ctx, tenA, set) })
		set.StaleAfterDays = 4
		mustUpdate(t, s, func(tx store.Tx) error { return tx.PutSecuritySettings(ctx, tenA, set) })
		st, _ = s.GetSecuritySettings(ctx, tenA)
		wantEqual(t, st, set, "stored settings")
		st, _ = s.GetSecuritySettings(ctx, tenB)
		wantEqual(t, st, model.DefaultSecuritySettings(), "B keeps the defaults")

		cert := func(serial, device, key, alg string, notAfter time.Duration) model.Certificate {
			tenant := tenA
			if device == db1.ID {
				tenant = tenB
			}
			return model.Certificate{Serial: serial, TenantID: tenant, DeviceID: device, Subject: "CN=" + device,
				Fingerprint: "fp-" + serial, KeyFingerprint: key, KeyAlgorithm: alg, Method: model.EnrollBootstrapToken,
				NotBefore: base, NotAfter: at(notAfter), IssuedAt: base, DER: []byte("der")}
		}
		certs := []model.Certificate{
			cert("c1", da1.ID, "k1", "ECDSA-P256", 24*time.Hour),
			cert("c2", "dev-a2", "k1", "RSA-1024", 48*time.Hour),
			cert("c3", "dev-a3", "k3", "ECDSA-P256", 24*time.Hour),
			cert("c4", db1.ID, "k1", "ECDSA-P256", 24*time.Hour),
		}
		for i := range certs {
			mustUpdate(t, s, func(tx store.Tx) error { return tx.CreateCertificate(ctx, &certs[i]) })
		}
		mustUpdate(t, s, func(tx store.Tx) error {
			return tx.RevokeCertificate(ctx, tenA, "c3", base, model.ReasonSuperseded, "test")
		})
		var serials []string
		after := ""
		for {
			cs, err := s.ActiveCertificates(ctx, tenA, after, 1)
			noErr(t, err, "ActiveCertificates")
			if len(cs) == 0 {
				break
			}
			serials = append(serials, cs[0].Serial)
			after = cs[0].Serial
		}
		wantIDs(t, serials, []string{"c1", "c2"}, "A's active certificates (c3 revoked, c4 is B's)")

		ids, err := s.TenantIDs(ctx)
		noErr(t, err, "TenantIDs")
		if !slices.Contains(ids, tenA) || !slices.Contains(ids, tenB) {
			t.Fatalf("TenantIDs: %v", ids)
		}
	})
}
