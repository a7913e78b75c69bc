package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// Emit writes an event to the outbox in the caller's transaction; the relay
// publishes it on the bus after commit, so an event exists exactly when the
// change it reports does.
func (t *tx) Emit(ctx context.Context, ev *model.Event) error {
	if ev.ID == "" || ev.Type == "" {
		return errors.New("event: id and type are required")
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	_, err := t.exec(ctx, `INSERT INTO outbox (id, tenant_id, type, subject, at, data) VALUES (?, ?, ?, ?, ?, ?)`,
		ev.ID, ev.TenantID, ev.Type, ev.Subject, toMicro(ev.Time), []byte(ev.Data))
	return mapErr(err, "event "+ev.ID)
}

func (db *DB) PendingEvents(ctx context.Context, limit int) ([]model.Event, error) {
	rows, err := db.w.QueryContext(ctx, db.d.rebind(`SELECT id, tenant_id, type, subject, at, data FROM outbox ORDER BY seq LIMIT ?`),
		clampLimit(limit, 100, 1000))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []model.Event
	for rows.Next() {
		var e model.Event
		var at int64
		var data []byte
		if err := rows.Scan(&e.ID, &e.TenantID, &e.Type, &e.Subject, &at, &data); err != nil {
			return nil, err
		}
		e.Time = fromMicro(at)
		if len(data) > 0 {
			e.Data = json.RawMessage(data)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func (db *DB) MarkEventsPublished(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	ph := strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ")
	_, err := db.w.ExecContext(ctx, db.d.rebind(`DELETE FROM outbox WHERE id IN (`+ph+`)`), args...)
	return err
}

var _ = store.ErrNotFound
