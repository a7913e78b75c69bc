package identity

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// Credential is what a device presented to enroll: a TLS client chain
// (factory certificate or a key its vendor uploaded), a bootstrap token,
// or its serial and claim code. When several are present the token wins,
// then the claim code, then the client certificate.
type Credential struct {
	PeerCerts      []*x509.Certificate
	BootstrapToken string
	ClaimSerial    string
	ClaimCode      string
}

// Enrolled is the outcome of an enrollment or renewal.
type Enrolled struct {
	Cert   *x509.Certificate
	Record *model.Certificate
	Device *model.Device
}

// enrollableStates may get a certificate. Quarantined and end-of-support
// devices keep their identity (they still receive updates).
func enrollable(s model.State) bool {
	switch s {
	case model.StateClaimed, model.StateProvisioned, model.StateActive, model.StateQuarantined, model.StateEndOfSupport:
		return true
	}
	return false
}

// plan is an authenticated enrollment waiting to be committed.
type plan struct {
	method   model.EnrollMethod
	tenantID string
	deviceID string
	// create is a device a product-scoped bootstrap token registers.
	create *model.Device
	// allowManufactured lets a bootstrap token (made by the owner) move a
	// manufactured device through claimed.
	allowManufactured bool
	predecessor       string
	// consume spends the credential inside the transaction.
	consume func(ctx context.Context, tx store.Tx) error
	actor   string
	detail  map[string]any
	// mudURL is the MUD URL (RFC 8520 §10) of the factory certificate the
	// device presented, if any.
	mudURL string
}

// Enroll authenticates cred, checks the CSR and issues the device its
// operational certificate (RFC 7030 simpleenroll). A refusal is an *Error
// and changes nothing: the credential stays unused.
func (s *Service) Enroll(ctx context.Context, cred Credential, csrBody []byte) (*Enrolled, error) {
	if cred.BootstrapToken == "" && cred.ClaimCode == "" && len(cred.PeerCerts) == 0 {
		return nil, refuse(KindUnauthenticated, ReasonNoCredential, "no credential: present a factory client certificate, "+
			"\"Authorization: Bearer stb_…\" (bootstrap token) or \"Authorization: Basic <serial:claim code>\"")
	}
	csr, err := ParseCSR(csrBody)
	if err != nil {
		return nil, &Error{Kind: KindInvalid, Reason: ReasonBadCSR, Detail: err.Error()}
	}
	var pl *plan
	switch {
	case cred.BootstrapToken != "":
		pl, err = s.planBootstrap(ctx, cred.BootstrapToken, csr)
	case cred.ClaimCode != "":
		pl, err = s.planClaimCode(ctx, cred.ClaimSerial, cred.ClaimCode)
	default:
		pl, err = s.planFactory(ctx, cred.PeerCerts)
	}
	if err != nil {
		return nil, err
	}
	return s.issue(ctx, pl, csr)
}

// Renew issues a successor of the operational certificate the device
// presents (RFC 7030 simplereenroll), for the same or a new key. The old
// certificate stays valid until it expires or is revoked; the records name
// each other.
func (s *Service) Renew(ctx context.Context, peer []*x509.Certificate, csrBody []byte) (*Enrolled, error) {
	if len(peer) == 0 {
		return nil, refuse(KindUnauthenticated, ReasonNoCredential,
			"no client certificate: renewal needs the current operational certificate over mutual TLS")
	}
	csr, err := ParseCSR(csrBody)
	if err != nil {
		return nil, &Error{Kind: KindInvalid, Reason: ReasonBadCSR, Detail: err.Error()}
	}
	rec, err := s.checkOperational(ctx, peer)
	if err != nil {
		return nil, err
	}
	serial := rec.Serial
	pl := &plan{method: model.EnrollRenewal, tenantID: rec.TenantID, deviceID: rec.DeviceID, predecessor: serial,
		actor: "device:" + rec.DeviceID, detail: map[string]any{"predecessor": serial},
		consume: func(ctx context.Context, tx store.Tx) error {
			cur, err := tx.GetCertificate(ctx, rec.TenantID, serial)
			if err != nil {
				return err
			}
			if cur.Revoked() {
				return refuse(KindUnauthenticated, ReasonCertRevoked, "certificate %s was revoked (%s)", serial, cur.RevocationReason)
			}
			return nil
		}}
	return s.issue(ctx, pl, csr)
}

// checkOperational verifies a platform-issued client certificate and
// returns its record: issued by the platform CA, not expired, not revoked.
func (s *Service) checkOperational(ctx context.Context, peer []*x509.Certificate) (*model.Certificate, error) {
	leaf := peer[0]
	now := s.opt.Now()
	opts := s.ca.VerifyOptions(now)
	if len(peer) > 1 {
		opts.Intermediates = opts.Intermediates.Clone() // never add a client's certificates to the CA's pool
		for _, c := range peer[1:] {
			opts.Intermediates.AddCert(c)
		}
	}
	if _, err := leaf.Verify(opts); err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return nil, refuse(KindUnauthenticated, ReasonCertExpired, "the client certificate %s expired at %s; "+
				"enroll again (simpleenroll) with a factory certificate, claim code or bootstrap token",
				SerialHex(leaf.SerialNumber), leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		return nil, refuse(KindUnauthenticated, ReasonUnknownCA, "the client certificate was not issued by this platform's CA: %v", err)
	}
	serial := SerialHex(leaf.SerialNumber)
	rec, err := s.st.LocateCertificate(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refuse(KindUnauthenticated, ReasonUnknownCert, "certificate %s has no record on this platform", serial)
	}
	if err != nil {
		return nil, err
	}
	if rec.Revoked() {
		return nil, refuse(KindUnauthenticated, ReasonCertRevoked, "certificate %s was revoked at %s (%s)", serial,
			rec.RevokedAt.Format(time.RFC3339), rec.RevocationReason)
	}
	return rec, nil
}

func (s *Service) planBootstrap(ctx context.Context, presented string, csr *x509.CertificateRequest) (*plan, error) {
	bad := refuse(KindUnauthenticated, ReasonBadToken, "the bootstrap token is not valid (unknown or malformed); create a new one")
	prefix, ok := parseBootstrapToken(presented)
	if !ok {
		return nil, bad
	}
	t, err := s.st.BootstrapTokenByPrefix(ctx, prefix)
	if errors.Is(err, store.ErrNotFound) {
		return nil, bad
	}
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(hashSecret(presented), t.Hash) != 1 {
		return nil, bad
	}
	switch {
	case t.RevokedAt != nil:
		return nil, refuse(KindUnauthenticated, ReasonTokenRevoked, "bootstrap token %s was revoked", t.ID)
	case t.UsedAt != nil:
		return nil, refuse(KindUnauthenticated, ReasonTokenUsed, "bootstrap token %s was already used (at %s); a bootstrap token enrolls one device once",
			t.ID, t.UsedAt.Format(time.RFC3339))
	case !s.opt.Now().Before(t.ExpiresAt):
		return nil, refuse(KindUnauthenticated, ReasonTokenExpired, "bootstrap token %s expired at %s", t.ID, t.ExpiresAt.Format(time.RFC3339))
	}
	serial := csr.Subject.SerialNumber
	if serial == "" {
		serial = csr.Subject.CommonName
	}
	if serial == "" {
		return nil, refuse(KindInvalid, ReasonBadCSR, "CSR: name the device's serial number in the subject (serialNumber, or CN) "+
			"so the bootstrap token can match or register the device")
	}
	if err := checkSerial(serial); err != nil {
		return nil, refuse(KindInvalid, ReasonBadCSR, "CSR: subject serial %q %v", serial, err)
	}
	pl := &plan{method: model.EnrollBootstrapToken, tenantID: t.TenantID, allowManufactured: true,
		actor: "bootstrap-token:" + t.ID, detail: map[string]any{"bootstrap_token": t.ID}}
	if t.ProductID != "" {
		d, err := s.st.FindDeviceBySerial(ctx, t.ProductID, serial)
		switch {
		case errors.Is(err, store.ErrNotFound):
			now := s.now()
			// Registered and enrolled in one step: it starts out provisioned.
			pl.create = &model.Device{ID: ids.New("dev"), TenantID: t.TenantID, ProductID: t.ProductID, Serial: serial,
				State: model.StateProvisioned, CreatedAt: now, UpdatedAt: now, Version: 1}
			pl.deviceID = pl.create.ID
		case err != nil:
			return nil, err
		case d.TenantID != t.TenantID:
			return nil, refuse(KindForbidden, ReasonUnknownDevice, "the device with serial %q of this product belongs to another tenant", serial)
		default:
			pl.deviceID = d.ID
		}
	} else {
		ds, err := s.st.DevicesBySerial(ctx, t.TenantID, serial)
		if err != nil {
			return nil, err
		}
		switch len(ds) {
		case 0:
			return nil, refuse(KindForbidden, ReasonUnknownDevice, "no device with serial %q in this tenant; register it first, "+
				"or use a bootstrap token scoped to a product so enrollment registers it", serial)
		case 1:
			pl.deviceID = ds[0].ID
		default:
			return nil, refuse(KindConflict, ReasonAmbiguousSerial, "%d devices of different products have serial %q; "+
				"use a bootstrap token scoped to the product", len(ds), serial)
		}
	}
	id, tenant := t.ID, t.TenantID
	pl.consume = func(ctx context.Context, tx store.Tx) error {
		if err := tx.UseBootstrapToken(ctx, tenant, id, pl.deviceID, s.now()); err != nil {
			if errors.Is(err, store.ErrStale) {
				return refuse(KindUnauthenticated, ReasonTokenUsed, "bootstrap token %s was already used or revoked", id)
			}
			return err
		}
		return nil
	}
	return pl, nil
}

func (s *Service) planClaimCode(ctx context.Context, serial, code string) (*plan, error) {
	c, err := s.findClaimCode(ctx, s.st, code)
	if err != nil {
		if e, ok := AsError(err); ok && e.Kind == KindNotFound {
			e.Kind = KindUnauthenticated
		}
		return nil, err
	}
	d, err := s.st.GetDevice(ctx, c.TenantID, c.DeviceID)
	if err != nil {
		return nil, err
	}
	if serial != "" && subtle.ConstantTimeCompare([]byte(serial), []byte(d.Serial)) != 1 {
		return nil, refuse(KindUnauthenticated, ReasonSerialMismatch, "the claim code does not belong to serial %q", serial)
	}
	if c.ClaimedAt == nil {
		return nil, refuse(KindForbidden, ReasonNotClaimed, "the device has not been claimed yet: its owner claims it with this code "+
			"first (POST /api/v1/claims), then the device enrolls")
	}
	if c.EnrolledAt != nil {
		return nil, refuse(KindUnauthenticated, ReasonClaimCodeUsed, "this claim code was already used to enroll (at %s); "+
			"renew with the certificate it gave, or ask the owner for a bootstrap token", c.EnrolledAt.Format(time.RFC3339))
	}
	lookup, tenant := c.Lookup, c.TenantID
	return &plan{method: model.EnrollClaimCode, tenantID: c.TenantID, deviceID: c.DeviceID, actor: "device:" + c.DeviceID,
		consume: func(ctx context.Context, tx store.Tx) error {
			if err := tx.MarkClaimCodeEnrolled(ctx, tenant, lookup, s.now()); err != nil {
				if errors.Is(err, store.ErrStale) || errors.Is(err, store.ErrNotFound) {
					return refuse(KindUnauthenticated, ReasonClaimCodeUsed, "this claim code was already used to enroll")
				}
				return err
			}
			return nil
		}}, nil
}

// planFactory finds the device a factory client certificate (or a client
// certificate carrying a vendor-uploaded key) belongs to.
func (s *Service) planFactory(ctx context.Context, chain []*x509.Certificate) (*plan, error) {
	leaf := chain[0]
	now := s.opt.Now()
	// An operational certificate of this platform does not enroll again.
	opts := s.ca.VerifyOptions(leaf.NotBefore.Add(time.Second))
	if _, err := leaf.Verify(opts); err == nil {
		return nil, refuse(KindForbidden, ReasonOperationalCert, "this is an operational certificate of this platform; "+
			"renew it with /.well-known/est/simplereenroll")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	seen := map[string]bool{}
	var expired, noDevice error
	for _, c := range chain {
		is := sha256.Sum256(c.RawIssuer)
		cas, err := s.st.FindManufacturerCAs(ctx, hex.EncodeToString(c.AuthorityKeyId), hex.EncodeToString(is[:]))
		if err != nil {
			return nil, err
		}
		for _, mca := range cas {
			if seen[mca.ID] {
				continue
			}
			seen[mca.ID] = true
			root, err := x509.ParseCertificate(mca.DER)
			if err != nil {
				continue
			}
			roots := x509.NewCertPool()
			roots.AddCert(root)
			_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			if err != nil {
				var inv x509.CertificateInvalidError
				if errors.As(err, &inv) && inv.Reason == x509.Expired {
					expired = refuse(KindUnauthenticated, ReasonCertExpired, "the factory certificate (or a CA of its chain) has expired "+
						"(certificate valid until %s)", leaf.NotAfter.UTC().Format(time.RFC3339))
				}
				continue
			}
			serial := leaf.Subject.SerialNumber
			if serial == "" {
				serial = leaf.Subject.CommonName
			}
			d, err := s.st.FindDeviceBySerial(ctx, mca.ProductID, serial)
			if errors.Is(err, store.ErrNotFound) {
				noDevice = refuse(KindForbidden, ReasonUnknownDevice, "the factory certificate is valid, but no device with serial %q "+
					"is registered for its product; the vendor registers it first", serial)
				continue
			}
			if err != nil {
				return nil, err
			}
			return &plan{method: model.EnrollFactory, tenantID: d.TenantID, deviceID: d.ID, actor: "device:" + d.ID,
				detail:  map[string]any{"manufacturer_ca": mca.ID, "factory_serial": SerialHex(leaf.SerialNumber)},
				consume: func(context.Context, store.Tx) error { return nil }, mudURL: MUDURL(leaf)}, nil
		}
	}
	if expired != nil {
		return nil, expired
	}
	if noDevice != nil {
		return nil, noDevice
	}
	// A vendor-uploaded key: the TLS handshake proved the device holds it.
	if fp, err := KeyFingerprint(leaf.PublicKey); err == nil {
		k, err := s.st.FindDevicePublicKey(ctx, fp)
		if err == nil {
			d, err := s.st.LocateDevice(ctx, k.DeviceID)
			if err != nil {
				return nil, err
			}
			return &plan{method: model.EnrollPublicKey, tenantID: d.TenantID, deviceID: d.ID, actor: "device:" + d.ID,
				detail:  map[string]any{"public_key_sha256": fp},
				consume: func(context.Context, store.Tx) error { return nil }}, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	return nil, refuse(KindUnauthenticated, ReasonUnknownCA, "the client certificate (issuer %q) does not chain to a manufacturer CA "+
		"registered on this platform, and its key is not a registered device key", leaf.Issuer.String())
}

// issue signs the certificate, then in one transaction spends the
// credential, registers the device if needed, checks its state and key,
// stores the record, moves a claimed device to provisioned, and writes one
// audit record for all of it plus an event per change (device.created,
// device.state_changed, certificate.issued).
func (s *Service) issue(ctx context.Context, pl *plan, csr *x509.CertificateRequest) (*Enrolled, error) {
	kfp, err := KeyFingerprint(csr.PublicKey)
	if err != nil {
		return nil, refuse(KindInvalid, ReasonBadCSR, "CSR: %v", err)
	}
	var prod *model.Product
	if pl.create != nil {
		if prod, err = s.st.GetProduct(ctx, pl.tenantID, pl.create.ProductID); err != nil {
			return nil, err
		}
	} else {
		if prod, err = s.st.DeviceProduct(ctx, pl.tenantID, pl.deviceID); err != nil {
			return nil, orNotFound(err, "device", pl.deviceID)
		}
	}
	// The product's MUD URL, else the one of the factory certificate.
	mud := prod.MUDURL
	if mud == "" {
		mud = pl.mudURL
	}
	// Signing is the expensive part; it happens before the transaction so
	// the database is held only for the writes. A certificate whose
	// transaction fails is never handed out.
	cert, err := s.ca.IssueDevice(DeviceCertRequest{DeviceID: pl.deviceID, PublicKey: csr.PublicKey, MUDURL: mud,
		Validity: s.opt.CertValidity, CRLURL: s.opt.CRLURL, Now: s.opt.Now()})
	if err != nil {
		return nil, fmt.Errorf("issuing the certificate: %w", err)
	}
	now := s.now()
	rec, err := CertRecord(cert, pl.tenantID, pl.deviceID, pl.method, now)
	if err != nil {
		return nil, err
	}
	rec.Predecessor = pl.predecessor
	var dev *model.Device
	err = s.st.Update(ctx, func(tx store.Tx) error {
		if err := pl.consume(ctx, tx); err != nil {
			return err
		}
		// One audit record for the whole enrollment: the device it
		// registered, the lifecycle moves and the certificate.
		summary := map[string]any{"serial": rec.Serial, "method": rec.Method, "not_after": rec.NotAfter,
			"fingerprint_sha256": rec.Fingerprint, "key_algorithm": rec.KeyAlgorithm}
		for k, v := range pl.detail {
			summary[k] = v
		}
		var d *model.Device
		if pl.create != nil {
			d = pl.create
			if err := tx.CreateDevice(ctx, d); err != nil {
				return err
			}
			if err := s.emit(ctx, tx, pl.tenantID, model.AuditEntry{}, "device.created", d.ID, d); err != nil {
				return err
			}
			summary["device_created"] = map[string]any{"product_id": d.ProductID, "serial": d.Serial, "state": d.State}
		} else {
			var err error
			if d, err = tx.GetDevice(ctx, pl.tenantID, pl.deviceID); err != nil {
				return err
			}
		}
		var moves []map[string]model.State
		move := func(to model.State, reason string) error {
			tr, err := s.move(ctx, tx, pl.tenantID, d, to, pl.actor, reason)
			if err == nil {
				moves = append(moves, map[string]model.State{"from": tr.From, "to": tr.To})
			}
			return err
		}
		if d.State == model.StateManufactured && pl.allowManufactured {
			if err := move(model.StateClaimed, "enrolled with a bootstrap token"); err != nil {
				return err
			}
		}
		if !enrollable(d.State) {
			if d.State == model.StateManufactured {
				return refuse(KindForbidden, ReasonNotClaimed, "device %s is manufactured and not claimed yet: it enrolls once an owner claims it", d.ID)
			}
			return refuse(KindForbidden, ReasonDeviceState, "device %s is %s: it may not enroll or renew in that state", d.ID, d.State)
		}
		others, err := tx.CertificatesByKey(ctx, kfp)
		if err != nil {
			return err
		}
		for _, o := range others {
			if o.DeviceID != d.ID {
				return refuse(KindConflict, ReasonKeyInUse, "this public key is already certified for another device; generate a new key")
			}
		}
		if err := tx.CreateCertificate(ctx, rec); err != nil {
			return err
		}
		if pl.predecessor != "" {
			if err := tx.SetCertificateSuccessor(ctx, pl.tenantID, pl.predecessor, rec.Serial); err != nil {
				return err
			}
		}
		if d.State == model.StateClaimed {
			if err := move(model.StateProvisioned, "enrolled: certificate "+rec.Serial); err != nil {
				return err
			}
		}
		if len(moves) > 0 {
			summary["transitions"] = moves
		}
		if err := s.emit(ctx, tx, pl.tenantID, model.AuditEntry{Actor: pl.actor, Action: "certificate.issue", Target: d.ID, Summary: summary},
			EventCertificateIssued, d.ID, map[string]any{"device_id": d.ID, "serial": rec.Serial, "method": rec.Method,
				"not_after": rec.NotAfter, "predecessor": rec.Predecessor}); err != nil {
			return err
		}
		dev = d
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("device certificate issued", "tenant", pl.tenantID, "device", pl.deviceID, "serial", rec.Serial,
		"method", rec.Method, "not_after", rec.NotAfter)
	if hook := s.mudHook; hook != nil && mud != "" {
		hook(prod.TenantID, prod.ID, mud)
	}
	return &Enrolled{Cert: cert, Record: rec, Device: dev}, nil
}
