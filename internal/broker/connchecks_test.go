package broker_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/steward-iot/steward/internal/defender"
	"github.com/steward-iot/steward/internal/model"
)

// TestConnectionChecksFromRealConnections: a revoked certificate that
// connects, a credential used with a foreign client ID, a session taken
// over again and again, and a token login each end up as a finding of
// their audit check, through the broker's connection events.
func TestConnectionChecksFromRealConnections(t *testing.T) {
	e := newEnv(t)
	p := e.srv.Platform
	ctx := context.Background()
	findings := func(check string) map[string]model.Finding {
		t.Helper()
		if err := p.ConnWatch.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Defender.Run(ctx, "test", e.ten.ID, []string{check}); err != nil {
			t.Fatal(err)
		}
		fs, err := p.Store.CheckFindings(ctx, e.ten.ID, check, nil)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]model.Finding{}
		for _, f := range fs {
			if f.Status == model.FindingOpen {
				out[f.ResourceID+"/"+f.Key] = f
			}
		}
		return out
	}

	revoked := e.device(t)
	e.must(t, http.StatusOK, http.MethodPost, api+"/certificates/"+revoked.Serial+"/revoke", map[string]any{"reason": "key_compromise"})
	if _, _, err := connect5(t, dialTLS(t, e.cert, e.tls(&revoked.TLS)), revoked.DeviceID, "", ""); err == nil {
		t.Fatal("a revoked certificate connected")
	}
	eventually(t, "revoked certificate finding", func() bool {
		_, ok := findings(defender.CheckRevokedCertConnecting)[revoked.DeviceID+"/"+revoked.Serial]
		return ok
	})

	cloned := e.device(t)
	if _, _, err := connect5(t, dialTLS(t, e.cert, e.tls(&cloned.TLS)), "thermostat-1", "", ""); err == nil {
		t.Fatal("a foreign client ID connected")
	}
	eventually(t, "foreign client ID finding", func() bool {
		_, ok := findings(defender.CheckConflictingClientIDs)[cloned.DeviceID+"/"]
		return ok
	})

	twice := e.device(t)
	for range defender.TakeoverThreshold + 1 {
		e.deviceV5(t, twice) // each connection takes the session of the one before over
	}
	eventually(t, "takeover finding", func() bool {
		f, ok := findings(defender.CheckConflictingClientIDs)[twice.DeviceID+"/"]
		return ok && f.Severity == model.SeverityMedium
	})

	tokenDev := e.device(t)
	token := e.must(t, http.StatusCreated, http.MethodPost, api+"/devices/"+tokenDev.DeviceID+"/token", nil).Str("token")
	if _, ca, err := connect5(t, dialTLS(t, e.token, e.tls(nil)), tokenDev.DeviceID, tokenDev.DeviceID, token); err != nil {
		t.Fatalf("token login: %v %+v", err, ca)
	}
	eventually(t, "token auth finding", func() bool {
		f, ok := findings(defender.CheckTokenAuthInUse)[tokenDev.DeviceID+"/"]
		return ok && f.Severity == model.SeverityMedium // it also has a certificate
	})
}
