package sqlstore

import (
	"context"
	"database/sql"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

var (
	_ store.IdentityReader = reader{}
	_ store.IdentityWriter = (*tx)(nil)
)

// ---- certificates ----

const certCols = `serial, tenant_id, device_id, subject, fingerprint, key_fingerprint, key_algorithm, method,
	not_before, not_after, issued_at, predecessor, successor, revoked_at, revocation_reason, revoked_by, der`

func scanCert(s scanner) (*model.Certificate, error) {
	var c model.Certificate
	var nb, na, issued, revoked int64
	if err := s.Scan(&c.Serial, &c.TenantID, &c.DeviceID, &c.Subject, &c.Fingerprint, &c.KeyFingerprint, &c.KeyAlgorithm,
		&c.Method, &nb, &na, &issued, &c.Predecessor, &c.Successor, &revoked, &c.RevocationReason, &c.RevokedBy, &c.DER); err != nil {
		return nil, err
	}
	c.NotBefore, c.NotAfter, c.IssuedAt = fromMicro(nb), fromMicro(na), fromMicro(issued)
	c.RevokedAt = ptrFromMicro(revoked)
	return &c, nil
}

func (r reader) certs(ctx context.Context, q string, args ...any) ([]model.Certificate, error) {
	rows, err := r.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []model.Certificate
	for rows.Next() {
		c, err := scanCert(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *c)
	}
	return out, rows.Err()
}

func (r reader) GetCertificate(ctx context.Context, tenantID, serial string) (*model.Certificate, error) {
	c, err := scanCert(r.row(ctx, `SELECT `+certCols+` FROM device_certificates WHERE tenant_id = ? AND serial = ?`, tenantID, serial))
	return c, mapErr(err, "")
}

func (r reader) LocateCertificate(ctx context.Context, serial string) (*model.Certificate, error) {
	c, err := scanCert(r.row(ctx, `SELECT `+certCols+` FROM device_certificates WHERE serial = ?`, serial))
	return c, mapErr(err, "")
}

// ListCertificates pages newest first: by issue time, then serial.
func (r reader) ListCertificates(ctx context.Context, tenantID, deviceID string, o ListOptions) ([]model.Certificate, string, error) {
	c, err := decodeCursorOf(o.Cursor, "device_certificates")
	if err != nil {
		return nil, "", err
	}
	limit := clampLimit(o.Limit, 100, 1000)
	q := `SELECT ` + certCols + ` FROM device_certificates WHERE tenant_id = ? AND device_id = ?`
	args := []any{tenantID, deviceID}
	if c != nil {
		q += ` AND (issued_at < ? OR (issued_at = ? AND serial < ?))`
		args = append(args, c.N, c.N, c.I)
	}
	q += ` ORDER BY issued_at DESC, serial DESC LIMIT ?`
	out, err := r.certs(ctx, q, append(args, limit+1)...)
	if err != nil {
		return nil, "", err
	}
	if len(out) <= limit {
		return out, "", nil
	}
	out = out[:limit]
	last := out[limit-1]
	return out, encodeCursor(cursor{T: "device_certificates", D: true, N: toMicro(last.IssuedAt), I: last.Serial}), nil
}

func (r reader) RevokedCertificates(ctx context.Context, notAfter time.Time) ([]model.Certificate, error) {
	return r.certs(ctx, `SELECT `+certCols+` FROM device_certificates WHERE revoked_at > 0 AND not_after >= ? ORDER BY serial`,
		toMicro(notAfter))
}

func (r reader) CertificatesByKey(ctx context.Context, keyFingerprint string) ([]model.Certificate, error) {
	return r.certs(ctx, `SELECT `+certCols+` FROM device_certificates WHERE key_fingerprint = ? ORDER BY serial`, keyFingerprint)
}

// CreateCertificate stores c only if its device is in its tenant (one
// statement: this is on every enrollment's path).
func (t *tx) CreateCertificate(ctx context.Context, c *model.Certificate) error {
	res, err := t.exec(ctx, `INSERT INTO device_certificates (`+certCols+`)
		SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
		WHERE EXISTS (SELECT 1 FROM devices WHERE tenant_id = ? AND id = ?)`,
		c.Serial, c.TenantID, c.DeviceID, c.Subject, c.Fingerprint, c.KeyFingerprint, c.KeyAlgorithm, string(c.Method),
		toMicro(c.NotBefore), toMicro(c.NotAfter), toMicro(c.IssuedAt), c.Predecessor, c.Successor, ptrMicro(c.RevokedAt),
		string(c.RevocationReason), c.RevokedBy, c.DER, c.TenantID, c.DeviceID)
	if err != nil {
		return mapErr(err, "certificate "+c.Serial)
	}
	return mustAffect(res)
}

func (t *tx) RevokeCertificate(ctx context.Context, tenantID, serial string, at time.Time, reason model.RevocationReason, by string) error {
	res, err := t.exec(ctx, `UPDATE device_certificates SET revoked_at = ?, revocation_reason = ?, revoked_by = ?
		WHERE tenant_id = ? AND serial = ? AND revoked_at = 0`, toMicro(at), string(reason), by, tenantID, serial)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return err
	}
	if _, err := t.GetCertificate(ctx, tenantID, serial); err != nil {
		return err
	}
	return store.ErrStale
}

func (t *tx) SetCertificateSuccessor(ctx context.Context, tenantID, serial, successor string) error {
	res, err := t.exec(ctx, `UPDATE device_certificates SET successor = ? WHERE tenant_id = ? AND serial = ?`, successor, tenantID, serial)
	if err != nil {
		return err
	}
	return mustAffect(res)
}

// ---- devices across tenants ----

// ownsDevice is nil when the tenant has the device, ErrNotFound otherwise:
// identity rows are only ever attached to a device of the writing tenant.
func (t *tx) ownsDevice(ctx context.Context, tenantID, deviceID string) error {
	var one int
	err := t.row(ctx, `SELECT 1 FROM devices WHERE tenant_id = ? AND id = ?`, tenantID, deviceID).Scan(&one)
	return mapErr(err, "")
}

func (r reader) LocateDevice(ctx context.Context, deviceID string) (*model.Device, error) {
	d, err := scanDevice(r.row(ctx, `SELECT `+deviceCols+` FROM devices d WHERE d.id = ?`, deviceID))
	return d, mapErr(err, "")
}

func (r reader) FindDeviceBySerial(ctx context.Context, productID, serial string) (*model.Device, error) {
	d, err := scanDevice(r.row(ctx, `SELECT `+deviceCols+` FROM devices d WHERE d.product_id = ? AND d.serial = ?`, productID, serial))
	return d, mapErr(err, "")
}

func (r reader) DevicesBySerial(ctx context.Context, tenantID, serial string) ([]model.Device, error) {
	rows, err := r.query(ctx, `SELECT `+deviceCols+` FROM devices d WHERE d.tenant_id = ? AND d.serial = ? ORDER BY d.id`, tenantID, serial)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []model.Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *d)
	}
	return out, rows.Err()
}

func (r reader) DeviceProduct(ctx context.Context, tenantID, deviceID string) (*model.Product, error) {
	p, err := scanProduct(r.row(ctx, `SELECT p.id, p.tenant_id, p.vendor, p.model, p.hardware_revision, p.end_of_support, p.mud_url,
		p.created_at, p.updated_at FROM devices d JOIN products p ON p.id = d.product_id WHERE d.tenant_id = ? AND d.id = ?`,
		tenantID, deviceID))
	return p, mapErr(err, "")
}

// MoveDevice re-homes a device and everything identity keeps about it. The
// vendor's groups and twin are not the new owner's, so they are dropped.
func (t *tx) MoveDevice(ctx context.Context, fromTenant, toTenant, deviceID string) error {
	res, err := t.exec(ctx, `UPDATE devices SET tenant_id = ?, version = version + 1 WHERE tenant_id = ? AND id = ?`,
		toTenant, fromTenant, deviceID)
	if err != nil {
		return mapErr(err, "")
	}
	if err := mustAffect(res); err != nil {
		return err
	}
	for _, q := range []string{
		`UPDATE device_tags SET tenant_id = ? WHERE tenant_id = ? AND device_id = ?`,
		`UPDATE device_attrs SET tenant_id = ? WHERE tenant_id = ? AND device_id = ?`,
		`UPDATE device_certificates SET tenant_id = ? WHERE tenant_id = ? AND device_id = ?`,
		`UPDATE device_public_keys SET tenant_id = ? WHERE tenant_id = ? AND device_id = ?`,
		`UPDATE claim_codes SET tenant_id = ? WHERE tenant_id = ? AND device_id = ?`,
		`UPDATE device_tokens SET tenant_id = ? WHERE tenant_id = ? AND device_id = ?`,
	} {
		if _, err := t.exec(ctx, q, toTenant, fromTenant, deviceID); err != nil {
			return err
		}
	}
	if _, err := t.exec(ctx, `DELETE FROM group_members WHERE tenant_id = ? AND device_id = ?`, fromTenant, deviceID); err != nil {
		return err
	}
	// The twin is the old owner's wish list, not the new owner's: it is
	// dropped (its row would otherwise keep the new owner from writing one).
	// What detection learned is the device's behaviour under the old owner:
	// the new owner's detection learns afresh. Commands and telemetry stay
	// with the tenant they belong to.
	for _, q := range []string{
		`DELETE FROM twins WHERE tenant_id = ? AND device_id = ?`,
		`DELETE FROM detection_baselines WHERE tenant_id = ? AND device_id = ?`,
	} {
		if _, err := t.exec(ctx, q, fromTenant, deviceID); err != nil {
			return err
		}
	}
	return nil
}

// ---- manufacturer CAs ----

const mcaCols = `id, tenant_id, product_id, name, subject, subject_key_id, subject_hash, fingerprint, not_before, not_after,
	created_at, created_by, der`

func scanMCA(s scanner) (*model.ManufacturerCA, error) {
	var c model.ManufacturerCA
	var nb, na, created int64
	if err := s.Scan(&c.ID, &c.TenantID, &c.ProductID, &c.Name, &c.Subject, &c.SubjectKeyID, &c.SubjectHash, &c.Fingerprint,
		&nb, &na, &created, &c.CreatedBy, &c.DER); err != nil {
		return nil, err
	}
	c.NotBefore, c.NotAfter, c.CreatedAt = fromMicro(nb), fromMicro(na), fromMicro(created)
	return &c, nil
}

func (r reader) mcas(ctx context.Context, q string, args ...any) ([]model.ManufacturerCA, error) {
	rows, err := r.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []model.ManufacturerCA
	for rows.Next() {
		c, err := scanMCA(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *c)
	}
	return out, rows.Err()
}

func (r reader) GetManufacturerCA(ctx context.Context, tenantID, id string) (*model.ManufacturerCA, error) {
	c, err := scanMCA(r.row(ctx, `SELECT `+mcaCols+` FROM manufacturer_cas WHERE tenant_id = ? AND id = ?`, tenantID, id))
	return c, mapErr(err, "")
}

func (r reader) ListManufacturerCAs(ctx context.Context, tenantID, productID string) ([]model.ManufacturerCA, error) {
	return r.mcas(ctx, `SELECT `+mcaCols+` FROM manufacturer_cas WHERE tenant_id = ? AND product_id = ? ORDER BY id`, tenantID, productID)
}

func (r reader) FindManufacturerCAs(ctx context.Context, subjectKeyID, subjectHash string) ([]model.ManufacturerCA, error) {
	if subjectKeyID == "" && subjectHash == "" {
		return nil, nil
	}
	return r.mcas(ctx, `SELECT `+mcaCols+` FROM manufacturer_cas WHERE (subject_key_id = ? AND subject_key_id <> '')
		OR subject_hash = ? ORDER BY id`, subjectKeyID, subjectHash)
}

func (t *tx) CreateManufacturerCA(ctx context.Context, c *model.ManufacturerCA) error {
	if _, err := t.GetProduct(ctx, c.TenantID, c.ProductID); err != nil {
		return err
	}
	_, err := t.exec(ctx, `INSERT INTO manufacturer_cas (`+mcaCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.TenantID, c.ProductID, c.Name, c.Subject, c.SubjectKeyID, c.SubjectHash, c.Fingerprint,
		toMicro(c.NotBefore), toMicro(c.NotAfter), toMicro(c.CreatedAt), c.CreatedBy, c.DER)
	return mapErr(err, "manufacturer CA "+c.Fingerprint+" for this product")
}

func (t *tx) DeleteManufacturerCA(ctx context.Context, tenantID, productID, id string) error {
	res, err := t.exec(ctx, `DELETE FROM manufacturer_cas WHERE tenant_id = ? AND product_id = ? AND id = ?`, tenantID, productID, id)
	if err != nil {
		return err
	}
	return mustAffect(res)
}

// ---- factory public keys ----

func (r reader) FindDevicePublicKey(ctx context.Context, fingerprint string) (*model.DevicePublicKey, error) {
	var k model.DevicePublicKey
	var created int64
	err := r.row(ctx, `SELECT fingerprint, tenant_id, device_id, algorithm, created_at, der FROM device_public_keys WHERE fingerprint = ?`,
		fingerprint).Scan(&k.Fingerprint, &k.TenantID, &k.DeviceID, &k.Algorithm, &created, &k.DER)
	if err != nil {
		return nil, mapErr(err, "")
	}
	k.CreatedAt = fromMicro(created)
	return &k, nil
}

func (t *tx) CreateDevicePublicKey(ctx context.Context, k *model.DevicePublicKey) error {
	if err := t.ownsDevice(ctx, k.TenantID, k.DeviceID); err != nil {
		return err
	}
	_, err := t.exec(ctx, `INSERT INTO device_public_keys (fingerprint, tenant_id, device_id, algorithm, created_at, der)
		VALUES (?, ?, ?, ?, ?, ?)`, k.Fingerprint, k.TenantID, k.DeviceID, k.Algorithm, toMicro(k.CreatedAt), k.DER)
	return mapErr(err, "public key "+k.Fingerprint)
}

// ---- claim codes ----

const claimCols = `device_id, lookup, hash, tenant_id, created_at, created_by, claimed_at, claimed_by, enrolled_at`

func scanClaim(s scanner) (*model.ClaimCode, error) {
	var c model.ClaimCode
	var created, claimed, enrolled int64
	if err := s.Scan(&c.DeviceID, &c.Lookup, &c.Hash, &c.TenantID, &created, &c.CreatedBy, &claimed, &c.ClaimedBy, &enrolled); err != nil {
		return nil, err
	}
	c.CreatedAt = fromMicro(created)
	c.ClaimedAt, c.EnrolledAt = ptrFromMicro(claimed), ptrFromMicro(enrolled)
	return &c, nil
}

func (r reader) ClaimCodeByLookup(ctx context.Context, lookup string) (*model.ClaimCode, error) {
	c, err := scanClaim(r.row(ctx, `SELECT `+claimCols+` FROM claim_codes WHERE lookup = ?`, lookup))
	return c, mapErr(err, "")
}

func (r reader) DeviceClaimCode(ctx context.Context, tenantID, deviceID string) (*model.ClaimCode, error) {
	c, err := scanClaim(r.row(ctx, `SELECT `+claimCols+` FROM claim_codes WHERE tenant_id = ? AND device_id = ?`, tenantID, deviceID))
	return c, mapErr(err, "")
}

func (t *tx) PutClaimCode(ctx context.Context, c *model.ClaimCode) error {
	if err := t.ownsDevice(ctx, c.TenantID, c.DeviceID); err != nil {
		return err
	}
	if _, err := t.exec(ctx, `DELETE FROM claim_codes WHERE tenant_id = ? AND device_id = ?`, c.TenantID, c.DeviceID); err != nil {
		return err
	}
	_, err := t.exec(ctx, `INSERT INTO claim_codes (`+claimCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.DeviceID, c.Lookup, c.Hash, c.TenantID, toMicro(c.CreatedAt), c.CreatedBy, ptrMicro(c.ClaimedAt), c.ClaimedBy,
		ptrMicro(c.EnrolledAt))
	return mapErr(err, "claim code")
}

func (t *tx) MarkClaimCodeClaimed(ctx context.Context, lookup, byTenant string, at time.Time) error {
	res, err := t.exec(ctx, `UPDATE claim_codes SET claimed_at = ?, claimed_by = ? WHERE lookup = ? AND claimed_at = 0`,
		toMicro(at), byTenant, lookup)
	if err != nil {
		return err
	}
	return affectedOrStale(ctx, res, func() error { _, err := t.ClaimCodeByLookup(ctx, lookup); return err })
}

func (t *tx) MarkClaimCodeEnrolled(ctx context.Context, tenantID, lookup string, at time.Time) error {
	res, err := t.exec(ctx, `UPDATE claim_codes SET enrolled_at = ? WHERE tenant_id = ? AND lookup = ? AND enrolled_at = 0`,
		toMicro(at), tenantID, lookup)
	if err != nil {
		return err
	}
	return affectedOrStale(ctx, res, func() error {
		c, err := t.ClaimCodeByLookup(ctx, lookup)
		if err == nil && c.TenantID != tenantID {
			return store.ErrNotFound
		}
		return err
	})
}

// affectedOrStale: a conditional update that changed nothing is ErrStale if
// the row exists (exists returns nil) and whatever exists says otherwise.
func affectedOrStale(ctx context.Context, res sql.Result, exists func() error) error {
	n, err := res.RowsAffected()
	if err != nil || n > 0 {
		return err
	}
	if err := exists(); err != nil {
		return err
	}
	return store.ErrStale
}

// ---- bootstrap tokens ----

const btCols = `id, tenant_id, name, prefix, hash, product_id, created_at, created_by, expires_at, used_at, used_by, revoked_at`

func scanBT(s scanner) (*model.BootstrapToken, error) {
	var b model.BootstrapToken
	var created, expires, used, revoked int64
	if err := s.Scan(&b.ID, &b.TenantID, &b.Name, &b.Prefix, &b.Hash, &b.ProductID, &created, &b.CreatedBy, &expires,
		&used, &b.UsedBy, &revoked); err != nil {
		return nil, err
	}
	b.CreatedAt, b.ExpiresAt = fromMicro(created), fromMicro(expires)
	b.UsedAt, b.RevokedAt = ptrFromMicro(used), ptrFromMicro(revoked)
	return &b, nil
}

func (r reader) BootstrapTokenByPrefix(ctx context.Context, prefix string) (*model.BootstrapToken, error) {
	b, err := scanBT(r.row(ctx, `SELECT `+btCols+` FROM bootstrap_tokens WHERE prefix = ?`, prefix))
	return b, mapErr(err, "")
}

func (r reader) GetBootstrapToken(ctx context.Context, tenantID, id string) (*model.BootstrapToken, error) {
	b, err := scanBT(r.row(ctx, `SELECT `+btCols+` FROM bootstrap_tokens WHERE tenant_id = ? AND id = ?`, tenantID, id))
	return b, mapErr(err, "")
}

func (r reader) ListBootstrapTokens(ctx context.Context, tenantID string, o ListOptions) ([]model.BootstrapToken, string, error) {
	return listByID(ctx, r, btCols, "bootstrap_tokens", "tenant_id = ?", []any{tenantID}, o, scanBT,
		func(b model.BootstrapToken) string { return b.ID })
}

func (t *tx) CreateBootstrapToken(ctx context.Context, b *model.BootstrapToken) error {
	if b.ProductID != "" {
		if _, err := t.GetProduct(ctx, b.TenantID, b.ProductID); err != nil {
			return err
		}
	}
	_, err := t.exec(ctx, `INSERT INTO bootstrap_tokens (`+btCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		b.ID, b.TenantID, b.Name, b.Prefix, b.Hash, b.ProductID, toMicro(b.CreatedAt), b.CreatedBy, toMicro(b.ExpiresAt),
		ptrMicro(b.UsedAt), b.UsedBy, ptrMicro(b.RevokedAt))
	return mapErr(err, "bootstrap token prefix")
}

func (t *tx) UseBootstrapToken(ctx context.Context, tenantID, id, deviceID string, at time.Time) error {
	res, err := t.exec(ctx, `UPDATE bootstrap_tokens SET used_at = ?, used_by = ?
		WHERE tenant_id = ? AND id = ? AND used_at = 0 AND revoked_at = 0`, toMicro(at), deviceID, tenantID, id)
	if err != nil {
		return err
	}
	return affectedOrStale(ctx, res, func() error { _, err := t.GetBootstrapToken(ctx, tenantID, id); return err })
}

func (t *tx) RevokeBootstrapToken(ctx context.Context, tenantID, id string, at time.Time) error {
	res, err := t.exec(ctx, `UPDATE bootstrap_tokens SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND used_at = 0 AND revoked_at = 0`,
		toMicro(at), tenantID, id)
	if err != nil {
		return err
	}
	return affectedOrStale(ctx, res, func() error { _, err := t.GetBootstrapToken(ctx, tenantID, id); return err })
}

// ---- device tokens ----

func (r reader) DeviceToken(ctx context.Context, deviceID string) (*model.DeviceToken, error) {
	var k model.DeviceToken
	var created, revoked int64
	err := r.row(ctx, `SELECT device_id, tenant_id, prefix, hash, created_at, created_by, revoked_at FROM device_tokens
		WHERE device_id = ?`, deviceID).Scan(&k.DeviceID, &k.TenantID, &k.Prefix, &k.Hash, &created, &k.CreatedBy, &revoked)
	if err != nil {
		return nil, mapErr(err, "")
	}
	k.CreatedAt, k.RevokedAt = fromMicro(created), ptrFromMicro(revoked)
	return &k, nil
}

func (t *tx) PutDeviceToken(ctx context.Context, k *model.DeviceToken) error {
	if err := t.ownsDevice(ctx, k.TenantID, k.DeviceID); err != nil {
		return err
	}
	if _, err := t.exec(ctx, `DELETE FROM device_tokens WHERE tenant_id = ? AND device_id = ?`, k.TenantID, k.DeviceID); err != nil {
		return err
	}
	_, err := t.exec(ctx, `INSERT INTO device_tokens (device_id, tenant_id, prefix, hash, created_at, created_by, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, k.DeviceID, k.TenantID, k.Prefix, k.Hash, toMicro(k.CreatedAt), k.CreatedBy, ptrMicro(k.RevokedAt))
	return mapErr(err, "device token")
}

func (t *tx) RevokeDeviceToken(ctx context.Context, tenantID, deviceID string, at time.Time) error {
	res, err := t.exec(ctx, `UPDATE device_tokens SET revoked_at = ? WHERE tenant_id = ? AND device_id = ? AND revoked_at = 0`,
		toMicro(at), tenantID, deviceID)
	if err != nil {
		return err
	}
	return mustAffect(res)
}

// ---- the platform CA ----

func (r reader) PlatformCA(ctx context.Context) (*model.PlatformCA, error) {
	var c model.PlatformCA
	var created int64
	err := r.row(ctx, `SELECT anchor_sha256, issuing_sha256, created_at FROM platform_ca WHERE id = 1`).
		Scan(&c.AnchorSHA256, &c.IssuingSHA256, &created)
	if err != nil {
		return nil, mapErr(err, "")
	}
	c.CreatedAt = fromMicro(created)
	return &c, nil
}

func (t *tx) CreatePlatformCA(ctx context.Context, c *model.PlatformCA) error {
	_, err := t.exec(ctx, `INSERT INTO platform_ca (id, anchor_sha256, issuing_sha256, created_at) VALUES (1, ?, ?, ?)`,
		c.AnchorSHA256, c.IssuingSHA256, toMicro(c.CreatedAt))
	return mapErr(err, "platform CA")
}
