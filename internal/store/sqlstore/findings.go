package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// ---- settings, certificates, tenants ----

func (r reader) GetSecuritySettings(ctx context.Context, tenantID string) (model.SecuritySettings, error) {
	s := model.DefaultSecuritySettings()
	var updated int64
	var detection string
	err := r.row(ctx, `SELECT stale_after_days, max_tenant_admin_keys, unused_key_days, flow_window_hours, updated_at, updated_by,
		detection FROM security_settings WHERE tenant_id = ?`, tenantID).Scan(&s.StaleAfterDays, &s.MaxTenantAdminKeys, &s.UnusedKeyDays,
		&s.FlowWindowHours, &updated, &s.UpdatedBy, &detection)
	if err != nil {
		if err = mapErr(err, ""); err == store.ErrNotFound {
			return model.DefaultSecuritySettings(), nil
		}
		return s, err
	}
	s.UpdatedAt = ptrFromMicro(updated)
	if detection != "" { // "" = stored before detection had settings: the defaults
		s.Detection = model.DetectionSettings{}
		if err := json.Unmarshal([]byte(detection), &s.Detection); err != nil {
			return s, fmt.Errorf("reading the detection settings: %w", err)
		}
	}
	return s, nil
}

func (t *tx) PutSecuritySettings(ctx context.Context, tenantID string, s model.SecuritySettings) error {
	detection, err := json.Marshal(s.Detection)
	if err != nil {
		return err
	}
	_, err = t.exec(ctx, `INSERT INTO security_settings (tenant_id, stale_after_days, max_tenant_admin_keys, unused_key_days,
		flow_window_hours, updated_at, updated_by, detection) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (tenant_id) DO UPDATE SET stale_after_days = excluded.stale_after_days,
			max_tenant_admin_keys = excluded.max_tenant_admin_keys, unused_key_days = excluded.unused_key_days,
			flow_window_hours = excluded.flow_window_hours, updated_at = excluded.updated_at, updated_by = excluded.updated_by,
			detection = excluded.detection`,
		tenantID, s.StaleAfterDays, s.MaxTenantAdminKeys, s.UnusedKeyDays, s.FlowWindowHours, ptrMicro(s.UpdatedAt), s.UpdatedBy,
		string(detection))
	return err
}

func (r reader) ActiveCertificates(ctx context.Context, tenantID, afterSerial string, limit int) ([]model.ActiveCertificate, error) {
	limit = clampLimit(limit, 1000, 10000)
	rows, err := r.query(ctx, `SELECT c.serial, c.device_id, c.key_fingerprint, c.key_algorithm, c.not_after
		FROM device_certificates c JOIN devices d ON d.id = c.device_id AND d.tenant_id = c.tenant_id
		WHERE c.tenant_id = ? AND c.revoked_at = 0 AND c.successor = '' AND d.state <> ? AND c.serial > ?
		ORDER BY c.serial LIMIT ?`, tenantID, string(model.StateDecommissioned), afterSerial, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []model.ActiveCertificate
	for rows.Next() {
		var c model.ActiveCertificate
		var na int64
		if err := rows.Scan(&c.Serial, &c.DeviceID, &c.KeyFingerprint, &c.KeyAlgorithm, &na); err != nil {
			return nil, err
		}
		c.NotAfter = fromMicro(na)
		out = append(out, c)
	}
	return out, rows.Err()
}

func (r reader) TenantIDs(ctx context.Context) ([]string, error) {
	rows, err := r.query(ctx, `SELECT id FROM tenants ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// ---- findings ----

const findingCols = `id, tenant_id, check_id, resource_type, resource_id, fkey, severity, title, evidence, status, first_seen,
	last_seen, resolved_at, suppressed_until, suppressed_reason, suppressed_by`

func scanFinding(s scanner) (*model.Finding, error) {
	var f model.Finding
	var evidence string
	var first, last, resolved, until int64
	if err := s.Scan(&f.ID, &f.TenantID, &f.Check, &f.ResourceType, &f.ResourceID, &f.Key, &f.Severity, &f.Title, &evidence,
		&f.Status, &first, &last, &resolved, &until, &f.SuppressedReason, &f.SuppressedBy); err != nil {
		return nil, err
	}
	f.Evidence = json.RawMessage(evidence)
	f.FirstSeen, f.LastSeen = fromMicro(first), fromMicro(last)
	f.ResolvedAt, f.SuppressedUntil = ptrFromMicro(resolved), ptrFromMicro(until)
	return &f, nil
}

func (r reader) GetFinding(ctx context.Context, tenantID, id string) (*model.Finding, error) {
	f, err := scanFinding(r.row(ctx, `SELECT `+findingCols+` FROM findings WHERE tenant_id = ? AND id = ?`, tenantID, id))
	return f, mapErr(err, "")
}

func (r reader) ListFindings(ctx context.Context, tenantID string, q model.FindingQuery, o store.ListOptions) ([]model.Finding, string, error) {
	c, err := decodeCursorOf(o.Cursor, "findings")
	if err != nil {
		return nil, "", err
	}
	limit := clampLimit(o.Limit, 100, 1000)
	where := []string{"tenant_id = ?"}
	args := []any{tenantID}
	if q.Status != "" {
		where, args = append(where, "status = ?"), append(args, string(q.Status))
	}
	if q.Check != "" {
		where, args = append(where, "check_id = ?"), append(args, q.Check)
	}
	if q.ResourceID != "" {
		where, args = append(where, "resource_id = ?"), append(args, q.ResourceID)
	}
	if q.MinSeverity != "" {
		where, args = append(where, "severity_rank >= ?"), append(args, q.MinSeverity.Rank())
	}
	if q.Suppressed != nil {
		if *q.Suppressed {
			where, args = append(where, "suppressed_until > ?"), append(args, toMicro(q.Now))
		} else {
			where, args = append(where, "suppressed_until <= ?"), append(args, toMicro(q.Now))
		}
	}
	if c != nil {
		where, args = append(where, "id < ?"), append(args, c.I)
	}
	rows, err := r.query(ctx, `SELECT `+findingCols+` FROM findings WHERE `+strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT ?`,
		append(args, limit+1)...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var out []model.Finding
	for rows.Next() {
		f, err := scanFinding(rows)
		if err != nil {
			return nil, "", err
		}
		out = append(out, *f)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	if len(out) <= limit {
		return out, "", nil
	}
	out = out[:limit]
	return out, encodeCursor(cursor{I: out[limit-1].ID, T: "findings"}), nil
}

func (r reader) CheckFindings(ctx context.Context, tenantID, check string, resourceIDs []string) ([]model.Finding, error) {
	scan := func(q string, args ...any) ([]model.Finding, error) {
		rows, err := r.query(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []model.Finding
		for rows.Next() {
			f, err := scanFinding(rows)
			if err != nil {
				return nil, err
			}
			out = append(out, *f)
		}
		return out, rows.Err()
	}
	q := `SELECT ` + findingCols + ` FROM findings WHERE tenant_id = ? AND check_id = ?`
	if len(resourceIDs) == 0 {
		return scan(q+` ORDER BY id`, tenantID, check)
	}
	var out []model.Finding
	err := chunks(resourceIDs, func(ids []string) error {
		got, err := scan(q+` AND resource_id IN (`+inList(len(ids))+`) ORDER BY id`, append([]any{tenantID, check}, anys(ids)...)...)
		out = append(out, got...)
		return err
	})
	return out, err
}

func (t *tx) CreateFinding(ctx context.Context, f *model.Finding) error {
	ev := string(f.Evidence)
	if ev == "" {
		ev = "{}"
	}
	_, err := t.exec(ctx, `INSERT INTO findings (`+findingCols+`, severity_rank) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		f.ID, f.TenantID, f.Check, f.ResourceType, f.ResourceID, f.Key, string(f.Severity), f.Title, ev, string(f.Status),
		toMicro(f.FirstSeen), toMicro(f.LastSeen), ptrMicro(f.ResolvedAt), ptrMicro(f.SuppressedUntil), f.SuppressedReason,
		f.SuppressedBy, f.Severity.Rank())
	return mapErr(err, "finding of "+f.Check+" on "+f.ResourceID)
}

func (t *tx) UpdateFinding(ctx context.Context, f *model.Finding) error {
	ev := string(f.Evidence)
	if ev == "" {
		ev = "{}"
	}
	res, err := t.exec(ctx, `UPDATE findings SET severity = ?, severity_rank = ?, title = ?, evidence = ?, status = ?, last_seen = ?,
		resolved_at = ? WHERE tenant_id = ? AND id = ?`, string(f.Severity), f.Severity.Rank(), f.Title, ev, string(f.Status),
		toMicro(f.LastSeen), ptrMicro(f.ResolvedAt), f.TenantID, f.ID)
	if err != nil {
		return err
	}
	return mustAffect(res)
}

func (t *tx) SetFindingSuppression(ctx context.Context, tenantID, id string, until *time.Time, reason, by string) error {
	if until == nil {
		reason, by = "", ""
	}
	res, err := t.exec(ctx, `UPDATE findings SET suppressed_until = ?, suppressed_reason = ?, suppressed_by = ? WHERE tenant_id = ? AND id = ?`,
		ptrMicro(until), reason, by, tenantID, id)
	if err != nil {
		return err
	}
	return mustAffect(res)
}
