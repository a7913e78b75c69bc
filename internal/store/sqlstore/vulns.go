package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

var (
	_ store.SecurityReader = reader{}
	_ store.SecurityWriter = (*tx)(nil)
)

// inList is "?, ?, ?" for n values.
func inList(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// chunks calls fn with slices of at most 500 values (bind parameter limits).
func chunks(values []string, fn func([]string) error) error {
	for len(values) > 0 {
		n := min(len(values), 500)
		if err := fn(values[:n]); err != nil {
			return err
		}
		values = values[n:]
	}
	return nil
}

// ---- SBOMs ----

const sbomCols = `id, tenant_id, product_id, fw_version, format, spec_version, name, components, unmatched, sha256,
	imported_at, imported_by`

func scanSBOM(s scanner) (*model.SBOM, error) {
	var b model.SBOM
	var imported int64
	if err := s.Scan(&b.ID, &b.TenantID, &b.ProductID, &b.FirmwareVersion, &b.Format, &b.SpecVersion, &b.Name, &b.Components,
		&b.Unmatched, &b.SHA256, &imported, &b.ImportedBy); err != nil {
		return nil, err
	}
	b.ImportedAt = fromMicro(imported)
	return &b, nil
}

func (r reader) GetSBOM(ctx context.Context, tenantID, productID, fw string) (*model.SBOM, error) {
	b, err := scanSBOM(r.row(ctx, `SELECT `+sbomCols+` FROM sboms WHERE tenant_id = ? AND product_id = ? AND fw_version = ?`,
		tenantID, productID, fw))
	return b, mapErr(err, "")
}

func (r reader) ListSBOMs(ctx context.Context, tenantID, productID string, o store.ListOptions) ([]model.SBOM, string, error) {
	return pageByKey(ctx, r, `SELECT `+sbomCols+` FROM sboms WHERE tenant_id = ? AND product_id = ?`, "fw_version", "sboms",
		[]any{tenantID, productID}, o, scanSBOM, func(b model.SBOM) string { return b.FirmwareVersion })
}

const componentCols = `c.idx, c.name, c.version, c.purl, c.ecosystem, c.package`

func scanComponent(s scanner) (*model.SBOMComponent, error) {
	var c model.SBOMComponent
	err := s.Scan(&c.Index, &c.Name, &c.Version, &c.PURL, &c.Ecosystem, &c.Package)
	return &c, err
}

func (r reader) ListSBOMComponents(ctx context.Context, tenantID, productID, fw string, o store.ListOptions) ([]model.SBOMComponent, string, error) {
	b, err := r.GetSBOM(ctx, tenantID, productID, fw)
	if err != nil {
		return nil, "", err
	}
	c, err := decodeCursorOf(o.Cursor, "sbom_components")
	if err != nil {
		return nil, "", err
	}
	limit := clampLimit(o.Limit, 100, 1000)
	after := int64(-1)
	if c != nil {
		after = c.N
	}
	rows, err := r.query(ctx, `SELECT `+componentCols+` FROM sbom_components c WHERE c.sbom_id = ? AND c.idx > ? ORDER BY c.idx LIMIT ?`,
		b.ID, after, limit+1)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var out []model.SBOMComponent
	for rows.Next() {
		v, err := scanComponent(rows)
		if err != nil {
			return nil, "", err
		}
		out = append(out, *v)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	if len(out) <= limit {
		return out, "", nil
	}
	out = out[:limit]
	return out, encodeCursor(cursor{I: "c", N: int64(out[limit-1].Index), T: "sbom_components"}), nil
}

func (r reader) firmwareComponents(ctx context.Context, q string, args ...any) ([]model.FirmwareComponent, error) {
	rows, err := r.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []model.FirmwareComponent
	for rows.Next() {
		var fc model.FirmwareComponent
		if err := rows.Scan(&fc.ProductID, &fc.FirmwareVersion, &fc.Index, &fc.Name, &fc.Version, &fc.PURL, &fc.Ecosystem,
			&fc.Package); err != nil {
			return nil, err
		}
		out = append(out, fc)
	}
	return out, rows.Err()
}

func (r reader) DeviceFirmwareComponents(ctx context.Context, tenantID, deviceID string) ([]model.FirmwareComponent, error) {
	var n int
	if err := r.row(ctx, `SELECT COUNT(*) FROM devices WHERE tenant_id = ? AND id = ?`, tenantID, deviceID).Scan(&n); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, store.ErrNotFound
	}
	return r.firmwareComponents(ctx, `SELECT c.product_id, c.fw_version, `+componentCols+`
		FROM devices d JOIN sbom_components c ON c.product_id = d.product_id AND c.fw_version = d.fw_version
		WHERE d.tenant_id = ? AND d.id = ? AND d.fw_version <> '' ORDER BY c.idx`, tenantID, deviceID)
}

func (r reader) RunningFirmwareComponents(ctx context.Context, tenantID string, packages []string) ([]model.FirmwareComponent, error) {
	const base = `SELECT c.product_id, c.fw_version, ` + componentCols + ` FROM sbom_components c
		WHERE c.pkg_key <> '' AND EXISTS (SELECT 1 FROM devices d WHERE d.tenant_id = ? AND d.product_id = c.product_id
		AND d.fw_version = c.fw_version)`
	if len(packages) == 0 {
		return r.firmwareComponents(ctx, base+` ORDER BY c.product_id, c.fw_version, c.idx`, tenantID)
	}
	var out []model.FirmwareComponent
	err := chunks(packages, func(ps []string) error {
		got, err := r.firmwareComponents(ctx, base+` AND c.pkg_key IN (`+inList(len(ps))+`) ORDER BY c.product_id, c.fw_version, c.idx`,
			append([]any{tenantID}, anys(ps)...)...)
		out = append(out, got...)
		return err
	})
	return out, err
}

// productVisible: the tenant owns the product or runs it on a device.
const productVisible = `(EXISTS (SELECT 1 FROM products p WHERE p.id = ? AND p.tenant_id = ?)
	OR EXISTS (SELECT 1 FROM devices d WHERE d.tenant_id = ? AND d.product_id = ?))`

func (r reader) ProductFirmwareComponents(ctx context.Context, tenantID, productID string, packages []string) ([]model.FirmwareComponent, error) {
	var out []model.FirmwareComponent
	err := chunks(packages, func(ps []string) error {
		args := append([]any{productID, productID, tenantID, tenantID, productID}, anys(ps)...)
		got, err := r.firmwareComponents(ctx, `SELECT c.product_id, c.fw_version, `+componentCols+` FROM sbom_components c
			WHERE c.product_id = ? AND `+productVisible+` AND c.pkg_key IN (`+inList(len(ps))+`) ORDER BY c.fw_version, c.idx`, args...)
		out = append(out, got...)
		return err
	})
	return out, err
}

func (r reader) ProductFirmwareVersions(ctx context.Context, tenantID, productID string) ([]string, error) {
	rows, err := r.query(ctx, `SELECT fw_version FROM sboms WHERE product_id = ? AND `+productVisible+` ORDER BY fw_version`,
		productID, productID, tenantID, tenantID, productID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (r reader) DevicesRunning(ctx context.Context, tenantID string, fw []model.FirmwareRef, o store.ListOptions) ([]model.Device, string, error) {
	if len(fw) == 0 {
		if _, err := decodeCursorOf(o.Cursor, "devices_running"); err != nil {
			return nil, "", err
		}
		return nil, "", nil
	}
	if len(fw) > 500 {
		return nil, "", fmt.Errorf("%w: at most 500 firmware versions at once", store.ErrBadQuery)
	}
	conds := make([]string, len(fw))
	args := []any{tenantID}
	for i, f := range fw {
		conds[i] = `(d.product_id = ? AND d.fw_version = ?)`
		args = append(args, f.ProductID, f.FirmwareVersion)
	}
	return pageByKey(ctx, r, `SELECT `+deviceCols+` FROM devices d WHERE d.tenant_id = ? AND (`+strings.Join(conds, " OR ")+`)`,
		"d.id", "devices_running", args, o, scanDevice, func(d model.Device) string { return d.ID })
}

func (t *tx) PutSBOM(ctx context.Context, s *model.SBOM, components []model.SBOMComponent) error {
	if _, err := t.GetProduct(ctx, s.TenantID, s.ProductID); err != nil {
		return err
	}
	if _, err := t.exec(ctx, `DELETE FROM sboms WHERE tenant_id = ? AND product_id = ? AND fw_version = ?`,
		s.TenantID, s.ProductID, s.FirmwareVersion); err != nil {
		return err
	}
	if _, err := t.exec(ctx, `INSERT INTO sboms (`+sbomCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.ID, s.TenantID, s.ProductID, s.FirmwareVersion, string(s.Format), s.SpecVersion, s.Name, s.Components, s.Unmatched,
		s.SHA256, toMicro(s.ImportedAt), s.ImportedBy); err != nil {
		return mapErr(err, "SBOM of firmware "+s.FirmwareVersion)
	}
	// Many rows per statement: an SBOM may list thousands of components.
	const per = 50
	for i := 0; i < len(components); i += per {
		batch := components[i:min(i+per, len(components))]
		vals := make([]string, len(batch))
		args := make([]any, 0, len(batch)*10)
		for j, c := range batch {
			vals[j] = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
			key := ""
			if c.Ecosystem != "" && c.Package != "" {
				key = c.Ecosystem + "/" + c.Package
			}
			args = append(args, s.ID, c.Index, s.ProductID, s.FirmwareVersion, c.Name, c.Version, c.PURL, c.Ecosystem, c.Package, key)
		}
		if _, err := t.exec(ctx, `INSERT INTO sbom_components (sbom_id, idx, product_id, fw_version, name, version, purl,
			ecosystem, package, pkg_key) VALUES `+strings.Join(vals, ", "), args...); err != nil {
			return mapErr(err, "component")
		}
	}
	return nil
}

func (t *tx) DeleteSBOM(ctx context.Context, tenantID, productID, fw string) error {
	res, err := t.exec(ctx, `DELETE FROM sboms WHERE tenant_id = ? AND product_id = ? AND fw_version = ?`, tenantID, productID, fw)
	if err != nil {
		return err
	}
	return mustAffect(res)
}

// ---- advisories ----

const advisoryCols = `tenant_id, id, aliases, summary, severity, published, modified, withdrawn, packages, imported_at, imported_by`

func scanAdvisory(s scanner, withRecord bool) (*model.Advisory, error) {
	var a model.Advisory
	var aliases, packages, record string
	var published, modified, withdrawn, imported int64
	dest := []any{&a.TenantID, &a.ID, &aliases, &a.Summary, &a.Severity, &published, &modified, &withdrawn, &packages,
		&imported, &a.ImportedBy}
	if withRecord {
		dest = append(dest, &record)
	}
	if err := s.Scan(dest...); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(aliases), &a.Aliases); err != nil {
		return nil, fmt.Errorf("advisory %s: stored aliases: %w", a.ID, err)
	}
	if err := json.Unmarshal([]byte(packages), &a.Packages); err != nil {
		return nil, fmt.Errorf("advisory %s: stored packages: %w", a.ID, err)
	}
	if a.Aliases == nil {
		a.Aliases = []string{}
	}
	if a.Packages == nil {
		a.Packages = []string{}
	}
	a.Published, a.Withdrawn = ptrFromMicro(published), ptrFromMicro(withdrawn)
	a.Modified, a.ImportedAt = fromMicro(modified), fromMicro(imported)
	if withRecord {
		a.Record = json.RawMessage(record)
	}
	return &a, nil
}

func (r reader) GetAdvisories(ctx context.Context, tenantID, idOrAlias string) ([]model.Advisory, error) {
	rows, err := r.query(ctx, `SELECT `+advisoryCols+`, record FROM advisories a WHERE a.tenant_id IN ('', ?) AND (a.id = ?
		OR EXISTS (SELECT 1 FROM advisory_aliases l WHERE l.tenant_id = a.tenant_id AND l.advisory_id = a.id AND l.alias = ?))
		ORDER BY CASE WHEN a.tenant_id = '' THEN 1 ELSE 0 END, CASE WHEN a.id = ? THEN 0 ELSE 1 END, a.id`,
		tenantID, idOrAlias, idOrAlias, idOrAlias)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []model.Advisory
	seen := map[string]bool{}
	for rows.Next() {
		a, err := scanAdvisory(rows, true)
		if err != nil {
			return nil, err
		}
		// The tenant's own record shadows a platform one with the same ID.
		if seen[a.ID] {
			continue
		}
		seen[a.ID] = true
		out = append(out, *a)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, store.ErrNotFound
	}
	return out, nil
}

func (r reader) ListAdvisories(ctx context.Context, tenantID string, o store.ListOptions) ([]model.Advisory, string, error) {
	// Keyed by "id tenant" so a platform and a tenant record with one ID
	// page apart; the tenant's own one shadows the platform's.
	c, err := decodeCursorOf(o.Cursor, "advisories")
	if err != nil {
		return nil, "", err
	}
	limit := clampLimit(o.Limit, 100, 1000)
	q := `SELECT ` + advisoryCols + ` FROM advisories a WHERE (a.tenant_id = ? OR (a.tenant_id = '' AND NOT EXISTS
		(SELECT 1 FROM advisories o WHERE o.tenant_id = ? AND o.id = a.id)))`
	args := []any{tenantID, tenantID}
	if c != nil {
		q += ` AND a.id > ?`
		args = append(args, c.I)
	}
	rows, err := r.query(ctx, q+` ORDER BY a.id LIMIT ?`, append(args, limit+1)...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var out []model.Advisory
	for rows.Next() {
		a, err := scanAdvisory(rows, false)
		if err != nil {
			return nil, "", err
		}
		out = append(out, *a)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	if len(out) <= limit {
		return out, "", nil
	}
	out = out[:limit]
	return out, encodeCursor(cursor{I: out[limit-1].ID, T: "advisories"}), nil
}

const affectedSelect = `SELECT f.tenant_id, f.advisory_id, f.idx, f.ecosystem, f.package, f.ranges, f.versions, a.severity, a.withdrawn
	FROM advisory_affected f JOIN advisories a ON a.tenant_id = f.tenant_id AND a.id = f.advisory_id
	WHERE (f.tenant_id = ? OR (f.tenant_id = '' AND NOT EXISTS
		(SELECT 1 FROM advisories o WHERE o.tenant_id = ? AND o.id = f.advisory_id)))`

func (r reader) affected(ctx context.Context, q string, args ...any) ([]model.AffectedPackage, error) {
	rows, err := r.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []model.AffectedPackage
	for rows.Next() {
		var p model.AffectedPackage
		var ranges, versions string
		var withdrawn int64
		if err := rows.Scan(&p.TenantID, &p.AdvisoryID, &p.Index, &p.Ecosystem, &p.Package, &ranges, &versions, &p.Severity,
			&withdrawn); err != nil {
			return nil, err
		}
		p.Ranges, p.Versions, p.Withdrawn = json.RawMessage(ranges), json.RawMessage(versions), withdrawn != 0
		out = append(out, p)
	}
	return out, rows.Err()
}

func (r reader) AffectedPackages(ctx context.Context, tenantID string, packages []string) ([]model.AffectedPackage, error) {
	var out []model.AffectedPackage
	err := chunks(packages, func(ps []string) error {
		got, err := r.affected(ctx, affectedSelect+` AND f.pkg_key IN (`+inList(len(ps))+`) ORDER BY f.advisory_id, f.idx`,
			append([]any{tenantID, tenantID}, anys(ps)...)...)
		out = append(out, got...)
		return err
	})
	return out, err
}

func (r reader) AdvisoryAffected(ctx context.Context, tenantID string, advisoryIDs []string) ([]model.AffectedPackage, error) {
	var out []model.AffectedPackage
	err := chunks(advisoryIDs, func(ids []string) error {
		got, err := r.affected(ctx, affectedSelect+` AND f.advisory_id IN (`+inList(len(ids))+`) ORDER BY f.advisory_id, f.idx`,
			append([]any{tenantID, tenantID}, anys(ids)...)...)
		out = append(out, got...)
		return err
	})
	return out, err
}

func (t *tx) PutAdvisory(ctx context.Context, a *model.Advisory, affected []model.AffectedPackage) (bool, error) {
	var modified int64
	err := t.row(ctx, `SELECT modified FROM advisories WHERE tenant_id = ? AND id = ?`+t.d.forUpdate, a.TenantID, a.ID).Scan(&modified)
	switch {
	case err == sql.ErrNoRows:
	case err != nil:
		return false, err
	case modified >= toMicro(a.Modified):
		return false, nil
	}
	for _, q := range []string{`DELETE FROM advisories WHERE tenant_id = ? AND id = ?`,
		`DELETE FROM advisory_aliases WHERE tenant_id = ? AND advisory_id = ?`,
		`DELETE FROM advisory_affected WHERE tenant_id = ? AND advisory_id = ?`} {
		if _, err := t.exec(ctx, q, a.TenantID, a.ID); err != nil {
			return false, err
		}
	}
	aliases, _ := json.Marshal(nonNilStrings(a.Aliases))
	packages, _ := json.Marshal(nonNilStrings(a.Packages))
	if _, err := t.exec(ctx, `INSERT INTO advisories (`+advisoryCols+`, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.TenantID, a.ID, string(aliases), a.Summary, a.Severity, ptrMicro(a.Published), toMicro(a.Modified), ptrMicro(a.Withdrawn),
		string(packages), toMicro(a.ImportedAt), a.ImportedBy, string(a.Record)); err != nil {
		return false, mapErr(err, "advisory "+a.ID)
	}
	seen := map[string]bool{}
	for _, al := range a.Aliases {
		if al == a.ID || seen[al] {
			continue
		}
		seen[al] = true
		if _, err := t.exec(ctx, `INSERT INTO advisory_aliases (tenant_id, alias, advisory_id) VALUES (?, ?, ?)`,
			a.TenantID, al, a.ID); err != nil {
			return false, mapErr(err, "alias "+al)
		}
	}
	for i, p := range affected {
		ranges, versions := string(p.Ranges), string(p.Versions)
		if ranges == "" {
			ranges = "[]"
		}
		if versions == "" {
			versions = "[]"
		}
		if _, err := t.exec(ctx, `INSERT INTO advisory_affected (tenant_id, advisory_id, idx, ecosystem, package, pkg_key,
			ranges, versions) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, a.TenantID, a.ID, i, p.Ecosystem, p.Package,
			baseEcosystem(p.Ecosystem)+"/"+p.Package, ranges, versions); err != nil {
			return false, mapErr(err, "affected package")
		}
	}
	return true, nil
}

// baseEcosystem drops an OSV ecosystem's release suffix ("Debian:12" → "Debian").
func baseEcosystem(e string) string {
	if i := strings.IndexByte(e, ':'); i >= 0 {
		return e[:i]
	}
	return e
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
