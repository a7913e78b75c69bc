package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/store/sqlstore"
)

// countingStore counts the reads on the connect path and can run a hook
// in the middle of one (to play an event arriving during a load).
type countingStore struct {
	store.Store
	certReads, devReads, tokenReads atomic.Int64
	duringDeviceRead                func()
}

func (c *countingStore) LocateCertificate(ctx context.Context, serial string) (*model.Certificate, error) {
	c.certReads.Add(1)
	return c.Store.LocateCertificate(ctx, serial)
}

func (c *countingStore) LocateDevice(ctx context.Context, id string) (*model.Device, error) {
	c.devReads.Add(1)
	d, err := c.Store.LocateDevice(ctx, id)
	if c.duringDeviceRead != nil {
		c.duringDeviceRead()
	}
	return d, err
}

func (c *countingStore) DeviceToken(ctx context.Context, id string) (*model.DeviceToken, error) {
	c.tokenReads.Add(1)
	return c.Store.DeviceToken(ctx, id)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	st      *countingStore
	svc     *Service
	auth    *DeviceAuthenticator
	clk     *clock
	tenant  string
	product string
	admin   *authz.Principal
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "s.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ca, err := LoadOrCreateCA(PKIConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: &countingStore{Store: db}, clk: &clock{t: time.Now()}, tenant: "ten_a", product: "prd_a",
		admin: &authz.Principal{KeyID: "k1", TenantID: "ten_a", Role: model.RoleTenantAdmin}}
	f.svc = NewService(f.st, ca, Options{Now: f.clk.now})
	f.auth = f.svc.Authenticator()
	err = db.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateTenant(ctx, &model.Tenant{ID: f.tenant, Name: "a", Kind: model.TenantEnterprise, CreatedAt: time.Now()}); err != nil {
			return err
		}
		return tx.CreateProduct(ctx, &model.Product{ID: f.product, TenantID: f.tenant, Vendor: "V", Model: "M", CreatedAt: time.Now(), UpdatedAt: time.Now()})
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// enroll registers and enrolls a device with a bootstrap token.
func (f *fixture) enroll(t *testing.T, serial string) *Enrolled {
	t.Helper()
	ctx := context.Background()
	secret, _, err := f.svc.CreateBootstrapToken(ctx, f.admin, f.tenant, BootstrapInput{ProductID: f.product})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{SerialNumber: serial}}, key)
	res, err := f.svc.Enroll(ctx, Credential{BootstrapToken: secret}, csr)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func event(tenant, typ string, data any) model.Event {
	b, _ := json.Marshal(data)
	return model.Event{ID: "evt", TenantID: tenant, Type: typ, Data: b}
}

func TestAuthenticatorCachesAndFollowsEvents(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	e := f.enroll(t, "SN-1")
	chain := []*x509.Certificate{e.Cert}
	var cuts []CutOff
	var mu sync.Mutex
	f.auth.OnCutOff(func(c CutOff) { mu.Lock(); cuts = append(cuts, c); mu.Unlock() })

	who, err := f.auth.AuthenticateCert(ctx, chain)
	if err != nil || who.DeviceID != e.Device.ID || who.TenantID != f.tenant || who.CertSerial != e.Record.Serial {
		t.Fatalf("AuthenticateCert: %+v, %v", who, err)
	}
	reads := f.st.certReads.Load() + f.st.devReads.Load()
	for range 100 {
		if _, err := f.auth.AuthenticateCert(ctx, chain); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.st.certReads.Load() + f.st.devReads.Load(); n != reads {
		t.Fatalf("100 connects made %d store reads; the hot path must be served from memory", n-reads)
	}

	// Another node revoked it: the event alone refuses the certificate.
	f.auth.HandleEvent(event(f.tenant, EventCertificateRevoked, map[string]any{"device_id": e.Device.ID, "serial": e.Record.Serial,
		"reason": "key_compromise"}))
	if _, err := f.auth.AuthenticateCert(ctx, chain); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after certificate.revoked: %v", err)
	}
	mu.Lock()
	if len(cuts) != 1 || cuts[0].CertSerial != e.Record.Serial || cuts[0].DeviceID != e.Device.ID {
		t.Fatalf("cut-offs: %+v", cuts)
	}
	mu.Unlock()

	// Lifecycle events: suspended is refused and cut off, active is back.
	e2 := f.enroll(t, "SN-2")
	chain2 := []*x509.Certificate{e2.Cert}
	if _, err := f.auth.AuthenticateCert(ctx, chain2); err != nil {
		t.Fatal(err)
	}
	f.auth.HandleEvent(event(f.tenant, EventDeviceStateChanged, map[string]any{"device_id": e2.Device.ID, "from": "provisioned", "to": "suspended"}))
	if _, err := f.auth.AuthenticateCert(ctx, chain2); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("after device.state_changed to suspended: %v", err)
	}
	f.auth.HandleEvent(event(f.tenant, EventDeviceStateChanged, map[string]any{"device_id": e2.Device.ID, "from": "suspended", "to": "active"}))
	if _, err := f.auth.AuthenticateCert(ctx, chain2); err != nil {
		t.Fatalf("after device.state_changed to active: %v", err)
	}
	mu.Lock()
	if len(cuts) != 2 || cuts[1].DeviceID != e2.Device.ID || cuts[1].CertSerial != "" {
		t.Fatalf("cut-offs: %+v", cuts)
	}
	mu.Unlock()

	// An event for an unknown device or an unrelated type changes nothing.
	f.auth.HandleEvent(event(f.tenant, "device.updated", map[string]any{"device_id": e2.Device.ID}))
	f.auth.HandleEvent(model.Event{Type: EventCertificateRevoked, Data: []byte("not json")})
	if _, err := f.auth.AuthenticateCert(ctx, chain2); err != nil {
		t.Fatal(err)
	}
}

// A change that arrives while a connect is reading the store must win:
// the (older) read is used for that connect only, not cached.
func TestAuthenticatorLoadRacingAnEvent(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	e := f.enroll(t, "SN-1")
	chain := []*x509.Certificate{e.Cert}
	f.st.duringDeviceRead = func() {
		f.st.duringDeviceRead = nil
		f.auth.HandleEvent(event(f.tenant, EventDeviceStateChanged, map[string]any{"device_id": e.Device.ID, "to": "suspended"}))
	}
	f.auth.AuthenticateCert(ctx, chain) // decided on the read before the event
	before := f.st.devReads.Load()
	// The stale "provisioned" must not have been cached: the next connect
	// reads again (and the store still says provisioned, as no one wrote).
	if _, err := f.auth.AuthenticateCert(ctx, chain); err != nil {
		t.Fatal(err)
	}
	if f.st.devReads.Load() != before+1 {
		t.Fatalf("a read that raced an event was cached")
	}
}

func TestAuthenticatorRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	e := f.enroll(t, "SN-1")
	if _, err := f.auth.AuthenticateCert(ctx, nil); !errors.Is(err, ErrUnknownIdentity) {
		t.Fatalf("no chain: %v", err)
	}
	// A certificate of another CA.
	other, _ := LoadOrCreateCA(PKIConfig{Dir: t.TempDir()})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	foreign, _ := other.IssueDevice(DeviceCertRequest{DeviceID: e.Device.ID, PublicKey: key.Public(), Validity: time.Hour})
	if _, err := f.auth.AuthenticateCert(ctx, []*x509.Certificate{foreign}); !errors.Is(err, ErrUnknownIdentity) {
		t.Fatalf("another CA: %v", err)
	}
	// Expired (the clock moves past it).
	f.clk.add(91 * 24 * time.Hour)
	if _, err := f.auth.AuthenticateCert(ctx, []*x509.Certificate{e.Cert}); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	f.clk.add(-91 * 24 * time.Hour)
	// Signed by the platform CA but never recorded.
	stray, _ := f.svc.CA().IssueDevice(DeviceCertRequest{DeviceID: e.Device.ID, PublicKey: key.Public(), Validity: time.Hour})
	if _, err := f.auth.AuthenticateCert(ctx, []*x509.Certificate{stray}); !errors.Is(err, ErrUnknownIdentity) ||
		!strings.Contains(err.Error(), "no record") {
		t.Fatalf("unrecorded certificate: %v", err)
	}
	// Revoked here: refused at once, no event needed.
	if _, err := f.svc.RevokeCertificate(ctx, f.admin, f.tenant, e.Record.Serial, model.ReasonKeyCompromise, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.auth.AuthenticateCert(ctx, []*x509.Certificate{e.Cert}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked: %v", err)
	}
}

// The cache is a shortcut, not the truth: entries expire, so a change
// whose event was missed is seen within the cache lifetime.
func TestAuthenticatorCacheExpires(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	e := f.enroll(t, "SN-1")
	chain := []*x509.Certificate{e.Cert}
	if _, err := f.auth.AuthenticateCert(ctx, chain); err != nil {
		t.Fatal(err)
	}
	// Suspend behind the authenticator's back (no event).
	err := f.st.Update(ctx, func(tx store.Tx) error {
		return tx.SetDeviceState(ctx, f.tenant, &model.Transition{DeviceID: e.Device.ID, From: model.StateProvisioned,
			To: model.StateSuspended, Actor: "test", Reason: "test", At: time.Now()})
	})
	if err != nil {
		t.Fatal(err)
	}
	f.clk.add(cacheTTL + time.Second)
	if _, err := f.auth.AuthenticateCert(ctx, chain); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("after the cache lifetime: %v", err)
	}
}

func TestDeviceTokens(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	e := f.enroll(t, "SN-1")
	tok, rec, err := f.svc.CreateDeviceToken(ctx, f.admin, f.tenant, e.Device.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "sdt_") || !strings.HasPrefix(tok, rec.Prefix) || len(rec.Hash) != 32 {
		t.Fatalf("token %q, record %+v", tok, rec)
	}
	who, err := f.auth.AuthenticateToken(ctx, e.Device.ID, tok)
	if err != nil || who.Method != MethodToken || who.TenantID != f.tenant {
		t.Fatalf("AuthenticateToken: %+v, %v", who, err)
	}
	reads := f.st.tokenReads.Load()
	f.auth.AuthenticateToken(ctx, e.Device.ID, tok)
	if f.st.tokenReads.Load() != reads {
		t.Fatal("token check not cached")
	}
	// The last character changed to one it is not.
	other := tok[:len(tok)-1] + map[bool]string{true: "y", false: "x"}[tok[len(tok)-1] == 'x']
	for _, bad := range []string{"", "sdt_", other, "stw_" + tok[4:], strings.Repeat("a", 500)} {
		if _, err := f.auth.AuthenticateToken(ctx, e.Device.ID, bad); !errors.Is(err, ErrUnknownIdentity) {
			t.Errorf("token %q: %v", bad, err)
		}
	}
	if _, err := f.auth.AuthenticateToken(ctx, "dev_nope", tok); !errors.Is(err, ErrUnknownIdentity) {
		t.Errorf("unknown device: %v", err)
	}
	// Another node revoked it.
	if err := f.st.Update(ctx, func(tx store.Tx) error { return tx.RevokeDeviceToken(ctx, f.tenant, e.Device.ID, time.Now()) }); err != nil {
		t.Fatal(err)
	}
	f.auth.HandleEvent(event(f.tenant, EventDeviceTokenRevoked, map[string]string{"device_id": e.Device.ID}))
	if _, err := f.auth.AuthenticateToken(ctx, e.Device.ID, tok); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked token: %v", err)
	}
}

func TestDefaultKeyEncryptionParameters(t *testing.T) {
	saved := [3]uint32{argonTime, argonMemory, uint32(argonThreads)}
	argonTime, argonMemory, argonThreads = 3, 64*1024, 4
	defer func() { argonTime, argonMemory, argonThreads = saved[0], saved[1], uint8(saved[2]) }()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b, err := encodeKey(key, "pass")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block.Headers["KDF"] != "argon2id" || block.Headers["KDF-Params"] != "t=3,m=65536,p=4" || block.Headers["Cipher"] != "AES-256-GCM" {
		t.Fatalf("headers %v", block.Headers)
	}
	got, enc, err := decodeKey(b, "pass")
	if err != nil || !enc || !got.(*ecdsa.PrivateKey).Equal(key) {
		t.Fatalf("decode: %v %v", enc, err)
	}
}
