package defender_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/defender"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/netpolicy"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/store/sqlstore"
	"github.com/steward-iot/steward/internal/vuln"
)

const tenant = "ten-a"

// env is a fresh SQLite store with one tenant, one product and one active
// device, an engine with the standard checks, and a clock under control.
type env struct {
	t      *testing.T
	ctx    context.Context
	st     *sqlstore.DB
	eng    *defender.Engine
	vulns  *vuln.Service
	now    time.Time
	prod   model.Product
	device model.Device
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, "sqlite:"+t.TempDir()+"/steward.db", sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, ctx: ctx, st: st, now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	e.vulns = vuln.New(st)
	e.vulns.SetClock(func() time.Time { return e.now })
	e.eng = defender.NewEngine(st, nil)
	e.eng.Register(defender.Standard(e.vulns)...)
	e.eng.SetClock(func() time.Time { return e.now })
	e.prod = model.Product{ID: "prd-1", TenantID: tenant, Vendor: "Acme", Model: "T1", CreatedAt: e.now, UpdatedAt: e.now}
	e.device = model.Device{ID: "dev-1", TenantID: tenant, ProductID: e.prod.ID, Serial: "SN-1", State: model.StateActive,
		FirmwareVersion: "1.0", CreatedAt: e.now, UpdatedAt: e.now, Version: 1}
	e.update(func(tx store.Tx) error {
		if err := tx.CreateTenant(ctx, &model.Tenant{ID: tenant, Name: "A", Kind: model.TenantEnterprise, CreatedAt: e.now}); err != nil {
			return err
		}
		if err := tx.CreateProduct(ctx, &e.prod); err != nil {
			return err
		}
		return tx.CreateDevice(ctx, &e.device)
	})
	e.st.TouchDevice(ctx, tenant, e.device.ID, e.now)
	return e
}

func (e *env) update(fn func(tx store.Tx) error) {
	e.t.Helper()
	if err := e.st.Update(e.ctx, fn); err != nil {
		e.t.Fatal(err)
	}
}

// run runs one check in a scope and returns its findings by resource/key.
func (e *env) run(scope, check string) map[string]model.Finding {
	e.t.Helper()
	rep, err := e.eng.Run(e.ctx, "key:test", scope, []string{check})
	if err != nil {
		e.t.Fatal(err)
	}
	if rep.Checks[0].Error != "" {
		e.t.Fatalf("%s: %s", check, rep.Checks[0].Error)
	}
	fs, err := e.st.CheckFindings(e.ctx, scope, check, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]model.Finding{}
	for _, f := range fs {
		out[f.ResourceID+"/"+f.Key] = f
	}
	return out
}

func (e *env) setEndOfSupport(at time.Time) {
	e.prod.EndOfSupport = &at
	e.update(func(tx store.Tx) error { return tx.UpdateProduct(e.ctx, &e.prod) })
}

func (e *env) addCert(serial, device, key, alg string, notAfter time.Time) {
	e.update(func(tx store.Tx) error {
		return tx.CreateCertificate(e.ctx, &model.Certificate{Serial: serial, TenantID: tenant, DeviceID: device, Subject: "CN=" + device,
			Fingerprint: "fp-" + serial, KeyFingerprint: key, KeyAlgorithm: alg, Method: model.EnrollBootstrapToken,
			NotBefore: e.now.Add(-time.Hour), NotAfter: notAfter, IssuedAt: e.now, DER: []byte("der")})
	})
}

func (e *env) addDevice(id string, state model.State) {
	d := model.Device{ID: id, TenantID: tenant, ProductID: e.prod.ID, Serial: "SN-" + id, State: state, CreatedAt: e.now,
		UpdatedAt: e.now, Version: 1}
	e.update(func(tx store.Tx) error { return tx.CreateDevice(e.ctx, &d) })
	e.st.TouchDevice(e.ctx, tenant, id, e.now)
}

func (e *env) addKey(tenantID string, role model.Role, created time.Time, expires *time.Time) *model.APIKey {
	_, k := authz.NewKey(tenantID, string(role)+" key", role, "test", expires)
	k.CreatedAt = created
	e.update(func(tx store.Tx) error { return tx.CreateAPIKey(e.ctx, k) })
	return k
}

// TestChecksFireAndClear makes every check fire, then removes the cause
// and sees the finding resolve.
func TestChecksFireAndClear(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		check    string
		scope    string              // tenant or "" (platform)
		fire     func(e *env) string // returns the resource/key expected
		clear    func(e *env)
		severity model.Severity
	}{
		{defender.CheckEndOfSupport, tenant,
			func(e *env) string { e.setEndOfSupport(e.now.Add(-day)); return "dev-1/" },
			func(e *env) { e.setEndOfSupport(e.now.Add(365 * day)) }, model.SeverityHigh},
		{defender.CheckEndOfSupportSoon, tenant,
			func(e *env) string { e.setEndOfSupport(e.now.Add(30 * day)); return "dev-1/" },
			func(e *env) { e.setEndOfSupport(e.now.Add(120 * day)) }, model.SeverityMedium},
		{defender.CheckStale, tenant,
			func(e *env) string { e.now = e.now.Add(8 * day); return "dev-1/" },
			func(e *env) { e.st.TouchDevice(e.ctx, tenant, "dev-1", e.now) }, model.SeverityMedium},
		{defender.CheckVulnerable, tenant,
			func(e *env) string {
				sbom, _ := os.ReadFile("../vuln/testdata/handwritten/thermostat-fw-1.0.cdx.json")
				if _, err := e.vulns.ImportSBOM(e.ctx, "test", tenant, e.prod.ID, "1.0", sbom); err != nil {
					t.Fatal(err)
				}
				rec, _ := os.ReadFile("../vuln/testdata/osv/GO-2021-0053.json")
				ps, err := vuln.ParseAdvisories(rec)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := e.vulns.ImportAdvisories(e.ctx, "test", "", ps); err != nil {
					t.Fatal(err)
				}
				return "dev-1/"
			},
			func(e *env) {
				if err := e.vulns.DeleteSBOM(e.ctx, "test", tenant, e.prod.ID, "1.0"); err != nil {
					t.Fatal(err)
				}
			}, model.SeverityMedium},
		{defender.CheckPlatformAdminKey, "",
			func(e *env) string { return e.addKey("", model.RolePlatformAdmin, e.now, nil).ID + "/" },
			func(e *env) {
				ks, _, _ := e.st.ListAPIKeys(e.ctx, "", store.ListOptions{})
				e.update(func(tx store.Tx) error { return tx.RevokeAPIKey(e.ctx, "", ks[0].ID, e.now) })
			}, model.SeverityMedium},
		{defender.CheckUnusedKey, tenant,
			func(e *env) string { return e.addKey(tenant, model.RoleOperator, e.now.Add(-100*day), nil).ID + "/" },
			func(e *env) {
				ks, _, _ := e.st.ListAPIKeys(e.ctx, tenant, store.ListOptions{})
				e.st.TouchAPIKey(e.ctx, ks[0].ID, e.now)
			}, model.SeverityMedium},
		{defender.CheckTooManyAdmins, tenant,
			func(e *env) string {
				for range 4 {
					e.addKey(tenant, model.RoleTenantAdmin, e.now, nil)
				}
				return tenant + "/"
			},
			func(e *env) {
				s := model.DefaultSecuritySettings()
				s.MaxTenantAdminKeys = 4
				if _, err := e.eng.SetSettings(e.ctx, "test", tenant, s); err != nil {
					t.Fatal(err)
				}
			}, model.SeverityLow},
		{defender.CheckAuditChain, tenant,
			func(e *env) string {
				w, _ := e.st.DBs()
				if _, err := w.Exec(`UPDATE audit_log SET actor = actor || ' (forged)' WHERE tenant_id = ? AND seq = 1`, tenant); err != nil {
					t.Fatal(err)
				}
				return tenant + "/"
			},
			func(e *env) {
				w, _ := e.st.DBs()
				if _, err := w.Exec(`UPDATE audit_log SET actor = replace(actor, ' (forged)', '') WHERE tenant_id = ? AND seq = 1`, tenant); err != nil {
					t.Fatal(err)
				}
			}, model.SeverityCritical},
		{defender.CheckCertExpiring, tenant,
			func(e *env) string {
				e.addCert("0a", "dev-1", "k1", "ECDSA-P256", e.now.Add(10*day))
				return "dev-1/0a"
			},
			func(e *env) {
				e.addCert("0b", "dev-1", "k2", "ECDSA-P256", e.now.Add(90*day))
				e.update(func(tx store.Tx) error { return tx.SetCertificateSuccessor(e.ctx, tenant, "0a", "0b") })
			}, model.SeverityMedium},
		{defender.CheckWeakKey, tenant,
			func(e *env) string { e.addCert("0a", "dev-1", "k1", "RSA-1024", e.now.Add(90*day)); return "dev-1/0a" },
			func(e *env) {
				e.update(func(tx store.Tx) error {
					return tx.RevokeCertificate(e.ctx, tenant, "0a", e.now, model.ReasonSuperseded, "test")
				})
			}, model.SeverityHigh},
		{defender.CheckSharedKey, tenant,
			func(e *env) string {
				e.addDevice("dev-2", model.StateActive)
				e.addCert("0a", "dev-1", "shared", "ECDSA-P256", e.now.Add(90*day))
				e.addCert("0b", "dev-2", "shared", "ECDSA-P256", e.now.Add(90*day))
				return "dev-1/shared"
			},
			func(e *env) {
				e.update(func(tx store.Tx) error {
					return tx.RevokeCertificate(e.ctx, tenant, "0b", e.now, model.ReasonKeyCompromise, "test")
				})
			}, model.SeverityHigh},
		{defender.CheckFlowOutside, tenant,
			func(e *env) string {
				mud, _ := os.ReadFile("../netpolicy/testdata/lightbulb.mud.json")
				np := netpolicy.New(e.st)
				np.SetClock(func() time.Time { return e.now })
				if _, err := np.ImportMUD(e.ctx, "test", tenant, e.prod.ID, mud); err != nil {
					t.Fatal(err)
				}
				res, err := np.ReportFlows(e.ctx, "test", tenant, "dev-1", []model.ObservedFlow{{Direction: "from-device",
					Protocol: "tcp", RemoteHost: "exfil.example.net", RemotePort: 4444}})
				if err != nil || res.Outside != 1 {
					t.Fatalf("report: %+v %v", res, err)
				}
				return "dev-1/" + res.Flows[0].Key
			},
			func(e *env) { e.now = e.now.Add(25 * time.Hour) }, model.SeverityHigh},
	}
	for _, tc := range tests {
		t.Run(tc.check, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if got := e.run(tc.scope, tc.check); len(got) != 0 {
				t.Fatalf("fires before its cause: %+v", got)
			}
			key := tc.fire(e)
			got := e.run(tc.scope, tc.check)
			f, ok := got[key]
			if !ok || len(got) != map[bool]int{true: 2, false: 1}[tc.check == defender.CheckSharedKey] {
				t.Fatalf("want a finding on %s, got %+v", key, got)
			}
			if f.Status != model.FindingOpen || f.Severity != tc.severity || f.Title == "" || !json.Valid(f.Evidence) ||
				f.FirstSeen.IsZero() || f.LastSeen.IsZero() {
				t.Fatalf("finding: %+v", f)
			}
			tc.clear(e)
			got = e.run(tc.scope, tc.check)
			if f := got[key]; f.Status != model.FindingResolved || f.ResolvedAt == nil {
				t.Fatalf("after the cause went: %+v", got)
			}
		})
	}
}

// TestLifecycle: last seen moves, a finding reopens when its cause
// returns, a suppression survives that, decommissioned devices do not
// count, and only changes are audited.
func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	e.setEndOfSupport(e.now.Add(-time.Hour))
	first := e.run(tenant, defender.CheckEndOfSupport)["dev-1/"]
	heads := func() int64 {
		h, err := e.st.GetAuditHead(e.ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		return h.Seq
	}
	// A scheduled run that finds the same: last seen moves, nothing audited.
	e.now = e.now.Add(time.Hour)
	before := heads()
	if _, err := e.eng.Run(e.ctx, defender.SystemActor, tenant, []string{defender.CheckEndOfSupport}); err != nil {
		t.Fatal(err)
	}
	if heads() != before {
		t.Fatalf("an unchanged scheduled run wrote %d audit records", heads()-before)
	}
	again, _ := e.st.GetFinding(e.ctx, tenant, first.ID)
	if !again.LastSeen.Equal(e.now) || !again.FirstSeen.Equal(first.FirstSeen) {
		t.Fatalf("first/last seen: %+v", again)
	}
	// Suppress, clear, return: the same finding reopens, still suppressed.
	if _, err := e.eng.Suppress(e.ctx, "key:test", tenant, first.ID, e.now.Add(48*time.Hour), "replacement ordered"); err != nil {
		t.Fatal(err)
	}
	e.setEndOfSupport(e.now.Add(365 * 24 * time.Hour))
	e.run(tenant, defender.CheckEndOfSupport)
	e.setEndOfSupport(e.now.Add(-time.Hour))
	f := e.run(tenant, defender.CheckEndOfSupport)["dev-1/"]
	if f.ID != first.ID || f.Status != model.FindingOpen || f.ResolvedAt != nil || !f.Suppressed(e.now) {
		t.Fatalf("reopened: %+v", f)
	}
	e.now = e.now.Add(72 * time.Hour)
	if f.Suppressed(e.now) {
		t.Fatal("the suppression did not expire")
	}
	// A decommissioned device is not a finding any more.
	d, _ := e.st.GetDevice(e.ctx, tenant, "dev-1")
	e.update(func(tx store.Tx) error {
		return tx.SetDeviceState(e.ctx, tenant, &model.Transition{DeviceID: d.ID, From: d.State, To: model.StateDecommissioned,
			Actor: "test", Reason: "test", At: e.now})
	})
	if f := e.run(tenant, defender.CheckEndOfSupport)["dev-1/"]; f.Status != model.FindingResolved {
		t.Fatalf("decommissioned device: %+v", f)
	}
	// A scheduled round runs the platform and every tenant.
	if err := e.eng.RunScheduled(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Run(e.ctx, "key:test", tenant, []string{defender.CheckPlatformAdminKey}); err == nil {
		t.Fatal("a platform check ran in a tenant")
	}
}

func TestStrongKey(t *testing.T) {
	for alg, want := range map[string]bool{"ECDSA-P256": true, "ECDSA-P384": true, "Ed25519": true, "RSA-2048": true,
		"RSA-4096": true, "RSA-1024": false, "ECDSA-P224": false, "DSA-1024": false, "": false, "RSA-x": false} {
		if defender.StrongKey(alg) != want {
			t.Errorf("%q: want strong=%v", alg, want)
		}
	}
}
