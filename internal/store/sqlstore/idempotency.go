package sqlstore

import (
	"context"
	"errors"
	"time"

	"github.com/steward-iot/steward/internal/store"
)

// staleReservation is how long an unfinished reservation blocks its key;
// after that the request is assumed to have died and may be retried.
const staleReservation = time.Minute

// ReserveIdempotency claims (scope, key) for a new request. It returns nil
// when the caller now owns the key, or the existing record when the key was
// used before (finished: replay it; unfinished: the first request is still
// running).
func (db *DB) ReserveIdempotency(ctx context.Context, r *store.IdempotencyRecord) (*store.IdempotencyRecord, error) {
	if r.CreatedAt.IsZero() {
		r.CreatedAt = time.Now().UTC()
	}
	var existing *store.IdempotencyRecord
	err := db.Update(ctx, func(st store.Tx) error {
		t := st.(*tx)
		var e store.IdempotencyRecord
		var created int64
		err := t.row(ctx, `SELECT scope, key, request_hash, status, body, created_at FROM idempotency
			WHERE scope = ? AND key = ?`+t.d.forUpdate, r.Scope, r.Key).
			Scan(&e.Scope, &e.Key, &e.RequestHash, &e.Status, &e.Body, &created)
		switch {
		case err == nil:
			e.CreatedAt = fromMicro(created)
			if e.Status == 0 && time.Since(e.CreatedAt) > staleReservation {
				_, err := t.exec(ctx, `UPDATE idempotency SET request_hash = ?, created_at = ? WHERE scope = ? AND key = ?`,
					r.RequestHash, toMicro(r.CreatedAt), r.Scope, r.Key)
				return err
			}
			existing = &e
			return nil
		case errors.Is(mapErr(err, ""), store.ErrNotFound):
			_, err := t.exec(ctx, `INSERT INTO idempotency (scope, key, request_hash, status, body, created_at)
				VALUES (?, ?, ?, 0, NULL, ?)`, r.Scope, r.Key, r.RequestHash, toMicro(r.CreatedAt))
			return mapErr(err, "idempotency key")
		default:
			return err
		}
	})
	return existing, err
}

func (db *DB) CompleteIdempotency(ctx context.Context, r *store.IdempotencyRecord) error {
	_, err := db.w.ExecContext(ctx, db.d.rebind(`UPDATE idempotency SET status = ?, body = ? WHERE scope = ? AND key = ?`),
		r.Status, r.Body, r.Scope, r.Key)
	return err
}

func (db *DB) ReleaseIdempotency(ctx context.Context, scope, key string) error {
	_, err := db.w.ExecContext(ctx, db.d.rebind(`DELETE FROM idempotency WHERE scope = ? AND key = ? AND status = 0`), scope, key)
	return err
}
