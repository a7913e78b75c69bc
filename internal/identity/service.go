package identity

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/lifecycle"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// Event types this package emits (besides the registry's device.* ones).
const (
	EventCertificateIssued  = "certificate.issued"
	EventCertificateRevoked = "certificate.revoked"
	// EventDeviceClaimed goes to the new owner's tenant, EventDeviceTransferred
	// to the tenant the device left.
	EventDeviceClaimed       = "device.claimed"
	EventDeviceTransferred   = "device.transferred"
	EventDeviceTokenCreated  = "device_token.created"
	EventDeviceTokenRevoked  = "device_token.revoked"
	EventBootstrapCreated    = "bootstrap_token.created"
	EventBootstrapRevoked    = "bootstrap_token.revoked"
	EventManufacturerCAAdded = "manufacturer_ca.created"
	EventManufacturerCAGone  = "manufacturer_ca.deleted"
	EventDeviceKeysUploaded  = "device_keys.uploaded"
	EventClaimCodeCreated    = "claim_code.created"
	// EventDeviceStateChanged is the registry's lifecycle event; enrollment
	// and claims emit it too when they move a device.
	EventDeviceStateChanged = "device.state_changed"
)

// Defaults.
const (
	DefaultCertValidity      = 90 * 24 * time.Hour
	DefaultBootstrapTokenTTL = time.Hour
	MaxBootstrapTokenTTL     = 7 * 24 * time.Hour
	crlValidity              = 24 * time.Hour
	crlRefresh               = time.Hour
)

// Options tune the service.
type Options struct {
	// CertValidity of device certificates (default 90 days).
	CertValidity time.Duration
	// CRLURL is written into device certificates as the CRL distribution
	// point when set (e.g. https://steward.example.com/pki/crl).
	CRLURL string
	Log    *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Service is the device PKI: it issues, renews and revokes device
// certificates, runs the three enrollment methods, claim codes, bootstrap
// and device tokens, and keeps the authenticator's cache current for
// changes made through it.
type Service struct {
	st   store.Store
	ca   *CA
	opt  Options
	log  *slog.Logger
	auth *DeviceAuthenticator
	// mudHook learns the MUD URL an enrolled device's certificate carries
	// (SetMUDHook).
	mudHook func(productTenant, productID, mudURL string)

	crlMu    sync.Mutex
	crl      []byte
	crlAt    time.Time
	crlDirty bool
}

// NewService returns the device PKI over st with ca as its issuing CA.
func NewService(st store.Store, ca *CA, o Options) *Service {
	if o.CertValidity <= 0 {
		o.CertValidity = DefaultCertValidity
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Service{st: st, ca: ca, opt: o, log: o.Log, crlDirty: true}
	s.auth = newDeviceAuthenticator(st, ca, o.Now, o.Log)
	s.auth.onRevoked = s.markCRLDirty
	return s
}

// CA is the issuing CA.
func (s *Service) CA() *CA { return s.ca }

// Authenticator is the device authenticator the broker uses; it shares this
// service's view of revocations.
func (s *Service) Authenticator() *DeviceAuthenticator { return s.auth }

func (s *Service) now() time.Time { return s.opt.Now().UTC().Truncate(time.Microsecond) }

// emit writes an audit record and an event inside tx.
// An empty a.Action writes no audit record (the caller writes one for the
// whole operation).
func (s *Service) emit(ctx context.Context, tx store.Tx, tenantID string, a model.AuditEntry, evType, subject string, data any) error {
	if a.Action != "" {
		if _, err := tx.Audit(ctx, tenantID, a); err != nil {
			return fmt.Errorf("writing the audit record: %w", err)
		}
	}
	if evType == "" {
		return nil
	}
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return tx.Emit(ctx, &model.Event{ID: ids.New("evt"), TenantID: tenantID, Type: evType, Subject: subject, Time: s.now(), Data: b})
}

// transition moves a device inside tx with its transition record, audit
// record and device.state_changed event, as the registry does.
func (s *Service) transition(ctx context.Context, tx store.Tx, tenantID string, d *model.Device, to model.State, actor, reason string) error {
	tr, err := s.move(ctx, tx, tenantID, d, to, actor, reason)
	if err != nil {
		return err
	}
	_, err = tx.Audit(ctx, tenantID, model.AuditEntry{Actor: actor, Action: "device.transition", Target: d.ID,
		Summary: map[string]any{"from": tr.From, "to": tr.To, "reason": reason}})
	return err
}

// move is transition without its own audit record, for an operation whose
// single audit record names the move (enrollment).
func (s *Service) move(ctx context.Context, tx store.Tx, tenantID string, d *model.Device, to model.State, actor, reason string) (*model.Transition, error) {
	if err := lifecycle.Check(d.State, to); err != nil {
		return nil, err
	}
	tr := &model.Transition{DeviceID: d.ID, From: d.State, To: to, Actor: actor, Reason: reason, At: s.now()}
	if err := tx.SetDeviceState(ctx, tenantID, tr); err != nil {
		return nil, err
	}
	d.State = to
	d.Version++
	d.UpdatedAt = tr.At
	return tr, s.emit(ctx, tx, tenantID, model.AuditEntry{}, EventDeviceStateChanged, d.ID,
		map[string]any{"device_id": d.ID, "from": tr.From, "to": tr.To, "reason": reason, "actor": actor})
}

func notFound(what, id string) *Error {
	return refuse(KindNotFound, ReasonNotFound, "%s %s not found", what, id)
}

// orNotFound turns a store "not found" into a named one.
func orNotFound(err error, what, id string) error {
	if errors.Is(err, store.ErrNotFound) {
		return notFound(what, id)
	}
	return err
}

func actorOf(p *authz.Principal) string { return p.Actor() }

func hashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func checkText(field, v string, maxLen int) error {
	if len(v) > maxLen {
		return invalidField(field, "must be at most %d characters", maxLen)
	}
	for _, r := range v {
		if !unicode.IsPrint(r) {
			return invalidField(field, "holds a control character")
		}
	}
	return nil
}

// ---- manufacturer CAs ----

// AddManufacturerCA registers a vendor CA for a product: a device whose
// factory certificate chains to it may enroll.
func (s *Service) AddManufacturerCA(ctx context.Context, p *authz.Principal, tenantID, productID, name string, certPEM []byte) (*model.ManufacturerCA, error) {
	if err := checkText("name", name, 128); err != nil {
		return nil, err
	}
	certs, err := parseCertsPEM(certPEM)
	if err != nil {
		return nil, invalidField("certificate", "not a PEM certificate: %v", err)
	}
	if len(certs) != 1 {
		return nil, invalidField("certificate", "holds %d certificates; register one CA per call", len(certs))
	}
	c := certs[0]
	if !c.IsCA || !c.BasicConstraintsValid {
		return nil, invalidField("certificate", "%s is not a CA certificate (basic constraints CA:TRUE missing)", c.Subject)
	}
	if s.now().After(c.NotAfter) {
		return nil, invalidField("certificate", "expired at %s", c.NotAfter.UTC().Format(time.RFC3339))
	}
	fp := sha256.Sum256(c.Raw)
	sh := sha256.Sum256(c.RawSubject)
	ca := &model.ManufacturerCA{ID: ids.New("mca"), TenantID: tenantID, ProductID: productID, Name: name,
		Subject: c.Subject.String(), SubjectKeyID: hex.EncodeToString(c.SubjectKeyId), SubjectHash: hex.EncodeToString(sh[:]),
		Fingerprint: hex.EncodeToString(fp[:]), NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
		CreatedAt: s.now(), CreatedBy: actorOf(p), DER: c.Raw}
	err = s.st.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateManufacturerCA(ctx, ca); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return notFound("product", productID)
			}
			if errors.Is(err, store.ErrConflict) {
				return refuse(KindConflict, ReasonConflict, "this CA (%s) is already registered for product %s", ca.Fingerprint, productID)
			}
			return err
		}
		return s.emit(ctx, tx, tenantID, model.AuditEntry{Actor: actorOf(p), Action: "manufacturer_ca.create", Target: ca.ID,
			Summary: map[string]any{"product_id": productID, "subject": ca.Subject, "fingerprint_sha256": ca.Fingerprint}},
			EventManufacturerCAAdded, ca.ID, ca)
	})
	if err != nil {
		return nil, err
	}
	return ca, nil
}

func (s *Service) ListManufacturerCAs(ctx context.Context, tenantID, productID string) ([]model.ManufacturerCA, error) {
	if _, err := s.st.GetProduct(ctx, tenantID, productID); err != nil {
		return nil, orNotFound(err, "product", productID)
	}
	return s.st.ListManufacturerCAs(ctx, tenantID, productID)
}

func (s *Service) DeleteManufacturerCA(ctx context.Context, p *authz.Principal, tenantID, productID, id string) error {
	return s.st.Update(ctx, func(tx store.Tx) error {
		if err := tx.DeleteManufacturerCA(ctx, tenantID, productID, id); err != nil {
			return orNotFound(err, "manufacturer CA", id)
		}
		return s.emit(ctx, tx, tenantID, model.AuditEntry{Actor: actorOf(p), Action: "manufacturer_ca.delete", Target: id,
			Summary: map[string]any{"product_id": productID}}, EventManufacturerCAGone, id, map[string]string{"id": id, "product_id": productID})
	})
}

// ---- factory public keys ----

// DeviceKey is one device of a factory key upload.
type DeviceKey struct {
	Serial string
	// PublicKey is a PEM "PUBLIC KEY" (or a certificate whose key is taken).
	PublicKey string
}

// UploadedKey is the outcome for one device of an upload.
type UploadedKey struct {
	Serial      string `json:"serial"`
	DeviceID    string `json:"device_id"`
	Created     bool   `json:"created" doc:"The device was registered by this upload."`
	Fingerprint string `json:"fingerprint_sha256"`
	Algorithm   string `json:"algorithm"`
}

// MaxKeyUpload bounds one upload.
const MaxKeyUpload = 1000

// UploadDeviceKeys registers factory public keys for devices of a product,
// registering (manufactured) the devices that do not exist yet. The whole
// batch is stored or nothing is.
func (s *Service) UploadDeviceKeys(ctx context.Context, p *authz.Principal, tenantID, productID string, keys []DeviceKey) ([]UploadedKey, error) {
	if len(keys) == 0 || len(keys) > MaxKeyUpload {
		return nil, invalidField("devices", "send 1 to %d devices per upload (got %d)", MaxKeyUpload, len(keys))
	}
	type parsed struct {
		DeviceKey
		fp, alg string
		der     []byte
	}
	in := make([]parsed, len(keys))
	seenSerial, seenKey := map[string]bool{}, map[string]bool{}
	for i, k := range keys {
		field := fmt.Sprintf("devices[%d]", i)
		if err := checkSerial(k.Serial); err != nil {
			return nil, invalidField(field+".serial", "%v", err)
		}
		pub, err := parsePublicKeyPEM([]byte(k.PublicKey))
		if err != nil {
			return nil, invalidField(field+".public_key", "%v", err)
		}
		alg, err := KeyAlgorithm(pub)
		if err != nil {
			return nil, invalidField(field+".public_key", "%v", err)
		}
		der, _ := x509.MarshalPKIXPublicKey(pub)
		fp, _ := KeyFingerprint(pub)
		if seenSerial[k.Serial] {
			return nil, invalidField(field+".serial", "serial %q is listed twice", k.Serial)
		}
		if seenKey[fp] {
			return nil, invalidField(field+".public_key", "the same key is listed twice (serial %q)", k.Serial)
		}
		seenSerial[k.Serial], seenKey[fp] = true, true
		in[i] = parsed{DeviceKey: k, fp: fp, alg: alg, der: der}
	}
	out := make([]UploadedKey, len(in))
	actor := actorOf(p)
	err := s.st.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.GetProduct(ctx, tenantID, productID); err != nil {
			return orNotFound(err, "product", productID)
		}
		now := s.now()
		created := 0
		for i, k := range in {
			d, err := tx.FindDeviceBySerial(ctx, productID, k.Serial)
			switch {
			case errors.Is(err, store.ErrNotFound):
				d = &model.Device{ID: ids.New("dev"), TenantID: tenantID, ProductID: productID, Serial: k.Serial,
					State: model.StateManufactured, CreatedAt: now, UpdatedAt: now, Version: 1}
				if err := tx.CreateDevice(ctx, d); err != nil {
					return err
				}
				if err := s.emit(ctx, tx, tenantID, model.AuditEntry{Actor: actor, Action: "device.create", Target: d.ID, Summary: d},
					"device.created", d.ID, d); err != nil {
					return err
				}
				out[i].Created = true
				created++
			case err != nil:
				return err
			case d.TenantID != tenantID:
				return invalidField(fmt.Sprintf("devices[%d].serial", i), "serial %q of this product belongs to a device that was claimed into another tenant", k.Serial)
			}
			err = tx.CreateDevicePublicKey(ctx, &model.DevicePublicKey{Fingerprint: k.fp, TenantID: tenantID, DeviceID: d.ID,
				Algorithm: k.alg, CreatedAt: now, DER: k.der})
			if errors.Is(err, store.ErrConflict) {
				return refuse(KindConflict, ReasonKeyInUse, "devices[%d].public_key: this key (%s) is already registered for a device", i, k.fp)
			}
			if err != nil {
				return err
			}
			out[i] = UploadedKey{Serial: k.Serial, DeviceID: d.ID, Created: out[i].Created, Fingerprint: k.fp, Algorithm: k.alg}
		}
		return s.emit(ctx, tx, tenantID, model.AuditEntry{Actor: actor, Action: "device_keys.upload", Target: productID,
			Summary: map[string]any{"keys": len(in), "devices_created": created}}, EventDeviceKeysUploaded, productID,
			map[string]any{"product_id": productID, "keys": len(in), "devices_created": created})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func parsePublicKeyPEM(b []byte) (any, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("not PEM: send a \"PUBLIC KEY\" (SubjectPublicKeyInfo) or \"CERTIFICATE\" block")
	}
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return c.PublicKey, nil
	}
	return nil, fmt.Errorf("PEM block %q is neither a PUBLIC KEY nor a CERTIFICATE", block.Type)
}

// ---- claim codes ----

// Claim codes are 24 characters of Crockford base32 (shown in groups of
// four): 8 to find the record, 16 (80 bits) of secret. Only a SHA-256 of
// the normalised code is stored; it is compared in constant time.
const (
	claimLookupLen = 8
	claimSecretLen = 16
)

// FormatClaimCode prints a code for a label: upper case in groups of four.
func FormatClaimCode(code string) string {
	code = strings.ToUpper(code)
	var b strings.Builder
	for i := 0; i < len(code); i += 4 {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(code[i:min(i+4, len(code))])
	}
	return b.String()
}

// normalizeClaimCode accepts what a person types: any case, dashes and
// spaces, and the look-alikes I/L for 1 and O for 0.
func normalizeClaimCode(s string) (string, bool) {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r == '-' || r == ' ':
			continue
		case r == 'i' || r == 'l':
			r = '1'
		case r == 'o':
			r = '0'
		}
		if !strings.ContainsRune("0123456789abcdefghjkmnpqrstvwxyz", r) {
			return "", false
		}
		b.WriteRune(r)
	}
	out := b.String()
	return out, len(out) == claimLookupLen+claimSecretLen
}

// CreateClaimCode makes a new claim code for a device that is still
// manufactured (replacing an unused earlier one) and returns it: it is
// shown this once.
func (s *Service) CreateClaimCode(ctx context.Context, p *authz.Principal, tenantID, deviceID string) (string, *model.ClaimCode, error) {
	var code string
	var c *model.ClaimCode
	var err error
	// The lookup part is random; on the rare collision with another
	// device's code, draw again.
	for attempt := 0; attempt < 4; attempt++ {
		code = ids.Token(15)[:claimLookupLen+claimSecretLen]
		c = &model.ClaimCode{Lookup: code[:claimLookupLen], Hash: hashSecret(code), TenantID: tenantID, DeviceID: deviceID,
			CreatedAt: s.now(), CreatedBy: actorOf(p)}
		if err = s.putClaimCode(ctx, p, c); !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	if err != nil {
		return "", nil, err
	}
	return FormatClaimCode(code), c, nil
}

func (s *Service) putClaimCode(ctx context.Context, p *authz.Principal, c *model.ClaimCode) error {
	tenantID, deviceID := c.TenantID, c.DeviceID
	return s.st.Update(ctx, func(tx store.Tx) error {
		d, err := tx.GetDevice(ctx, tenantID, deviceID)
		if err != nil {
			return orNotFound(err, "device", deviceID)
		}
		if d.State != model.StateManufactured {
			return refuse(KindConflict, ReasonDeviceState, "device %s is %s: claim codes are for devices that are still manufactured (unowned)", deviceID, d.State)
		}
		if err := tx.PutClaimCode(ctx, c); err != nil {
			return err
		}
		return s.emit(ctx, tx, tenantID, model.AuditEntry{Actor: actorOf(p), Action: "claim_code.create", Target: deviceID},
			EventClaimCodeCreated, deviceID, map[string]string{"device_id": deviceID})
	})
}

// findClaimCode checks a presented code; the answer does not tell a wrong
// secret from an unknown code.
func (s *Service) findClaimCode(ctx context.Context, r store.Reader, presented string) (*model.ClaimCode, error) {
	bad := refuse(KindNotFound, ReasonBadClaimCode, "no device has this claim code; check it against the label (24 characters)")
	code, ok := normalizeClaimCode(presented)
	if !ok {
		return nil, bad
	}
	c, err := r.ClaimCodeByLookup(ctx, code[:claimLookupLen])
	if errors.Is(err, store.ErrNotFound) {
		return nil, bad
	}
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(hashSecret(code), c.Hash) != 1 {
		return nil, bad
	}
	return c, nil
}

// Claim moves the device with this claim code into tenantID (the
// claimer's) as claimed. The code can claim once; the device then enrolls
// with it. Both tenants get an audit record.
func (s *Service) Claim(ctx context.Context, p *authz.Principal, tenantID, presented string) (*model.Device, error) {
	var out *model.Device
	actor := actorOf(p)
	err := s.st.Update(ctx, func(tx store.Tx) error {
		c, err := s.findClaimCode(ctx, tx, presented)
		if err != nil {
			return err
		}
		if c.ClaimedAt != nil {
			return refuse(KindConflict, ReasonClaimCodeUsed, "this claim code was already used at %s; a claim code works once",
				c.ClaimedAt.Format(time.RFC3339))
		}
		d, err := tx.GetDevice(ctx, c.TenantID, c.DeviceID)
		if err != nil {
			return err
		}
		if d.State != model.StateManufactured {
			return refuse(KindConflict, ReasonDeviceState, "the device is %s, not manufactured: it cannot be claimed", d.State)
		}
		now := s.now()
		if err := tx.MarkClaimCodeClaimed(ctx, c.Lookup, tenantID, now); err != nil {
			if errors.Is(err, store.ErrStale) {
				return refuse(KindConflict, ReasonClaimCodeUsed, "this claim code was already used; a claim code works once")
			}
			return err
		}
		from := c.TenantID
		if from != tenantID {
			if err := tx.MoveDevice(ctx, from, tenantID, d.ID); err != nil {
				return err
			}
			if err := s.emit(ctx, tx, from, model.AuditEntry{Actor: actor, Action: "device.transfer_out", Target: d.ID,
				Summary: map[string]any{"serial": d.Serial, "to_tenant": tenantID, "reason": "claimed with its claim code"}},
				EventDeviceTransferred, d.ID, map[string]any{"device_id": d.ID, "serial": d.Serial, "reason": "claimed"}); err != nil {
				return err
			}
			d.TenantID = tenantID
		}
		if err := s.emit(ctx, tx, tenantID, model.AuditEntry{Actor: actor, Action: "device.claim", Target: d.ID,
			Summary: map[string]any{"serial": d.Serial, "product_id": d.ProductID, "from_tenant": from}},
			EventDeviceClaimed, d.ID, map[string]any{"device_id": d.ID, "serial": d.Serial, "product_id": d.ProductID}); err != nil {
			return err
		}
		if err := s.transition(ctx, tx, tenantID, d, model.StateClaimed, actor, "claimed with its claim code"); err != nil {
			return err
		}
		out, err = tx.GetDevice(ctx, tenantID, d.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.auth.forgetDevice(out.ID)
	return out, nil
}

// ---- bootstrap tokens ----

// Bootstrap tokens look like stb_<12-char prefix>_<32-char secret>: the
// prefix finds the record, a SHA-256 of the whole token is compared in
// constant time.
const bootstrapTag = "stb"

// BootstrapInput creates a bootstrap token.
type BootstrapInput struct {
	Name string
	// ProductID scopes the token: it then only enrolls (and may register)
	// devices of that product.
	ProductID string
	// TTL is how long it stays usable (default 1h, at most 7 days).
	TTL time.Duration
}

// CreateBootstrapToken makes a single-use enrollment token in tenantID and
// returns it (shown this once).
func (s *Service) CreateBootstrapToken(ctx context.Context, p *authz.Principal, tenantID string, in BootstrapInput) (string, *model.BootstrapToken, error) {
	if err := checkText("name", in.Name, 128); err != nil {
		return "", nil, err
	}
	if in.TTL == 0 {
		in.TTL = DefaultBootstrapTokenTTL
	}
	if in.TTL < time.Minute || in.TTL > MaxBootstrapTokenTTL {
		return "", nil, invalidField("ttl", "must be between 1m and %s (got %s)", MaxBootstrapTokenTTL, in.TTL)
	}
	prefix := ids.Token(8)[:12]
	secret := bootstrapTag + "_" + prefix + "_" + ids.Token(20)
	now := s.now()
	t := &model.BootstrapToken{ID: ids.New("btk"), TenantID: tenantID, Name: in.Name, Prefix: prefix, Hash: hashSecret(secret),
		ProductID: in.ProductID, CreatedAt: now, CreatedBy: actorOf(p), ExpiresAt: now.Add(in.TTL)}
	err := s.st.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateBootstrapToken(ctx, t); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return invalidField("product_id", "product %s does not exist in this tenant", in.ProductID)
			}
			return err
		}
		return s.emit(ctx, tx, tenantID, model.AuditEntry{Actor: actorOf(p), Action: "bootstrap_token.create", Target: t.ID,
			Summary: map[string]any{"name": t.Name, "product_id": t.ProductID, "expires_at": t.ExpiresAt}},
			EventBootstrapCreated, t.ID, t)
	})
	if err != nil {
		return "", nil, err
	}
	return secret, t, nil
}

func (s *Service) ListBootstrapTokens(ctx context.Context, tenantID string, o store.ListOptions) ([]model.BootstrapToken, string, error) {
	return s.st.ListBootstrapTokens(ctx, tenantID, o)
}

func (s *Service) RevokeBootstrapToken(ctx context.Context, p *authz.Principal, tenantID, id string) error {
	return s.st.Update(ctx, func(tx store.Tx) error {
		err := tx.RevokeBootstrapToken(ctx, tenantID, id, s.now())
		if errors.Is(err, store.ErrStale) {
			return refuse(KindConflict, ReasonConflict, "bootstrap token %s was already used or revoked", id)
		}
		if err != nil {
			return orNotFound(err, "bootstrap token", id)
		}
		return s.emit(ctx, tx, tenantID, model.AuditEntry{Actor: actorOf(p), Action: "bootstrap_token.revoke", Target: id},
			EventBootstrapRevoked, id, map[string]string{"id": id})
	})
}

// parseBootstrapToken returns the lookup prefix of a presented token.
func parseBootstrapToken(presented string) (string, bool) {
	parts := strings.Split(presented, "_")
	if len(parts) != 3 || parts[0] != bootstrapTag || len(parts[1]) != 12 || len(parts[2]) != 32 {
		return "", false
	}
	return parts[1], true
}

// ---- device tokens ----

// Device tokens look like sdt_<32 characters>; the device presents it as
// its MQTT password with its device ID as user name.
const deviceTokenTag = "sdt"

// CreateDeviceToken makes (or replaces) a device's token and returns it,
// shown this once.
func (s *Service) CreateDeviceToken(ctx context.Context, p *authz.Principal, tenantID, deviceID string) (string, *model.DeviceToken, error) {
	secret := deviceTokenTag + "_" + ids.Token(20)
	t := &model.DeviceToken{DeviceID: deviceID, TenantID: tenantID, Prefix: secret[:len(deviceTokenTag)+1+6],
		Hash: hashSecret(secret), CreatedAt: s.now(), CreatedBy: actorOf(p)}
	err := s.st.Update(ctx, func(tx store.Tx) error {
		d, err := tx.GetDevice(ctx, tenantID, deviceID)
		if err != nil {
			return orNotFound(err, "device", deviceID)
		}
		if d.State == model.StateDecommissioned {
			return refuse(KindConflict, ReasonDeviceState, "device %s is decommissioned", deviceID)
		}
		if err := tx.PutDeviceToken(ctx, t); err != nil {
			return err
		}
		return s.emit(ctx, tx, tenantID, model.AuditEntry{Actor: actorOf(p), Action: "device_token.create", Target: deviceID,
			Summary: map[string]string{"prefix": t.Prefix}}, EventDeviceTokenCreated, deviceID, map[string]string{"device_id": deviceID})
	})
	if err != nil {
		return "", nil, err
	}
	s.auth.forgetToken(deviceID)
	return secret, t, nil
}

// DeviceTokenInfo is the stored token of one of the tenant's devices.
func (s *Service) DeviceTokenInfo(ctx context.Context, tenantID, deviceID string) (*model.DeviceToken, error) {
	if _, err := s.st.GetDevice(ctx, tenantID, deviceID); err != nil {
		return nil, orNotFound(err, "device", deviceID)
	}
	t, err := s.st.DeviceToken(ctx, deviceID)
	if err != nil || t.TenantID != tenantID {
		return nil, notFound("token of device", deviceID)
	}
	return t, nil
}

func (s *Service) RevokeDeviceToken(ctx context.Context, p *authz.Principal, tenantID, deviceID string) error {
	err := s.st.Update(ctx, func(tx store.Tx) error {
		if err := tx.RevokeDeviceToken(ctx, tenantID, deviceID, s.now()); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return refuse(KindNotFound, ReasonNotFound, "device %s has no active token", deviceID)
			}
			return err
		}
		return s.emit(ctx, tx, tenantID, model.AuditEntry{Actor: actorOf(p), Action: "device_token.revoke", Target: deviceID},
			EventDeviceTokenRevoked, deviceID, map[string]string{"device_id": deviceID})
	})
	if err == nil {
		s.auth.forgetToken(deviceID)
		s.auth.cutOff(CutOff{TenantID: tenantID, DeviceID: deviceID, Method: MethodToken, Reason: "device token revoked"})
	}
	return err
}

// ---- certificates ----

// ListCertificates lists a device's certificates, newest first.
func (s *Service) ListCertificates(ctx context.Context, tenantID, deviceID string, o store.ListOptions) ([]model.Certificate, string, error) {
	if _, err := s.st.GetDevice(ctx, tenantID, deviceID); err != nil {
		return nil, "", orNotFound(err, "device", deviceID)
	}
	return s.st.ListCertificates(ctx, tenantID, deviceID, o)
}

// GetCertificate is one of the tenant's certificates.
func (s *Service) GetCertificate(ctx context.Context, tenantID, serial string) (*model.Certificate, error) {
	c, err := s.st.GetCertificate(ctx, tenantID, strings.ToLower(serial))
	return c, orNotFound(err, "certificate", serial)
}
