package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/steward-iot/steward/internal/auditlog"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// Audit appends one record to the tenant's chain inside the caller's
// transaction. The chain head row is read with a lock (PostgreSQL) or under
// SQLite's single writer, so two writers never link to the same predecessor.
func (t *tx) Audit(ctx context.Context, tenantID string, e model.AuditEntry) (*model.AuditRecord, error) {
	if e.Actor == "" || e.Action == "" {
		return nil, errors.New("audit: actor and action are required")
	}
	var summary []byte
	if e.Summary != nil {
		var err error
		if summary, err = json.Marshal(e.Summary); err != nil {
			return nil, fmt.Errorf("audit summary: %w", err)
		}
	}
	if _, err := t.exec(ctx, `INSERT INTO audit_heads (tenant_id, seq, hash) VALUES (?, 0, ?) ON CONFLICT DO NOTHING`,
		tenantID, auditlog.Genesis); err != nil {
		return nil, err
	}
	rec := &model.AuditRecord{TenantID: tenantID, Actor: e.Actor, Action: e.Action, Target: e.Target, Summary: summary}
	if err := t.row(ctx, `SELECT seq, hash FROM audit_heads WHERE tenant_id = ?`+t.d.forUpdate, tenantID).
		Scan(&rec.Seq, &rec.PrevHash); err != nil {
		return nil, err
	}
	rec.Seq++
	rec.Time = time.Now().UTC().Truncate(time.Microsecond)
	rec.Hash = auditlog.Hash(rec)
	if _, err := t.exec(ctx, `INSERT INTO audit_log (tenant_id, seq, at, actor, action, target, summary, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, rec.TenantID, rec.Seq, rec.Time.UnixMicro(), rec.Actor, rec.Action, rec.Target,
		rec.Summary, rec.PrevHash, rec.Hash); err != nil {
		return nil, mapErr(err, "audit record")
	}
	if _, err := t.exec(ctx, `UPDATE audit_heads SET seq = ?, hash = ? WHERE tenant_id = ?`, rec.Seq, rec.Hash, tenantID); err != nil {
		return nil, err
	}
	return rec, nil
}

func (r reader) ListAudit(ctx context.Context, tenantID string, afterSeq int64, limit int) ([]model.AuditRecord, error) {
	limit = clampLimit(limit, 100, 10000)
	rows, err := r.query(ctx, `SELECT tenant_id, seq, at, actor, action, target, summary, prev_hash, hash FROM audit_log
		WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?`, tenantID, afterSeq, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []model.AuditRecord
	for rows.Next() {
		var a model.AuditRecord
		var at int64
		var summary []byte // NULL when there is none; database/sql cannot scan NULL into a json.RawMessage
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

func (r reader) AuditHeads(ctx context.Context) ([]store.AuditHead, error) {
	rows, err := r.query(ctx, `SELECT tenant_id, seq, hash FROM audit_heads ORDER BY tenant_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.AuditHead
	for rows.Next() {
		var h store.AuditHead
		if err := rows.Scan(&h.TenantID, &h.Seq, &h.Hash); err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}
