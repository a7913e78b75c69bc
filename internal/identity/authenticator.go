package identity

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// MayConnect reports whether a device in lifecycle state s may connect.
// Claimed, provisioned, active, quarantined (the broker reduces it to the
// update topics) and end-of-support devices may; manufactured, suspended
// and decommissioned ones may not.
func MayConnect(s model.State) bool {
	switch s {
	case model.StateClaimed, model.StateProvisioned, model.StateActive, model.StateQuarantined, model.StateEndOfSupport:
		return true
	}
	return false
}

// CutOff tells an edge that sessions must end now: the device was
// revoked, suspended, decommissioned, deleted or moved to another tenant,
// or one of its credentials was revoked. It may be delivered more than
// once for one change (locally, then from the bus); dropping is idempotent.
type CutOff struct {
	TenantID string
	DeviceID string
	// CertSerial, when set, limits the cut to sessions authenticated with
	// this certificate.
	CertSerial string
	// Method, when set, limits the cut to sessions of that method (a
	// replaced or revoked device token ends token sessions only).
	Method Method
	Reason string
}

// EventSource is the bus as the authenticator needs it (*bus.Bus).
type EventSource interface {
	SubscribeEventTypes(ctx context.Context, types []string, fn func(model.Event)) (stop func(), err error)
}

// watchedEvents are the events that change what the authenticator
// answers. Every node hears all of them (each node has its own cache and
// its own sessions to cut off), and only them.
var watchedEvents = []string{EventCertificateRevoked, EventDeviceStateChanged, "device.deleted", EventDeviceClaimed,
	EventDeviceTransferred, EventDeviceTokenCreated, EventDeviceTokenRevoked}

// cacheTTL bounds how long a cached answer is trusted without an event
// confirming it: a safety net, since events keep the cache current.
const (
	cacheTTL        = 2 * time.Minute
	maxCacheEntries = 200_000
)

type certEntry struct {
	tenantID, deviceID string
	revoked            bool
	reason             model.RevocationReason
	at                 time.Time
}

type devEntry struct {
	tenantID string
	state    model.State
	at       time.Time
}

type tokenEntry struct {
	tenantID string
	hash     []byte
	revoked  bool
	at       time.Time
}

// DeviceAuthenticator implements Authenticator for the broker (and any
// other device edge). Connect checks are answered from memory: verified
// certificate chains, certificate records (revocations) and device states
// are cached, filled from the store on a miss, and kept current by this
// node's own changes (at once) and by the bus events of every node
// (certificate.revoked, device.state_changed, device.deleted,
// device.claimed, device.transferred, device_token.*).
type DeviceAuthenticator struct {
	st  store.Reader
	ca  *CA
	now func() time.Time
	log *slog.Logger

	mu sync.Mutex
	// gen counts invalidations; a store read started before one is not
	// cached, so a load can never overwrite a newer revocation or state.
	gen      uint64
	certs    map[string]certEntry
	devices  map[string]devEntry
	tokens   map[string]tokenEntry
	verified map[[32]byte]string // SHA-256 of a verified leaf → serial
	subs     []func(CutOff)

	onRevoked func() // the service's CRL cache
}

var _ Authenticator = (*DeviceAuthenticator)(nil)

func newDeviceAuthenticator(st store.Reader, ca *CA, now func() time.Time, log *slog.Logger) *DeviceAuthenticator {
	return &DeviceAuthenticator{st: st, ca: ca, now: now, log: log, certs: map[string]certEntry{},
		devices: map[string]devEntry{}, tokens: map[string]tokenEntry{}, verified: map[[32]byte]string{}}
}

// OnCutOff registers fn to be called whenever sessions must be dropped.
// fn runs on the goroutine that learned of the change and must not block.
func (a *DeviceAuthenticator) OnCutOff(fn func(CutOff)) {
	a.mu.Lock()
	a.subs = append(a.subs, fn)
	a.mu.Unlock()
}

func (a *DeviceAuthenticator) cutOff(c CutOff) {
	a.mu.Lock()
	subs := slices.Clone(a.subs)
	a.mu.Unlock()
	for _, fn := range subs {
		fn(c)
	}
}

// Watch keeps the cache current from the bus until ctx ends or stop is
// called. Call it before the first connection is accepted.
func (a *DeviceAuthenticator) Watch(ctx context.Context, src EventSource) (stop func(), err error) {
	return src.SubscribeEventTypes(ctx, watchedEvents, a.HandleEvent)
}

// HandleEvent applies one domain event to the cache (Watch calls it).
func (a *DeviceAuthenticator) HandleEvent(ev model.Event) {
	var d struct {
		DeviceID string                 `json:"device_id"`
		Serial   string                 `json:"serial"`
		To       model.State            `json:"to"`
		Reason   model.RevocationReason `json:"reason"`
	}
	if !slices.Contains(watchedEvents, ev.Type) {
		return
	}
	if err := json.Unmarshal(ev.Data, &d); err != nil || d.DeviceID == "" {
		return
	}
	switch ev.Type {
	case EventCertificateRevoked:
		a.markRevoked(d.Serial)
		if a.onRevoked != nil {
			a.onRevoked()
		}
		a.cutOff(CutOff{TenantID: ev.TenantID, DeviceID: d.DeviceID, CertSerial: d.Serial, Reason: "certificate revoked (" + string(d.Reason) + ")"})
	case EventDeviceStateChanged:
		a.mu.Lock()
		a.gen++
		if e, ok := a.devices[d.DeviceID]; ok && e.tenantID == ev.TenantID {
			e.state, e.at = d.To, a.now()
			a.devices[d.DeviceID] = e
		} else {
			delete(a.devices, d.DeviceID)
		}
		a.mu.Unlock()
		if !MayConnect(d.To) {
			a.cutOff(CutOff{TenantID: ev.TenantID, DeviceID: d.DeviceID, Reason: "device is " + string(d.To)})
		}
	case "device.deleted", EventDeviceTransferred:
		a.forgetDevice(d.DeviceID)
		a.cutOff(CutOff{TenantID: ev.TenantID, DeviceID: d.DeviceID, Reason: strings.TrimPrefix(ev.Type, "device.")})
	case EventDeviceClaimed:
		a.forgetDevice(d.DeviceID)
	case EventDeviceTokenCreated, EventDeviceTokenRevoked:
		a.forgetToken(d.DeviceID)
		a.cutOff(CutOff{TenantID: ev.TenantID, DeviceID: d.DeviceID, Method: MethodToken, Reason: "device token replaced or revoked"})
	}
}

func (a *DeviceAuthenticator) markRevoked(serial string) {
	if serial == "" {
		return
	}
	a.mu.Lock()
	a.gen++
	e := a.certs[serial]
	e.revoked, e.at = true, a.now()
	a.certs[serial] = e
	a.mu.Unlock()
}

func (a *DeviceAuthenticator) forgetDevice(id string) {
	a.mu.Lock()
	a.gen++
	delete(a.devices, id)
	delete(a.tokens, id)
	for s, e := range a.certs {
		if e.deviceID == id && !e.revoked {
			delete(a.certs, s)
		}
	}
	a.mu.Unlock()
}

func (a *DeviceAuthenticator) forgetToken(deviceID string) {
	a.mu.Lock()
	a.gen++
	delete(a.tokens, deviceID)
	a.mu.Unlock()
}

// AuthenticateCert checks a client chain (leaf first): issued by the
// platform CA for TLS client use, within its validity, on record, not
// revoked, and its device in a state that may connect.
func (a *DeviceAuthenticator) AuthenticateCert(ctx context.Context, chain []*x509.Certificate) (*Device, error) {
	if len(chain) == 0 || chain[0] == nil {
		return nil, fmt.Errorf("%w: no client certificate", ErrUnknownIdentity)
	}
	leaf := chain[0]
	now := a.now()
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("%w: certificate %s expired at %s", ErrExpired, SerialHex(leaf.SerialNumber), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	sum := sha256.Sum256(leaf.Raw)
	a.mu.Lock()
	_, verified := a.verified[sum]
	a.mu.Unlock()
	if !verified || now.Before(leaf.NotBefore) {
		opts := a.ca.VerifyOptions(now)
		if len(chain) > 1 {
			opts.Intermediates = opts.Intermediates.Clone()
			for _, c := range chain[1:] {
				opts.Intermediates.AddCert(c)
			}
		}
		if _, err := leaf.Verify(opts); err != nil {
			var inv x509.CertificateInvalidError
			if errors.As(err, &inv) && inv.Reason == x509.Expired {
				return nil, fmt.Errorf("%w: certificate %s: %v", ErrExpired, SerialHex(leaf.SerialNumber), err)
			}
			return nil, fmt.Errorf("%w: certificate not issued by this platform's CA: %v", ErrUnknownIdentity, err)
		}
		a.mu.Lock()
		if len(a.verified) >= maxCacheEntries {
			clear(a.verified)
		}
		a.verified[sum] = SerialHex(leaf.SerialNumber)
		a.mu.Unlock()
	}
	serial := SerialHex(leaf.SerialNumber)
	ce, err := a.cert(ctx, serial)
	if err != nil {
		return nil, err
	}
	if ce.revoked {
		// Who it was is returned with the refusal: the broker records
		// revoked certificates that still try to connect.
		return &Device{TenantID: ce.tenantID, DeviceID: ce.deviceID, Method: MethodCertificate, CertSerial: serial},
			fmt.Errorf("%w: certificate %s (%s)", ErrRevoked, serial, ce.reason)
	}
	de, err := a.device(ctx, ce.deviceID)
	if err != nil {
		return nil, err
	}
	if !MayConnect(de.state) {
		return nil, fmt.Errorf("%w: device %s is %s", ErrNotAllowed, ce.deviceID, de.state)
	}
	return &Device{TenantID: de.tenantID, DeviceID: ce.deviceID, Method: MethodCertificate, CertSerial: serial}, nil
}

// AuthenticateToken checks a device token (MQTT password) for deviceID
// (MQTT user name) in constant time against its stored hash.
func (a *DeviceAuthenticator) AuthenticateToken(ctx context.Context, deviceID, token string) (*Device, error) {
	if deviceID == "" || !strings.HasPrefix(token, deviceTokenTag+"_") || len(token) > 128 {
		return nil, fmt.Errorf("%w: not a device token", ErrUnknownIdentity)
	}
	te, err := a.token(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(hashSecret(token), te.hash) != 1 {
		return nil, fmt.Errorf("%w: wrong token for device %s", ErrUnknownIdentity, deviceID)
	}
	if te.revoked {
		return nil, fmt.Errorf("%w: the token of device %s", ErrRevoked, deviceID)
	}
	de, err := a.device(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	if de.tenantID != te.tenantID {
		a.forgetDevice(deviceID)
		return nil, fmt.Errorf("%w: token of device %s", ErrUnknownIdentity, deviceID)
	}
	if !MayConnect(de.state) {
		return nil, fmt.Errorf("%w: device %s is %s", ErrNotAllowed, deviceID, de.state)
	}
	return &Device{TenantID: de.tenantID, DeviceID: deviceID, Method: MethodToken}, nil
}

func (a *DeviceAuthenticator) fresh(at time.Time) bool { return a.now().Sub(at) < cacheTTL }

func (a *DeviceAuthenticator) cert(ctx context.Context, serial string) (certEntry, error) {
	a.mu.Lock()
	e, ok := a.certs[serial]
	g := a.gen
	a.mu.Unlock()
	if ok && (e.revoked || a.fresh(e.at)) && e.deviceID != "" {
		return e, nil
	}
	rec, err := a.st.LocateCertificate(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return e, fmt.Errorf("%w: certificate %s has no record", ErrUnknownIdentity, serial)
	}
	if err != nil {
		return e, err
	}
	e = certEntry{tenantID: rec.TenantID, deviceID: rec.DeviceID, revoked: rec.Revoked(), reason: rec.RevocationReason, at: a.now()}
	a.mu.Lock()
	if prev, ok := a.certs[serial]; ok && prev.revoked {
		e.revoked = true // a revocation seen meanwhile wins
	}
	if a.gen == g || e.revoked {
		a.put(func() { a.certs[serial] = e }, len(a.certs))
	}
	a.mu.Unlock()
	return e, nil
}

func (a *DeviceAuthenticator) device(ctx context.Context, id string) (devEntry, error) {
	a.mu.Lock()
	e, ok := a.devices[id]
	g := a.gen
	a.mu.Unlock()
	if ok && a.fresh(e.at) {
		return e, nil
	}
	d, err := a.st.LocateDevice(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return e, fmt.Errorf("%w: device %s does not exist", ErrUnknownIdentity, id)
	}
	if err != nil {
		return e, err
	}
	e = devEntry{tenantID: d.TenantID, state: d.State, at: a.now()}
	a.mu.Lock()
	if a.gen == g {
		a.put(func() { a.devices[id] = e }, len(a.devices))
	}
	a.mu.Unlock()
	return e, nil
}

func (a *DeviceAuthenticator) token(ctx context.Context, deviceID string) (tokenEntry, error) {
	a.mu.Lock()
	e, ok := a.tokens[deviceID]
	g := a.gen
	a.mu.Unlock()
	if ok && a.fresh(e.at) {
		return e, nil
	}
	t, err := a.st.DeviceToken(ctx, deviceID)
	if errors.Is(err, store.ErrNotFound) {
		return e, fmt.Errorf("%w: device %s has no token", ErrUnknownIdentity, deviceID)
	}
	if err != nil {
		return e, err
	}
	e = tokenEntry{tenantID: t.TenantID, hash: t.Hash, revoked: t.RevokedAt != nil, at: a.now()}
	a.mu.Lock()
	if a.gen == g {
		a.put(func() { a.tokens[deviceID] = e }, len(a.tokens))
	}
	a.mu.Unlock()
	return e, nil
}

// put inserts under a.mu, dropping one map's entries when it is full (they
// reload from the store on the next miss). Revoked certificates are kept.
func (a *DeviceAuthenticator) put(insert func(), size int) {
	if size >= maxCacheEntries {
		for k, e := range a.certs {
			if !e.revoked {
				delete(a.certs, k)
			}
		}
		clear(a.devices)
		clear(a.tokens)
	}
	insert()
}
