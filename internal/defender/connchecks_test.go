package defender_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/defender"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

func selfSigned(t *testing.T, cn string, notAfter time.Time) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: notAfter.Add(-365 * 24 * time.Hour), NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// connEvent is what the broker publishes at connect time.
func connEvent(typ string, at time.Time, data map[string]any) model.Event {
	raw, _ := json.Marshal(data)
	return model.Event{ID: "evt-test", TenantID: tenant, Type: typ, Subject: "dev-1", Time: at, Data: raw}
}

// TestConnectionChecksFireAndClear makes each CA and connection check
// fire, then removes the cause and sees the finding resolve.
func TestConnectionChecksFireAndClear(t *testing.T) {
	day := 24 * time.Hour
	type setup struct {
		*env
		watch *defender.ConnWatch
		chain atomic.Pointer[[]*x509.Certificate]
	}
	observe := func(s *setup, evs ...model.Event) {
		for _, ev := range evs {
			s.watch.Observe(ev)
		}
		if err := s.watch.Flush(s.ctx); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		check    string
		scope    string
		fire     func(s *setup) string
		clear    func(s *setup)
		severity model.Severity
	}{
		{"platform CA", defender.CheckCAExpiring, "",
			func(s *setup) string {
				c := selfSigned(t, "Steward issuing CA", s.now.Add(20*day))
				s.chain.Store(&[]*x509.Certificate{c})
				f := sha256hex(c.Raw)
				return f + "/"
			},
			func(s *setup) {
				s.chain.Store(&[]*x509.Certificate{selfSigned(t, "Steward issuing CA", s.now.Add(5*365*day))})
			},
			model.SeverityHigh},
		{"manufacturer CA", defender.CheckCAExpiring, tenant,
			func(s *setup) string {
				c := selfSigned(t, "Acme factory CA", s.now.Add(60*day))
				s.update(func(tx store.Tx) error {
					return tx.CreateManufacturerCA(s.ctx, &model.ManufacturerCA{ID: "mca-1", TenantID: tenant, ProductID: s.prod.ID,
						Name: "factory", Subject: c.Subject.String(), Fingerprint: sha256hex(c.Raw), NotBefore: c.NotBefore,
						NotAfter: c.NotAfter, CreatedAt: s.now, CreatedBy: "test", DER: c.Raw})
				})
				return "mca-1/"
			},
			func(s *setup) {
				s.update(func(tx store.Tx) error { return tx.DeleteManufacturerCA(s.ctx, tenant, s.prod.ID, "mca-1") })
			}, model.SeverityMedium},
		{"revoked certificate", defender.CheckRevokedCertConnecting, tenant,
			func(s *setup) string {
				observe(s, connEvent("device.auth_failed", s.now, map[string]any{"device_id": "dev-1", "client_id": "dev-1",
					"reason": "certificate revoked", "code": 0x87, "cert_serial": "0a1b", "remote": "192.0.2.7:5000"}))
				return "dev-1/0a1b"
			},
			func(s *setup) { s.now = s.now.Add(25 * time.Hour) }, model.SeverityHigh},
		{"foreign client ID", defender.CheckConflictingClientIDs, tenant,
			func(s *setup) string {
				observe(s, connEvent("device.auth_failed", s.now, map[string]any{"device_id": "dev-1", "client_id": "thermostat",
					"reason": "client identifier must be the device ID", "code": 0x85}))
				return "dev-1/"
			},
			func(s *setup) { s.now = s.now.Add(25 * time.Hour) }, model.SeverityMedium},
		{"session takeovers", defender.CheckConflictingClientIDs, tenant,
			func(s *setup) string {
				for i := range defender.TakeoverThreshold {
					observe(s, connEvent("device.connected", s.now.Add(time.Duration(i)*time.Minute), map[string]any{
						"device_id": "dev-1", "method": "certificate", "remote": "192.0.2.8:1", "took_over_from": "198.51.100.9:2"}))
				}
				return "dev-1/"
			},
			func(s *setup) { s.now = s.now.Add(25 * time.Hour) }, model.SeverityMedium},
		{"token login", defender.CheckTokenAuthInUse, tenant,
			func(s *setup) string {
				s.addCert("0c", "dev-1", "k1", "ECDSA-P256", s.now.Add(90*day))
				s.update(func(tx store.Tx) error {
					return tx.PutDeviceToken(s.ctx, &model.DeviceToken{DeviceID: "dev-1", TenantID: tenant, Prefix: "p",
						Hash: []byte("h"), CreatedAt: s.now, CreatedBy: "test"})
				})
				observe(s, connEvent("device.connected", s.now, map[string]any{"device_id": "dev-1", "method": "token"}))
				return "dev-1/"
			},
			func(s *setup) {
				s.update(func(tx store.Tx) error { return tx.RevokeDeviceToken(s.ctx, tenant, "dev-1", s.now) })
			}, model.SeverityMedium},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := &setup{env: newEnv(t)}
			s.watch = defender.NewConnWatch(s.st, nil)
			s.eng.Register(defender.ConnectionChecks(func() []*x509.Certificate {
				if c := s.chain.Load(); c != nil {
					return *c
				}
				return nil
			})...)
			if got := s.run(tc.scope, tc.check); len(got) != 0 {
				t.Fatalf("fires before its cause: %+v", got)
			}
			key := tc.fire(s)
			got := s.run(tc.scope, tc.check)
			f, ok := got[key]
			if !ok || len(got) != 1 {
				t.Fatalf("want one finding on %s, got %+v", key, got)
			}
			if f.Status != model.FindingOpen || f.Severity != tc.severity || f.Title == "" || !json.Valid(f.Evidence) {
				t.Fatalf("finding: %+v", f)
			}
			tc.clear(s)
			got = s.run(tc.scope, tc.check)
			if f := got[key]; f.Status != model.FindingResolved || f.ResolvedAt == nil {
				t.Fatalf("after the cause went: %+v", got)
			}
		})
	}
}

// TestConnWatchCounts: observations add up per device, kind, key and
// hour, across flushes; unrelated events are ignored.
func TestConnWatchCounts(t *testing.T) {
	e := newEnv(t)
	w := defender.NewConnWatch(e.st, nil)
	for i := range 5 {
		w.Observe(connEvent("device.connected", e.now.Add(time.Duration(i)*time.Second), map[string]any{"device_id": "dev-1", "method": "token"}))
		if i == 2 {
			if err := w.Flush(e.ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	w.Observe(connEvent("device.disconnected", e.now, map[string]any{"device_id": "dev-1"}))
	w.Observe(connEvent("device.connected", e.now, map[string]any{"device_id": "dev-1", "method": "certificate"}))
	if err := w.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	obs, err := e.st.ConnectionObservations(e.ctx, tenant, model.ObsTokenAuth, e.now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(obs) != 1 || obs[0].Count != 5 || !obs[0].FirstSeen.Equal(e.now) || !obs[0].LastSeen.Equal(e.now.Add(4*time.Second)) {
		t.Fatalf("observations: %+v", obs)
	}
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
