package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/secretbox"
	"github.com/steward-iot/steward/internal/store"
)

const webhookCols = `id, tenant_id, url, types, secret, active, created_at`

// secretBinding ties a sealed webhook secret to its row: a sealed value
// copied to another webhook or tenant does not open.
func secretBinding(tenantID, id string) string { return "webhooks/" + tenantID + "/" + id }

// sealSecret is what is stored for a webhook's secret.
func (r reader) sealSecret(w *model.Webhook) string {
	if r.box == nil {
		return w.Secret
	}
	return r.box.Seal(w.Secret, secretBinding(w.TenantID, w.ID))
}

func (r reader) scanWebhook(s scanner) (*model.Webhook, error) {
	var w model.Webhook
	var types string
	var created int64
	if err := s.Scan(&w.ID, &w.TenantID, &w.URL, &types, &w.Secret, &w.Active, &created); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(types), &w.Types); err != nil {
		return nil, err
	}
	w.CreatedAt = fromMicro(created)
	// A secret still in clear (written before secrets were sealed) is
	// read as it is until SealWebhookSecrets seals it. One that does not
	// open (sealed with another key, or this store has none) reads as
	// empty: the webhook stays visible and deletable, and the dispatcher
	// refuses to send for it with the reason.
	if secretbox.IsSealed(w.Secret) {
		plain := ""
		if r.box != nil {
			plain, _ = r.box.Open(w.Secret, secretBinding(w.TenantID, w.ID))
		}
		w.Secret = plain
	}
	return &w, nil
}

func (r reader) GetWebhook(ctx context.Context, tenantID, id string) (*model.Webhook, error) {
	w, err := r.scanWebhook(r.row(ctx, `SELECT `+webhookCols+` FROM webhooks WHERE tenant_id = ? AND id = ?`, tenantID, id))
	return w, mapErr(err, "")
}

func (r reader) ListWebhooks(ctx context.Context, tenantID string) ([]model.Webhook, error) {
	rows, err := r.query(ctx, `SELECT `+webhookCols+` FROM webhooks WHERE tenant_id = ? ORDER BY id`, tenantID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []model.Webhook
	for rows.Next() {
		w, err := r.scanWebhook(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *w)
	}
	return out, rows.Err()
}

func (t *tx) CreateWebhook(ctx context.Context, w *model.Webhook) error {
	if w.Types == nil {
		w.Types = []string{}
	}
	types, _ := json.Marshal(w.Types)
	_, err := t.exec(ctx, `INSERT INTO webhooks (`+webhookCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		w.ID, w.TenantID, w.URL, string(types), t.sealSecret(w), w.Active, toMicro(w.CreatedAt))
	return mapErr(err, "webhook")
}

// SecretsCheck is what SealWebhookSecrets found.
type SecretsCheck struct {
	// Sealed: secrets that were stored in clear (by a version that did not
	// seal them) and are sealed now.
	Sealed int
	// Unreadable: sealed secrets that do not open with this store's key:
	// sealed with another key (a node started without the cluster's key
	// file, or a backup restored without its own), or moved to another row.
	Unreadable int
}

// SealWebhookSecrets seals the webhook secrets still stored in clear and
// counts the sealed ones that do not open with the store's secrets key,
// which it needs.
func (db *DB) SealWebhookSecrets(ctx context.Context) (SecretsCheck, error) {
	var c SecretsCheck
	if db.box == nil {
		return c, errors.New("sealing webhook secrets: the store was opened without the secrets key")
	}
	err := db.Update(ctx, func(st store.Tx) error {
		c = SecretsCheck{}
		t := st.(*tx)
		rows, err := t.query(ctx, `SELECT tenant_id, id, secret FROM webhooks`)
		if err != nil {
			return err
		}
		var plain []model.Webhook
		for rows.Next() {
			var w model.Webhook
			if err := rows.Scan(&w.TenantID, &w.ID, &w.Secret); err != nil {
				rows.Close()
				return err
			}
			if !secretbox.IsSealed(w.Secret) {
				plain = append(plain, w)
			} else if _, err := db.box.Open(w.Secret, secretBinding(w.TenantID, w.ID)); err != nil {
				c.Unreadable++
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for i := range plain {
			w := &plain[i]
			if _, err := t.exec(ctx, `UPDATE webhooks SET secret = ? WHERE tenant_id = ? AND id = ?`,
				t.sealSecret(w), w.TenantID, w.ID); err != nil {
				return err
			}
		}
		c.Sealed = len(plain)
		return nil
	})
	return c, err
}

func (t *tx) DeleteWebhook(ctx context.Context, tenantID, id string) error {
	if _, err := t.exec(ctx, `DELETE FROM webhook_deliveries WHERE tenant_id = ? AND webhook_id = ?`, tenantID, id); err != nil {
		return err
	}
	res, err := t.exec(ctx, `DELETE FROM webhooks WHERE tenant_id = ? AND id = ?`, tenantID, id)
	if err != nil {
		return err
	}
	return mustAffect(res)
}

const deliveryCols = `id, webhook_id, tenant_id, event_id, event_type, payload, attempts, status, last_code, last_error,
	next_attempt, created_at, updated_at`

func scanDelivery(s scanner) (*model.WebhookDelivery, error) {
	var d model.WebhookDelivery
	var next, created, updated int64
	if err := s.Scan(&d.ID, &d.WebhookID, &d.TenantID, &d.EventID, &d.EventType, &d.Payload, &d.Attempts, &d.Status,
		&d.LastCode, &d.LastError, &next, &created, &updated); err != nil {
		return nil, err
	}
	d.NextAttempt = ptrFromMicro(next)
	d.CreatedAt, d.UpdatedAt = fromMicro(created), fromMicro(updated)
	return &d, nil
}

func (r reader) ListDeliveries(ctx context.Context, tenantID, webhookID string, o ListOptions) ([]model.WebhookDelivery, string, error) {
	c, err := decodeCursorOf(o.Cursor, "deliveries")
	if err != nil {
		return nil, "", err
	}
	limit := clampLimit(o.Limit, 100, 1000)
	// Newest first: the log is read to see what just happened.
	before := int64(1<<62 - 1)
	if c != nil {
		before = c.N
	}
	rows, err := r.query(ctx, `SELECT `+deliveryCols+` FROM webhook_deliveries
		WHERE tenant_id = ? AND webhook_id = ? AND id < ? ORDER BY id DESC LIMIT ?`, tenantID, webhookID, before, limit+1)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var out []model.WebhookDelivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, "", err
		}
		out = append(out, *d)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	if len(out) <= limit {
		return out, "", nil
	}
	out = out[:limit]
	return out, encodeCursor(cursor{I: "w", N: out[limit-1].ID, T: "deliveries"}), nil
}

// EnqueueDeliveries records pending deliveries; an event already queued for
// a webhook is skipped, so a redelivered bus message does not send twice.
func (db *DB) EnqueueDeliveries(ctx context.Context, ds []model.WebhookDelivery) error {
	return db.Update(ctx, func(st store.Tx) error {
		t := st.(*tx)
		for _, d := range ds {
			if _, err := t.exec(ctx, `INSERT INTO webhook_deliveries (webhook_id, tenant_id, event_id, event_type, payload,
				attempts, status, last_code, last_error, next_attempt, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, 0, 'pending', 0, '', ?, ?, ?) ON CONFLICT DO NOTHING`,
				d.WebhookID, d.TenantID, d.EventID, d.EventType, d.Payload, ptrMicro(d.NextAttempt),
				toMicro(d.CreatedAt), toMicro(d.CreatedAt)); err != nil {
				return mapErr(err, "")
			}
		}
		return nil
	})
}

func (db *DB) DueDeliveries(ctx context.Context, now time.Time, limit int) ([]model.WebhookDelivery, error) {
	rows, err := db.w.QueryContext(ctx, db.d.rebind(`SELECT `+deliveryCols+` FROM webhook_deliveries
		WHERE status = 'pending' AND next_attempt <= ? ORDER BY next_attempt, id LIMIT ?`), toMicro(now), clampLimit(limit, 50, 500))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []model.WebhookDelivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *d)
	}
	return out, rows.Err()
}

func (db *DB) UpdateDelivery(ctx context.Context, d *model.WebhookDelivery) error {
	if d.ID == 0 {
		return errors.New("delivery has no id")
	}
	res, err := db.w.ExecContext(ctx, db.d.rebind(`UPDATE webhook_deliveries SET attempts = ?, status = ?, last_code = ?,
		last_error = ?, next_attempt = ?, updated_at = ? WHERE id = ?`),
		d.Attempts, d.Status, d.LastCode, d.LastError, ptrMicro(d.NextAttempt), toMicro(d.UpdatedAt), d.ID)
	if err != nil {
		return err
	}
	return mustAffect(res)
}
