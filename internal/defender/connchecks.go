package defender

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// Check IDs of the CA and connection checks.
const (
	CheckCAExpiring            = "ca.expiring"
	CheckRevokedCertConnecting = "certificate.revoked_connecting"
	CheckConflictingClientIDs  = "connection.conflicting_client_ids"
	CheckTokenAuthInUse        = "device.token_auth_in_use"
)

// CAExpiringSoon is how far ahead the CA check looks; within
// CAExpiringUrgent the finding is high, past the end critical.
const (
	CAExpiringSoon   = 90 * 24 * time.Hour
	CAExpiringUrgent = 30 * 24 * time.Hour
)

// ConnWindow is how far back the connection checks look; a finding
// resolves once its cause was not seen for that long.
const ConnWindow = 24 * time.Hour

// TakeoverThreshold is how many session takeovers of one device within
// ConnWindow make a finding: one is a reconnect racing its old session,
// several are two clients fighting over one identity.
const TakeoverThreshold = 3

// ConnectionChecks returns the CA and connection checks. platformCA
// returns the platform's CA chain (issuing CA first); nil leaves the
// platform's own CA out.
func ConnectionChecks(platformCA func() []*x509.Certificate) []Check {
	return []Check{caExpiring{chain: platformCA}, revokedConnecting{}, conflictingClientIDs{}, tokenAuthInUse{}}
}

// ---- CAs ----

type caExpiring struct{ chain func() []*x509.Certificate }

func (caExpiring) Info() CheckInfo {
	return CheckInfo{ID: CheckCAExpiring, Title: "CA certificate expiring within 90 days", Severity: model.SeverityMedium,
		ResourceType: "ca", Scope: ScopeBoth,
		Description: "On the platform: the issuing CA or its trust anchor expires within 90 days; in a tenant: an imported " +
			"manufacturer CA does. High within 30 days, critical once expired: devices can no longer enroll (or connect) " +
			"with certificates under it. Renew or replace the CA and roll the new one out before then."}
}

func caSeverity(left time.Duration) model.Severity {
	switch {
	case left <= 0:
		return model.SeverityCritical
	case left <= CAExpiringUrgent:
		return model.SeverityHigh
	}
	return model.SeverityMedium
}

func (c caExpiring) Run(ctx context.Context, env *Env) ([]Result, error) {
	var out []Result
	add := func(id, role, subject string, notAfter time.Time, ev map[string]any) {
		left := notAfter.Sub(env.Now)
		if left > CAExpiringSoon {
			return
		}
		ev["subject"], ev["not_after"], ev["role"], ev["days_left"] = subject, notAfter, role, int(left.Hours()/24)
		title := fmt.Sprintf("%s %q expires on %s (in %d days)", role, subject, notAfter.Format("2006-01-02"), int(left.Hours()/24))
		if left <= 0 {
			title = fmt.Sprintf("%s %q expired on %s", role, subject, notAfter.Format("2006-01-02"))
		}
		out = append(out, Result{ResourceID: id, Severity: caSeverity(left), Title: title, Evidence: ev})
	}
	if env.TenantID == "" {
		if c.chain == nil {
			return nil, nil
		}
		chain := c.chain()
		for i, cert := range chain {
			role := "Intermediate CA"
			switch {
			case i == 0:
				role = "Issuing CA"
			case i == len(chain)-1:
				role = "Trust anchor"
			}
			sum := sha256.Sum256(cert.Raw)
			fp := hex.EncodeToString(sum[:])
			add(fp, role, cert.Subject.String(), cert.NotAfter.UTC(), map[string]any{"fingerprint_sha256": fp})
		}
		return out, nil
	}
	cursor := ""
	for {
		ps, next, err := env.Store.ListProducts(ctx, env.TenantID, store.ListOptions{Limit: 1000, Cursor: cursor})
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			cas, err := env.Store.ListManufacturerCAs(ctx, env.TenantID, p.ID)
			if err != nil {
				return nil, err
			}
			for _, ca := range cas {
				add(ca.ID, "Manufacturer CA", ca.Subject, ca.NotAfter, map[string]any{"fingerprint_sha256": ca.Fingerprint,
					"name": ca.Name, "product_id": p.ID})
			}
		}
		if next == "" {
			return out, nil
		}
		cursor = next
	}
}

// ---- connections ----

// byDeviceKey sums a tenant's observations of one kind within the window
// per device and key, keeping the newest detail.
type obsSum struct {
	device, key string
	count       int64
	first, last time.Time
	detail      json.RawMessage
}

func sumObservations(ctx context.Context, env *Env, kind string) ([]obsSum, error) {
	obs, err := env.Store.ConnectionObservations(ctx, env.TenantID, kind, env.Now.Add(-ConnWindow))
	if err != nil {
		return nil, err
	}
	var out []obsSum
	for _, o := range obs { // ordered by device, key, hour
		if !env.InScope(o.DeviceID) {
			continue
		}
		if n := len(out); n > 0 && out[n-1].device == o.DeviceID && out[n-1].key == o.Key {
			s := &out[n-1]
			s.count += o.Count
			s.first = minTime(s.first, o.FirstSeen)
			if o.LastSeen.After(s.last) {
				s.last, s.detail = o.LastSeen, o.Detail
			}
			continue
		}
		out = append(out, obsSum{device: o.DeviceID, key: o.Key, count: o.Count, first: o.FirstSeen, last: o.LastSeen, detail: o.Detail})
	}
	return out, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func obsEvidence(s obsSum) map[string]any {
	ev := map[string]any{"count": s.count, "first_seen": s.first, "last_seen": s.last, "window_hours": int(ConnWindow.Hours())}
	if len(s.detail) > 0 && json.Valid(s.detail) {
		ev["last_attempt"] = s.detail
	}
	return ev
}

type revokedConnecting struct{}

func (revokedConnecting) Info() CheckInfo {
	return CheckInfo{ID: CheckRevokedCertConnecting, Title: "Revoked certificate still trying to connect", Severity: model.SeverityHigh,
		ResourceType: "device", Scope: ScopeTenant,
		Description: "The broker refused a connection with a certificate the platform revoked, within the last 24 hours. " +
			"Either the device was not re-enrolled after the revocation, or someone holds a copy of its old key. It " +
			"resolves 24 hours after the last attempt."}
}

func (revokedConnecting) Run(ctx context.Context, env *Env) ([]Result, error) {
	sums, err := sumObservations(ctx, env, model.ObsRevokedCert)
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, s := range sums {
		ev := obsEvidence(s)
		ev["serial"] = s.key
		out = append(out, Result{ResourceID: s.device, Key: s.key, Evidence: ev,
			Title: fmt.Sprintf("Revoked certificate %s of device %s tried to connect %d time(s), last at %s", s.key, s.device,
				s.count, s.last.Format(time.RFC3339))})
	}
	return out, nil
}

type conflictingClientIDs struct{}

func (conflictingClientIDs) Info() CheckInfo {
	return CheckInfo{ID: CheckConflictingClientIDs, Title: "Conflicting MQTT client IDs", Severity: model.SeverityMedium,
		ResourceType: "device", Scope: ScopeTenant,
		Description: "Within the last 24 hours a device's credential was used with a client ID that is not its device ID " +
			"(refused), or two connections kept taking the device's session over from each other (3 times or more): " +
			"a cloned device or a copied credential. High when both happen."}
}

func (conflictingClientIDs) Run(ctx context.Context, env *Env) ([]Result, error) {
	mismatches, err := sumObservations(ctx, env, model.ObsClientIDMismatch)
	if err != nil {
		return nil, err
	}
	takeovers, err := sumObservations(ctx, env, model.ObsTakeover)
	if err != nil {
		return nil, err
	}
	type devInfo struct {
		clientIDs []string
		refused   int64
		takeovers int64
		last      time.Time
		detail    json.RawMessage
	}
	byDev := map[string]*devInfo{}
	get := func(id string) *devInfo {
		if byDev[id] == nil {
			byDev[id] = &devInfo{}
		}
		return byDev[id]
	}
	for _, s := range mismatches {
		d := get(s.device)
		d.clientIDs = append(d.clientIDs, s.key)
		d.refused += s.count
		if s.last.After(d.last) {
			d.last = s.last
		}
	}
	for _, s := range takeovers {
		d := get(s.device)
		d.takeovers += s.count
		d.detail = s.detail
		if s.last.After(d.last) {
			d.last = s.last
		}
	}
	ids := make([]string, 0, len(byDev))
	for id := range byDev {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []Result
	for _, id := range ids {
		d := byDev[id]
		takeover := d.takeovers >= TakeoverThreshold
		if d.refused == 0 && !takeover {
			continue
		}
		sev := model.SeverityMedium
		if d.refused > 0 && takeover {
			sev = model.SeverityHigh
		}
		ev := map[string]any{"foreign_client_ids": d.clientIDs, "refused_connections": d.refused, "takeovers": d.takeovers,
			"last_seen": d.last, "window_hours": int(ConnWindow.Hours())}
		if len(d.detail) > 0 && json.Valid(d.detail) {
			ev["last_takeover"] = d.detail
		}
		var title string
		switch {
		case d.refused > 0 && takeover:
			title = fmt.Sprintf("Device %s: its credential was used with %d foreign client ID(s) and its session was taken over %d times",
				id, len(d.clientIDs), d.takeovers)
		case d.refused > 0:
			title = fmt.Sprintf("Device %s: its credential was used with client ID(s) %q that are not its device ID", id, d.clientIDs)
		default:
			title = fmt.Sprintf("Device %s: its session was taken over %d times in 24 hours (two clients with one identity?)", id, d.takeovers)
		}
		out = append(out, Result{ResourceID: id, Severity: sev, Title: title, Evidence: ev})
	}
	return out, nil
}

type tokenAuthInUse struct{}

func (tokenAuthInUse) Info() CheckInfo {
	return CheckInfo{ID: CheckTokenAuthInUse, Title: "Device using token auth where certificates are possible", Severity: model.SeverityLow,
		ResourceType: "device", Scope: ScopeTenant,
		Description: "The device logged in with its device token (a shared secret) within the last 24 hours and still holds " +
			"it. Medium when the device has or had a certificate (it can do mTLS, so the token is a downgrade path); " +
			"low otherwise. Enroll it with a certificate and revoke the token; suppress with a reason for constrained devices."}
}

func (tokenAuthInUse) Run(ctx context.Context, env *Env) ([]Result, error) {
	sums, err := sumObservations(ctx, env, model.ObsTokenAuth)
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, s := range sums {
		t, err := env.Store.DeviceToken(ctx, s.device)
		if err != nil || t.TenantID != env.TenantID || t.RevokedAt != nil {
			continue // the token is gone: nothing to fix
		}
		d, err := env.Store.GetDevice(ctx, env.TenantID, s.device)
		if err != nil || d.State == model.StateDecommissioned {
			continue
		}
		certs, _, err := env.Store.ListCertificates(ctx, env.TenantID, s.device, store.ListOptions{Limit: 1})
		if err != nil {
			return nil, err
		}
		sev, why := model.SeverityLow, "no certificate on record"
		if len(certs) > 0 {
			sev, why = model.SeverityMedium, "it has or had a certificate"
		}
		ev := obsEvidence(s)
		ev["serial"], ev["has_certificate"] = d.Serial, len(certs) > 0
		out = append(out, Result{ResourceID: s.device, Severity: sev, Evidence: ev,
			Title: fmt.Sprintf("%s logged in with its device token %d time(s) (%s)", deviceName(*d), s.count, why)})
	}
	return out, nil
}
