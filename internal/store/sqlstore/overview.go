package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// CountDevicesByFirmware groups on fw_key, which the devices_fw index
// covers, so counting a million devices reads only the index; the shown
// spelling of each of the few versions kept is then looked up once.
func (r reader) CountDevicesByFirmware(ctx context.Context, tenantID string, limit int) ([]store.VersionCount, error) {
	limit = clampLimit(limit, 10, 1000)
	rows, err := r.query(ctx, `SELECT fw_key, COUNT(*) AS n FROM devices WHERE tenant_id = ?
		GROUP BY fw_key ORDER BY n DESC, fw_key DESC LIMIT ?`, tenantID, limit)
	if err != nil {
		return nil, err
	}
	type group struct {
		key string
		n   int64
	}
	var groups []group
	for rows.Next() {
		var g group
		if err := rows.Scan(&g.key, &g.n); err != nil {
			rows.Close()
			return nil, err
		}
		groups = append(groups, g)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]store.VersionCount, 0, len(groups))
	for _, g := range groups {
		vc := store.VersionCount{Count: g.n}
		if g.key != "" {
			if err := r.row(ctx, `SELECT MIN(fw_version) FROM devices WHERE tenant_id = ? AND fw_key = ?`,
				tenantID, g.key).Scan(&vc.Version); err != nil {
				return nil, mapErr(err, "")
			}
		}
		out = append(out, vc)
	}
	return out, nil
}

func (r reader) GetAuditHead(ctx context.Context, tenantID string) (store.AuditHead, error) {
	h := store.AuditHead{TenantID: tenantID}
	err := r.row(ctx, `SELECT seq, hash FROM audit_heads WHERE tenant_id = ?`, tenantID).Scan(&h.Seq, &h.Hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return h, err
	}
	return h, nil
}

func (r reader) ListAuditByTarget(ctx context.Context, tenantID, target string, beforeSeq int64, limit int) ([]model.AuditRecord, error) {
	limit = clampLimit(limit, 100, 1000)
	q := `SELECT tenant_id, seq, at, actor, action, target, summary, prev_hash, hash FROM audit_log
		WHERE tenant_id = ? AND target = ?`
	args := []any{tenantID, target}
	if beforeSeq > 0 {
		q += ` AND seq < ?`
		args = append(args, beforeSeq)
	}
	rows, err := r.query(ctx, q+` ORDER BY seq DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []model.AuditRecord
	for rows.Next() {
		var a model.AuditRecord
		var at int64
		var summary []byte
		if err := rows.Scan(&a.TenantID, &a.Seq, &at, &a.Actor, &a.Action, &a.Target, &summary, &a.PrevHash, &a.Hash); err != nil {
			return nil, err
		}
		a.Time = fromMicro(at)
		if len(summary) > 0 {
			a.Summary = summary
		}
		out = append(out, a)
	}
	return out, rows.Err()
}
