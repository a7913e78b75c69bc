package defender

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/auditlog"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/netpolicy"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/vuln"
)

// Check IDs.
const (
	CheckEndOfSupport     = "device.end_of_support"
	CheckEndOfSupportSoon = "device.end_of_support_soon"
	CheckStale            = "device.stale"
	CheckVulnerable       = "firmware.vulnerable"
	CheckPlatformAdminKey = "apikey.platform_admin"
	CheckUnusedKey        = "apikey.unused"
	CheckTooManyAdmins    = "apikey.too_many_admins"
	CheckAuditChain       = "audit.chain_broken"
	CheckCertExpiring     = "certificate.expiring"
	CheckWeakKey          = "certificate.weak_key"
	CheckSharedKey        = "certificate.shared_key"
	CheckFlowOutside      = "network.flow_outside_profile"
)

// EndOfSupportSoon is how far ahead the end-of-support warning looks.
const EndOfSupportSoon = 90 * 24 * time.Hour

// CertExpiringSoon is how far ahead the certificate check looks.
const CertExpiringSoon = 30 * 24 * time.Hour

// Standard returns the checks that run on what the platform holds today.
func Standard(v *vuln.Service) []Check {
	return []Check{endOfSupport{}, endOfSupportSoon{}, stale{}, vulnerable{v: v}, platformAdminKeys{}, unusedKeys{},
		tooManyAdmins{}, auditChain{}, certExpiring{}, weakKey{}, sharedKey{}, flowOutside{}}
}

type simple CheckInfo

func (s simple) Info() CheckInfo { return CheckInfo(s) }

// ---- devices ----

// eachDevice calls fn for every device of the tenant matching q (and in
// the run's scope), with its product (cached; a vendor's product too).
func eachDevice(ctx context.Context, env *Env, q model.DeviceQuery, fn func(d model.Device, p *model.Product) error) error {
	products := map[string]*model.Product{}
	cursor := ""
	for {
		ds, next, err := env.Store.QueryDevices(ctx, env.TenantID, q, model.Page{Limit: 1000, Cursor: cursor})
		if err != nil {
			return err
		}
		for _, d := range ds {
			if d.State == model.StateDecommissioned || !env.InScope(d.ID) {
				continue
			}
			p, ok := products[d.ProductID]
			if !ok {
				p, err = env.Store.DeviceProduct(ctx, env.TenantID, d.ID)
				if err != nil {
					return fmt.Errorf("product of device %s: %w", d.ID, err)
				}
				products[d.ProductID] = p
			}
			if err := fn(d, p); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}

func deviceName(d model.Device) string {
	if d.Name != "" {
		return d.Name + " (" + d.Serial + ")"
	}
	return d.Serial
}

func productEvidence(d model.Device, p *model.Product) map[string]any {
	return map[string]any{"serial": d.Serial, "state": d.State, "product_id": p.ID, "vendor": p.Vendor, "model": p.Model,
		"end_of_support": p.EndOfSupport, "firmware_version": d.FirmwareVersion}
}

type endOfSupport struct{}

func (endOfSupport) Info() CheckInfo {
	return CheckInfo{ID: CheckEndOfSupport, Title: "Device past its product's end of support", Severity: model.SeverityHigh,
		ResourceType: "device", Scope: ScopeTenant,
		Description: "The vendor no longer ships updates for the device's product: new vulnerabilities will not be fixed. Replace or retire it."}
}

func (endOfSupport) Run(ctx context.Context, env *Env) ([]Result, error) {
	var out []Result
	err := eachDevice(ctx, env, model.DeviceQuery{}, func(d model.Device, p *model.Product) error {
		if p.EndOfSupport != nil && !env.Now.Before(*p.EndOfSupport) {
			out = append(out, Result{ResourceID: d.ID, Evidence: productEvidence(d, p),
				Title: fmt.Sprintf("%s: %s %s reached end of support on %s", deviceName(d), p.Vendor, p.Model,
					p.EndOfSupport.Format("2006-01-02"))})
		}
		return nil
	})
	return out, err
}

type endOfSupportSoon struct{}

func (endOfSupportSoon) Info() CheckInfo {
	return CheckInfo{ID: CheckEndOfSupportSoon, Title: "Device's product reaches end of support within 90 days",
		Severity: model.SeverityMedium, ResourceType: "device", Scope: ScopeTenant,
		Description: "A warning: plan the replacement before updates stop."}
}

func (endOfSupportSoon) Run(ctx context.Context, env *Env) ([]Result, error) {
	var out []Result
	err := eachDevice(ctx, env, model.DeviceQuery{}, func(d model.Device, p *model.Product) error {
		if p.EndOfSupport != nil && env.Now.Before(*p.EndOfSupport) && p.EndOfSupport.Sub(env.Now) <= EndOfSupportSoon {
			days := int(p.EndOfSupport.Sub(env.Now).Hours() / 24)
			ev := productEvidence(d, p)
			ev["days_left"] = days
			out = append(out, Result{ResourceID: d.ID, Evidence: ev,
				Title: fmt.Sprintf("%s: %s %s reaches end of support on %s (in %d days)", deviceName(d), p.Vendor, p.Model,
					p.EndOfSupport.Format("2006-01-02"), days)})
		}
		return nil
	})
	return out, err
}

type stale struct{}

func (stale) Info() CheckInfo {
	return CheckInfo{ID: CheckStale, Title: "Device not seen for a while", Severity: model.SeverityMedium, ResourceType: "device",
		Scope: ScopeTenant,
		Description: "A provisioned, active or quarantined device has not connected for the tenant's stale_after_days (default 7), " +
			"or never did since it was registered that long ago: it may be offline, broken or stolen."}
}

// staleStates are the states in which a device is expected to connect.
var staleStates = []model.State{model.StateProvisioned, model.StateActive, model.StateQuarantined}

func (stale) Run(ctx context.Context, env *Env) ([]Result, error) {
	days := env.Settings.StaleAfterDays
	cutoff := env.Now.Add(-time.Duration(days) * 24 * time.Hour)
	var out []Result
	add := func(d model.Device, since time.Time, never bool) {
		ev := map[string]any{"serial": d.Serial, "state": d.State, "last_seen": d.LastSeen, "stale_after_days": days,
			"days": int(env.Now.Sub(since).Hours() / 24)}
		title := fmt.Sprintf("%s not seen for %d days", deviceName(d), int(env.Now.Sub(since).Hours()/24))
		if never {
			title = fmt.Sprintf("%s never connected since it was registered %d days ago", deviceName(d), int(env.Now.Sub(since).Hours()/24))
		}
		out = append(out, Result{ResourceID: d.ID, Title: title, Evidence: ev})
	}
	err := eachDevice(ctx, env, model.DeviceQuery{States: staleStates, SeenBefore: &cutoff}, func(d model.Device, _ *model.Product) error {
		if d.LastSeen != nil && d.LastSeen.Before(cutoff) {
			add(d, *d.LastSeen, false)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = eachDevice(ctx, env, model.DeviceQuery{States: staleStates, NeverSeen: true}, func(d model.Device, _ *model.Product) error {
		if d.LastSeen == nil && d.CreatedAt.Before(cutoff) {
			add(d, d.CreatedAt, true)
		}
		return nil
	})
	return out, err
}

// ---- vulnerabilities ----

type vulnerable struct{ v *vuln.Service }

func (vulnerable) Info() CheckInfo {
	return CheckInfo{ID: CheckVulnerable, Title: "Firmware with known vulnerabilities", Severity: model.SeverityMedium,
		ResourceType: "device", Scope: ScopeTenant,
		Description: "The SBOM of the firmware the device runs lists components that imported advisories affect. " +
			"Severity is that of the worst advisory (medium when unknown)."}
}

func (c vulnerable) Run(ctx context.Context, env *Env) ([]Result, error) {
	if c.v == nil {
		return nil, nil
	}
	hits, err := c.v.FirmwareHits(ctx, env.TenantID)
	if err != nil {
		return nil, err
	}
	var fws []model.FirmwareRef
	for fw := range hits {
		fws = append(fws, fw)
	}
	slices.SortFunc(fws, func(a, b model.FirmwareRef) int {
		return strings.Compare(a.ProductID+"\x00"+a.FirmwareVersion, b.ProductID+"\x00"+b.FirmwareVersion)
	})
	var out []Result
	for len(fws) > 0 {
		batch := fws[:min(len(fws), 500)]
		fws = fws[len(batch):]
		cursor := ""
		for {
			ds, next, err := env.Store.DevicesRunning(ctx, env.TenantID, batch, store.ListOptions{Limit: 1000, Cursor: cursor})
			if err != nil {
				return nil, err
			}
			for _, d := range ds {
				if d.State == model.StateDecommissioned || !env.InScope(d.ID) {
					continue
				}
				hs := hits[model.FirmwareRef{ProductID: d.ProductID, FirmwareVersion: d.FirmwareVersion}]
				out = append(out, vulnResult(d, hs))
			}
			if next == "" {
				break
			}
			cursor = next
		}
	}
	return out, nil
}

func vulnResult(d model.Device, hs []vuln.Hit) Result {
	// The worst advisory rates the finding; unknown ratings count as medium.
	worst := model.SeverityMedium
	seen := map[string]bool{}
	var advisories []map[string]any
	for _, h := range hs {
		if s := model.Severity(h.Severity); s.Rank() > worst.Rank() {
			worst = s
		}
		if seen[h.AdvisoryID] {
			continue
		}
		seen[h.AdvisoryID] = true
		if len(advisories) < 50 {
			advisories = append(advisories, map[string]any{"id": h.AdvisoryID, "severity": h.Severity, "package": h.Package,
				"installed_version": h.Version, "fixed_version": h.Fixed})
		}
	}
	return Result{ResourceID: d.ID, Severity: worst,
		Title: fmt.Sprintf("%s runs firmware %s with %d known vulnerabilities", deviceName(d), d.FirmwareVersion, len(seen)),
		Evidence: map[string]any{"serial": d.Serial, "product_id": d.ProductID, "firmware_version": d.FirmwareVersion,
			"advisories": advisories, "count": len(seen)}}
}

// ---- API keys ----

func activeKeys(ctx context.Context, st store.Reader, tenantID string, now time.Time) ([]model.APIKey, error) {
	var out []model.APIKey
	cursor := ""
	for {
		ks, next, err := st.ListAPIKeys(ctx, tenantID, store.ListOptions{Limit: 1000, Cursor: cursor})
		if err != nil {
			return nil, err
		}
		for _, k := range ks {
			if k.RevokedAt == nil && (k.ExpiresAt == nil || now.Before(*k.ExpiresAt)) {
				out = append(out, k)
			}
		}
		if next == "" {
			return out, nil
		}
		cursor = next
	}
}

func keyEvidence(k model.APIKey) map[string]any {
	return map[string]any{"name": k.Name, "prefix": k.Prefix, "role": k.Role, "created_at": k.CreatedAt, "created_by": k.CreatedBy,
		"last_used": k.LastUsed, "expires_at": k.ExpiresAt}
}

type platformAdminKeys struct{}

func (platformAdminKeys) Info() CheckInfo {
	return CheckInfo{ID: CheckPlatformAdminKey, Title: "Platform-admin API key", Severity: model.SeverityMedium,
		ResourceType: "api_key", Scope: ScopePlatform,
		Description: "A platform-admin key may do anything in every tenant. Keep as few as possible, give them an expiry, " +
			"use tenant keys for daily work, and suppress this finding with a reason for the keys you keep."}
}

func (platformAdminKeys) Run(ctx context.Context, env *Env) ([]Result, error) {
	ks, err := activeKeys(ctx, env.Store, "", env.Now)
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, k := range ks {
		if k.Role != model.RolePlatformAdmin {
			continue
		}
		sev := model.SeverityMedium
		if k.ExpiresAt != nil {
			sev = model.SeverityLow
		}
		out = append(out, Result{ResourceID: k.ID, Severity: sev, Evidence: keyEvidence(k),
			Title: fmt.Sprintf("Platform-admin key %q (%s) can act in every tenant", k.Name, k.Prefix)})
	}
	return out, nil
}

type unusedKeys struct{}

func (unusedKeys) Info() CheckInfo {
	return CheckInfo{ID: CheckUnusedKey, Title: "API key without expiry, unused for long", Severity: model.SeverityMedium,
		ResourceType: "api_key", Scope: ScopeBoth,
		Description: "A key that never expires and was not used for the tenant's unused_key_days (default 90) is a standing " +
			"credential nobody watches: revoke it, or give it an expiry."}
}

func (unusedKeys) Run(ctx context.Context, env *Env) ([]Result, error) {
	ks, err := activeKeys(ctx, env.Store, env.TenantID, env.Now)
	if err != nil {
		return nil, err
	}
	days := env.Settings.UnusedKeyDays
	cutoff := env.Now.Add(-time.Duration(days) * 24 * time.Hour)
	var out []Result
	for _, k := range ks {
		if k.ExpiresAt != nil {
			continue
		}
		last := k.CreatedAt
		if k.LastUsed != nil {
			last = *k.LastUsed
		}
		if !last.Before(cutoff) {
			continue
		}
		ev := keyEvidence(k)
		ev["unused_key_days"] = days
		what := "not used"
		if k.LastUsed == nil {
			what = "never used"
		}
		out = append(out, Result{ResourceID: k.ID, Evidence: ev,
			Title: fmt.Sprintf("Key %q (%s, %s) never expires and was %s for %d days", k.Name, k.Prefix, k.Role, what,
				int(env.Now.Sub(last).Hours()/24))})
	}
	return out, nil
}

type tooManyAdmins struct{}

func (tooManyAdmins) Info() CheckInfo {
	return CheckInfo{ID: CheckTooManyAdmins, Title: "More tenant-admin API keys than allowed", Severity: model.SeverityLow,
		ResourceType: "tenant", Scope: ScopeTenant,
		Description: "The tenant holds more active tenant-admin keys than its max_tenant_admin_keys (default 3): use operator " +
			"or viewer keys where admin rights are not needed."}
}

func (tooManyAdmins) Run(ctx context.Context, env *Env) ([]Result, error) {
	ks, err := activeKeys(ctx, env.Store, env.TenantID, env.Now)
	if err != nil {
		return nil, err
	}
	var admins []map[string]any
	for _, k := range ks {
		if k.Role == model.RoleTenantAdmin {
			admins = append(admins, map[string]any{"id": k.ID, "name": k.Name, "prefix": k.Prefix})
		}
	}
	most := env.Settings.MaxTenantAdminKeys
	if len(admins) <= most {
		return nil, nil
	}
	return []Result{{ResourceID: env.TenantID, Evidence: map[string]any{"keys": admins, "count": len(admins), "max": most},
		Title: fmt.Sprintf("%d active tenant-admin keys, more than the %d allowed", len(admins), most)}}, nil
}

// ---- audit log ----

type auditChain struct{}

func (auditChain) Info() CheckInfo {
	return CheckInfo{ID: CheckAuditChain, Title: "Audit log chain broken", Severity: model.SeverityCritical,
		ResourceType: "audit_chain", Scope: ScopeBoth,
		Description: "A record of the hash-chained audit log was altered, removed or reordered: the trail can no longer be " +
			"trusted from that record on. (Steward cannot run with its audit log off, so there is no \"disabled\" finding.)"}
}

func (auditChain) Run(ctx context.Context, env *Env) ([]Result, error) {
	t := env.TenantID
	reps, err := auditlog.Verify(ctx, env.Store, &t, nil)
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, r := range reps {
		if r.OK {
			continue
		}
		id := r.TenantID
		if id == "" {
			id = "platform"
		}
		out = append(out, Result{ResourceID: id, Evidence: r,
			Title: fmt.Sprintf("The audit chain is broken at record %d: %s", r.BrokenAt, r.Error)})
	}
	return out, nil
}

// ---- certificates ----

func eachCert(ctx context.Context, env *Env, fn func(c model.ActiveCertificate)) error {
	after := ""
	for {
		cs, err := env.Store.ActiveCertificates(ctx, env.TenantID, after, 5000)
		if err != nil {
			return err
		}
		for _, c := range cs {
			fn(c)
		}
		if len(cs) < 5000 {
			return nil
		}
		after = cs[len(cs)-1].Serial
	}
}

type certExpiring struct{}

func (certExpiring) Info() CheckInfo {
	return CheckInfo{ID: CheckCertExpiring, Title: "Device certificate expiring within 30 days", Severity: model.SeverityMedium,
		ResourceType: "device", Scope: ScopeTenant,
		Description: "The device's current certificate expires within 30 days (high once it has expired): the device must " +
			"renew it or it will be locked out."}
}

func (certExpiring) Run(ctx context.Context, env *Env) ([]Result, error) {
	var out []Result
	err := eachCert(ctx, env, func(c model.ActiveCertificate) {
		if !env.InScope(c.DeviceID) || c.NotAfter.Sub(env.Now) > CertExpiringSoon {
			return
		}
		ev := map[string]any{"serial": c.Serial, "not_after": c.NotAfter, "key_algorithm": c.KeyAlgorithm}
		if !env.Now.Before(c.NotAfter) {
			out = append(out, Result{ResourceID: c.DeviceID, Key: c.Serial, Severity: model.SeverityHigh, Evidence: ev,
				Title: fmt.Sprintf("Certificate %s of device %s expired on %s", c.Serial, c.DeviceID, c.NotAfter.Format("2006-01-02"))})
			return
		}
		out = append(out, Result{ResourceID: c.DeviceID, Key: c.Serial, Evidence: ev,
			Title: fmt.Sprintf("Certificate %s of device %s expires on %s", c.Serial, c.DeviceID, c.NotAfter.Format("2006-01-02"))})
	})
	return out, err
}

type weakKey struct{}

func (weakKey) Info() CheckInfo {
	return CheckInfo{ID: CheckWeakKey, Title: "Device certificate with a weak key", Severity: model.SeverityHigh,
		ResourceType: "device", Scope: ScopeTenant,
		Description: "The device's current certificate holds a key weaker than RSA 2048, ECDSA P-256 or Ed25519 (e.g. issued " +
			"by an older policy or imported): re-enroll the device with a new key."}
}

// StrongKey reports whether a certificate's key algorithm (as the CA
// records it: ECDSA-P256, RSA-3072 …) is acceptable today.
func StrongKey(alg string) bool {
	switch alg {
	case "ECDSA-P256", "ECDSA-P384", "ECDSA-P521", "Ed25519":
		return true
	}
	if bits, ok := strings.CutPrefix(alg, "RSA-"); ok {
		n, err := strconv.Atoi(bits)
		return err == nil && n >= 2048
	}
	return false
}

func (weakKey) Run(ctx context.Context, env *Env) ([]Result, error) {
	var out []Result
	err := eachCert(ctx, env, func(c model.ActiveCertificate) {
		if !env.InScope(c.DeviceID) || StrongKey(c.KeyAlgorithm) {
			return
		}
		out = append(out, Result{ResourceID: c.DeviceID, Key: c.Serial,
			Evidence: map[string]any{"serial": c.Serial, "key_algorithm": c.KeyAlgorithm, "not_after": c.NotAfter},
			Title:    fmt.Sprintf("Certificate %s of device %s has a weak %s key", c.Serial, c.DeviceID, c.KeyAlgorithm)})
	})
	return out, err
}

type sharedKey struct{}

func (sharedKey) Info() CheckInfo {
	return CheckInfo{ID: CheckSharedKey, Title: "One key (certificate) shared by several devices", Severity: model.SeverityHigh,
		ResourceType: "device", Scope: ScopeTenant,
		Description: "Current certificates of several devices carry the same public key: one private key is on (or was " +
			"copied to) several devices, so none of them can be told apart. Revoke and re-enroll them."}
}

func (sharedKey) Run(ctx context.Context, env *Env) ([]Result, error) {
	byKey := map[string][]model.ActiveCertificate{}
	err := eachCert(ctx, env, func(c model.ActiveCertificate) { byKey[c.KeyFingerprint] = append(byKey[c.KeyFingerprint], c) })
	if err != nil {
		return nil, err
	}
	var out []Result
	for fp, cs := range byKey {
		devices := map[string]bool{}
		for _, c := range cs {
			devices[c.DeviceID] = true
		}
		if len(devices) < 2 {
			continue
		}
		ids := make([]string, 0, len(devices))
		for d := range devices {
			ids = append(ids, d)
		}
		slices.Sort(ids)
		for _, c := range cs {
			if !env.InScope(c.DeviceID) {
				continue
			}
			out = append(out, Result{ResourceID: c.DeviceID, Key: fp,
				Evidence: map[string]any{"public_key_sha256": fp, "serial": c.Serial, "devices": ids},
				Title:    fmt.Sprintf("Device %s shares its certificate key with %d other device(s)", c.DeviceID, len(ids)-1)})
		}
	}
	return out, nil
}

// ---- network policy ----

type flowOutside struct{}

func (flowOutside) Info() CheckInfo {
	return CheckInfo{ID: CheckFlowOutside, Title: "Network flow outside the device's MUD profile", Severity: model.SeverityHigh,
		ResourceType: "device", Scope: ScopeTenant,
		Description: "A gateway or agent reported a flow that the MUD profile of the device's product does not allow " +
			"(high when the device opened it, medium when it was opened towards the device). It resolves once the flow " +
			"was not reported for the tenant's flow_window_hours (default 24) or the profile allows it."}
}

func (flowOutside) Run(ctx context.Context, env *Env) ([]Result, error) {
	since := env.Now.Add(-time.Duration(env.Settings.FlowWindowHours) * time.Hour)
	device := ""
	if len(env.ResourceIDs) == 1 {
		device = env.ResourceIDs[0]
	}
	flows, err := env.Store.RecentFlows(ctx, env.TenantID, device, since)
	if err != nil {
		return nil, err
	}
	profiles := map[string]*model.MUDProfile{}
	var out []Result
	for _, f := range flows {
		if !env.InScope(f.DeviceID) {
			continue
		}
		p, ok := profiles[f.DeviceID]
		if !ok {
			p, err = env.Store.DeviceMUDProfile(ctx, env.TenantID, f.DeviceID)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			profiles[f.DeviceID] = p
		}
		if netpolicy.Evaluate(p, f) != netpolicy.VerdictOutside {
			continue
		}
		sev := model.SeverityHigh
		if f.Direction == "to-device" {
			sev = model.SeverityMedium
		}
		remote := f.RemoteHost
		if remote == "" {
			remote = f.RemoteAddress
		}
		port := f.RemotePort
		if f.Direction == "to-device" {
			port = f.LocalPort
		}
		out = append(out, Result{ResourceID: f.DeviceID, Key: f.Key, Severity: sev,
			Evidence: map[string]any{"flow": f, "mud_url": p.MUDURL},
			Title:    fmt.Sprintf("Device %s: %s %s flow with %s port %d is outside its MUD profile", f.DeviceID, f.Direction, f.Protocol, remote, port)})
	}
	return out, nil
}
