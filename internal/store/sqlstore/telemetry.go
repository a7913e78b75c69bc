package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

type pointKey struct{ tenant, device, metric string }

// seriesCache maps (tenant, device, metric) to its series ID for one DB;
// filled after commit only, so it never holds an ID that rolled back. An
// ID can still go stale: erasing a device's data deletes its series, here
// or on another node. The write that finds one (see writeTelemetry)
// empties the cache and starts again.
type seriesCache struct {
	mu  sync.RWMutex
	ids map[pointKey]int64
	gen uint64 // bumped when emptied: IDs read before are not stored
}

// reset empties the cache.
func (c *seriesCache) reset() {
	c.mu.Lock()
	clear(c.ids)
	c.gen++
	c.mu.Unlock()
}

// errStaleSeries: a cached series ID no longer names its series.
var errStaleSeries = errors.New("a cached telemetry series no longer exists")

const maxCachedSeries = 1 << 20

var seriesCaches sync.Map // *DB → *seriesCache

func (db *DB) series() *seriesCache {
	if c, ok := seriesCaches.Load(db); ok {
		return c.(*seriesCache)
	}
	c, _ := seriesCaches.LoadOrStore(db, &seriesCache{ids: map[pointKey]int64{}})
	return c.(*seriesCache)
}

// WriteTelemetry inserts the points and moves the series' last values
// forward in one transaction. Duplicates inside the batch keep the last
// one (both backends refuse to upsert one row twice in a statement).
//
// It is the ingestion's single writer on SQLite, so the work around the
// statements is kept to one map lookup per point: rows name their series
// by a slot in the batch and are sorted by integers.
func (db *DB) WriteTelemetry(ctx context.Context, points []model.TelemetryPoint) error {
	err := db.writeTelemetry(ctx, points)
	if errors.Is(err, errStaleSeries) {
		// Rolled back whole; with the cache emptied every series is read
		// (or made) again.
		err = db.writeTelemetry(ctx, points)
	}
	return err
}

func (db *DB) writeTelemetry(ctx context.Context, points []model.TelemetryPoint) error {
	if len(points) == 0 {
		return nil
	}
	slots := make(map[pointKey]int32, 64)
	var keys []pointKey // by slot
	rows := make([]pointRow, len(points))
	for i, p := range points {
		k := pointKey{p.TenantID, p.DeviceID, p.Metric}
		slot, ok := slots[k]
		if !ok {
			slot = int32(len(keys))
			slots[k] = slot
			keys = append(keys, k)
		}
		rows[i] = pointRow{slot: slot, ts: toMicro(p.Time), i: int32(i)}
	}
	cache := db.series()
	ids := make([]int64, len(keys)) // by slot
	var missing []int32
	cache.mu.RLock()
	gen := cache.gen
	for slot, k := range keys {
		if id, ok := cache.ids[k]; ok {
			ids[slot] = id
		} else {
			missing = append(missing, int32(slot))
		}
	}
	cache.mu.RUnlock()
	// Rows are locked in one order (series, then time) in every
	// transaction: batches of several nodes touching the same series at
	// once would otherwise deadlock.
	slices.SortFunc(missing, func(a, b int32) int {
		ka, kb := keys[a], keys[b]
		return cmp.Or(cmp.Compare(ka.tenant, kb.tenant), cmp.Compare(ka.device, kb.device), cmp.Compare(ka.metric, kb.metric))
	})

	sqlTx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("starting a transaction: %w", err)
	}
	fail := func(err error) error {
		sqlTx.Rollback()
		if errors.Is(err, errStaleSeries) {
			// Rolled back whole; the caller starts again with the cache
			// emptied, so every series is read (or made) again.
			cache.reset()
			return err
		}
		return fmt.Errorf("writing telemetry: %w", err)
	}
	if len(missing) > 0 {
		if err := resolveSeries(ctx, sqlTx, db.d, keys, missing, ids); err != nil {
			return fail(err)
		}
	}
	// By series, time and arrival; of one series and time the last to
	// arrive is kept, and the last row of a series is its newest value.
	for j := range rows {
		rows[j].id = ids[rows[j].slot]
	}
	slices.SortFunc(rows, func(a, b pointRow) int {
		return cmp.Or(cmp.Compare(a.id, b.id), cmp.Compare(a.ts, b.ts), cmp.Compare(a.i, b.i))
	})
	kept := rows[:0]
	for j, r := range rows {
		if j+1 < len(rows) && rows[j+1].id == r.id {
			if rows[j+1].slot != r.slot {
				// Two keys with one ID: a cached ID went stale and now
				// names the other key's new series (SQLite gives out the
				// largest ID again); their points would be merged.
				return fail(errStaleSeries)
			}
			if rows[j+1].ts == r.ts {
				continue
			}
		}
		kept = append(kept, r)
	}
	rows = kept
	// Points go many to a statement (few calls into the driver, few
	// round trips).
	if err := insertPoints(ctx, sqlTx, db.d, rows, points); err != nil {
		return fail(err)
	}
	// Each series' newest point of the batch becomes its last value, if it
	// is not older than the one stored.
	var newest []pointRow
	for j, r := range rows {
		if j+1 < len(rows) && rows[j+1].id == r.id {
			continue // not the series' newest
		}
		newest = append(newest, r)
	}
	if err := updateLastValues(ctx, sqlTx, db.d, newest, keys, points); err != nil {
		return fail(err)
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("committing telemetry: %w", err)
	}
	if len(missing) > 0 {
		cache.mu.Lock()
		if cache.gen == gen { // else emptied meanwhile: these may be stale already
			if len(cache.ids)+len(missing) > maxCachedSeries {
				clear(cache.ids)
			}
			for _, slot := range missing {
				cache.ids[keys[slot]] = ids[slot]
			}
		}
		cache.mu.Unlock()
	}
	return nil
}

// resolveSeries finds or makes the series of the keys in missing (sorted)
// and sets their IDs, many keys to a statement: first a look for those
// that exist (after a restart, with the cache empty, nearly all of them),
// then an insert of the others, then a look for what that insert made or
// another writer made meanwhile. One statement per key was a round trip
// per series to PostgreSQL, for every series of a node's devices after it
// started.
func resolveSeries(ctx context.Context, tx *sql.Tx, d *dialect, keys []pointKey, missing []int32, ids []int64) error {
	have := make([]bool, len(keys)) // by slot
	look := func(slots []int32) error {
		bySlot := make(map[pointKey]int32, min(len(slots), chunkSizes[0]))
		args := make([]any, 0, 3*chunkSizes[0])
		return inChunks(slots, func(chunk []int32) error {
			clear(bySlot)
			args = args[:0]
			for _, slot := range chunk {
				k := keys[slot]
				bySlot[k] = slot
				args = append(args, k.tenant, k.device, k.metric)
			}
			q := chunkQuery(d, "find series", len(chunk), func(n int) string {
				return `SELECT s.id, s.tenant_id, s.device_id, s.metric FROM telemetry_series s JOIN (VALUES ` + seriesKeyRow +
					strings.Repeat(`, `+seriesKeyRow, n-1) + `) AS v
					ON s.tenant_id = v.column1 AND s.device_id = v.column2 AND s.metric = v.column3`
			})
			res, err := tx.QueryContext(ctx, q, args...)
			if err != nil {
				return err
			}
			for res.Next() {
				var id int64
				var k pointKey
				if err := res.Scan(&id, &k.tenant, &k.device, &k.metric); err != nil {
					res.Close()
					return err
				}
				if slot, ok := bySlot[k]; ok {
					ids[slot], have[slot] = id, true
				}
			}
			if err := res.Close(); err != nil {
				return err
			}
			return res.Err()
		})
	}
	if err := look(missing); err != nil {
		return err
	}
	var absent []int32
	for _, slot := range missing {
		if !have[slot] {
			absent = append(absent, slot)
		}
	}
	if len(absent) == 0 {
		return nil
	}
	args := make([]any, 0, 3*chunkSizes[0])
	err := inChunks(absent, func(chunk []int32) error {
		args = args[:0]
		for _, slot := range chunk {
			k := keys[slot]
			args = append(args, k.tenant, k.device, k.metric)
		}
		q := chunkQuery(d, "make series", len(chunk), func(n int) string {
			return `INSERT INTO telemetry_series (tenant_id, device_id, metric) VALUES (?, ?, ?)` +
				strings.Repeat(`, (?, ?, ?)`, n-1) + ` ON CONFLICT (tenant_id, device_id, metric) DO NOTHING`
		})
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	})
	if err != nil {
		return err
	}
	if err := look(absent); err != nil {
		return err
	}
	for _, slot := range absent {
		if !have[slot] {
			k := keys[slot]
			return fmt.Errorf("telemetry series %s/%s/%s neither found nor made", k.tenant, k.device, k.metric)
		}
	}
	return nil
}

// seriesKeyRow is a series key in resolveSeries' VALUES, cast so that
// PostgreSQL knows the parameters' types.
const seriesKeyRow = `(CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT))`

// lastValueRow is one series' new last value in updateLastValues: a row
// of VALUES, cast so that PostgreSQL knows the types of the parameters.
const lastValueRow = `(CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS DOUBLE PRECISION), ` +
	`CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT))`

// updateLastValues moves the series' last values forward, many series to
// a statement (one statement per series was most of a batch's round
// trips on PostgreSQL). The update names each series in full: an ID from
// the cache that now belongs to no series, or (SQLite reuses the largest
// IDs) to another one, changes nothing; so does a point older than the
// stored last value. A series the update did not change is looked at
// alone: errStaleSeries if its ID is stale.
func updateLastValues(ctx context.Context, tx *sql.Tx, d *dialect, rows []pointRow, keys []pointKey, points []model.TelemetryPoint) error {
	updated := make(map[int64]bool, len(rows))
	args := make([]any, 0, 8*chunkSizes[0])
	err := inChunks(rows, func(chunk []pointRow) error {
		args = args[:0]
		for _, r := range chunk {
			p, k := &points[r.i], keys[r.slot]
			args = append(args, r.id, r.ts, string(p.Kind), p.Num, p.Text, k.tenant, k.device, k.metric)
		}
		q := chunkQuery(d, "last values", len(chunk), func(n int) string {
			return `UPDATE telemetry_series SET last_ts = v.column2, last_kind = v.column3, last_num = v.column4, last_txt = v.column5
				FROM (VALUES ` + lastValueRow + strings.Repeat(`, `+lastValueRow, n-1) + `) AS v
				WHERE telemetry_series.id = v.column1 AND telemetry_series.tenant_id = v.column6
				AND telemetry_series.device_id = v.column7 AND telemetry_series.metric = v.column8
				AND telemetry_series.last_ts <= v.column2
				RETURNING telemetry_series.id`
		})
		res, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		for res.Next() {
			var id int64
			if err := res.Scan(&id); err != nil {
				res.Close()
				return err
			}
			updated[id] = true
		}
		if err := res.Close(); err != nil {
			return err
		}
		return res.Err()
	})
	if err != nil {
		return err
	}
	for _, r := range rows {
		if !updated[r.id] {
			// Older than the last value, or a stale ID.
			if err := checkSeries(ctx, tx, d, r.id, keys[r.slot]); err != nil {
				return err
			}
		}
	}
	return nil
}

// chunkSizes are the statement sizes of the chunked telemetry writes
// (inChunks), largest first and ending in 1: a batch's remainder goes in a
// few statements, not one per row, each a round trip to PostgreSQL.
var chunkSizes = []int{64, 16, 4, 1}

// chunkQueries holds the statements of the chunked telemetry writes, by
// dialect, statement and size: built and rebound once, not per chunk.
var chunkQueries sync.Map // chunkQueryKey → string

type chunkQueryKey struct {
	d    *dialect
	name string
	n    int
}

// chunkQuery returns build(n), rebound for d, from chunkQueries.
func chunkQuery(d *dialect, name string, n int, build func(n int) string) string {
	k := chunkQueryKey{d, name, n}
	if q, ok := chunkQueries.Load(k); ok {
		return q.(string)
	}
	q := d.rebind(build(n))
	chunkQueries.Store(k, q)
	return q
}

// inChunks calls fn on consecutive chunks of s, each as large as the
// largest of chunkSizes that the rest of s fills: few distinct statements
// (each prepared once per connection), few round trips for any length.
func inChunks[T any](s []T, fn func(chunk []T) error) error {
	for len(s) > 0 {
		n := 1
		for _, size := range chunkSizes {
			if len(s) >= size {
				n = size
				break
			}
		}
		if err := fn(s[:n]); err != nil {
			return err
		}
		s = s[n:]
	}
	return nil
}

// checkSeries returns errStaleSeries unless series id is k's.
func checkSeries(ctx context.Context, tx *sql.Tx, d *dialect, id int64, k pointKey) error {
	var got pointKey
	err := tx.QueryRowContext(ctx, d.rebind(`SELECT tenant_id, device_id, metric FROM telemetry_series WHERE id = ?`), id).
		Scan(&got.tenant, &got.device, &got.metric)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && got != k) {
		return errStaleSeries
	}
	return err
}

// pointRow is a point of a batch being written: its series (slot in the
// batch, then ID), time and place in the batch.
type pointRow struct {
	id   int64
	ts   int64
	slot int32
	i    int32
}

const pointConflict = ` ON CONFLICT (series_id, ts) DO UPDATE SET kind = excluded.kind, num = excluded.num, txt = excluded.txt`

// insertPoints writes rows; numbers (nearly all points) go through a
// statement of their own that binds three values per point instead of
// five. Rows hold no two points of one series and time, so the order of
// the two statements does not matter.
func insertPoints(ctx context.Context, tx *sql.Tx, d *dialect, rows []pointRow, points []model.TelemetryPoint) error {
	nums := make([]pointRow, 0, len(rows))
	var others []pointRow
	for _, r := range rows {
		if points[r.i].Kind == model.KindNumber {
			nums = append(nums, r)
		} else {
			others = append(others, r)
		}
	}
	a := make([]any, 0, 5*chunkSizes[0])
	err := inChunks(nums, func(chunk []pointRow) error {
		a = a[:0]
		for _, r := range chunk {
			a = append(a, r.id, r.ts, points[r.i].Num)
		}
		return execPoints(ctx, tx, d, "numbers", len(chunk), `(?, ?, 'n', ?, '')`, a)
	})
	if err != nil {
		return err
	}
	return inChunks(others, func(chunk []pointRow) error {
		a = a[:0]
		for _, r := range chunk {
			p := &points[r.i]
			a = append(a, r.id, r.ts, string(p.Kind), p.Num, p.Text)
		}
		return execPoints(ctx, tx, d, "points", len(chunk), `(?, ?, ?, ?, ?)`, a)
	})
}

// execPoints inserts n rows of the form row. A point whose series and time
// are stored already replaces the stored one. On SQLite a plain insert is
// tried first, a quarter cheaper than the upsert: a resent point is rare,
// and a failed statement undoes only itself, not the transaction (on
// PostgreSQL it would end the transaction, so the upsert goes first there).
func execPoints(ctx context.Context, tx *sql.Tx, d *dialect, name string, n int, row string, args []any) error {
	insert := func(n int) string {
		return `INSERT INTO telemetry (series_id, ts, kind, num, txt) VALUES ` + row + strings.Repeat(`, `+row, n-1)
	}
	if d == sqliteDialect {
		_, err := tx.ExecContext(ctx, chunkQuery(d, name+" plain", n, insert), args...)
		var se *sqlite.Error
		if !errors.As(err, &se) || se.Code() != sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
			return err
		}
	}
	_, err := tx.ExecContext(ctx, chunkQuery(d, name, n, func(n int) string { return insert(n) + pointConflict }), args...)
	return err
}

func (r reader) LatestTelemetry(ctx context.Context, tenantID, deviceID string) ([]model.TelemetryPoint, error) {
	rows, err := r.query(ctx, `SELECT metric, last_ts, last_kind, last_num, last_txt FROM telemetry_series
		WHERE tenant_id = ? AND device_id = ? AND last_kind <> '' ORDER BY metric`, tenantID, deviceID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []model.TelemetryPoint
	for rows.Next() {
		p := model.TelemetryPoint{TenantID: tenantID, DeviceID: deviceID}
		var ts int64
		var kind string
		if err := rows.Scan(&p.Metric, &ts, &kind, &p.Num, &p.Text); err != nil {
			return nil, err
		}
		p.Time, p.Kind = fromMicro(ts), model.ValueKind(kind)
		out = append(out, p)
	}
	return out, rows.Err()
}

// seriesID finds the tenant's series of a device's metric (0 when none).
func (r reader) seriesID(ctx context.Context, tenantID, deviceID, metric string) (int64, error) {
	var id int64
	err := r.row(ctx, `SELECT id FROM telemetry_series WHERE tenant_id = ? AND device_id = ? AND metric = ?`,
		tenantID, deviceID, metric).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return id, err
}

func (r reader) QueryTelemetry(ctx context.Context, tenantID, deviceID, metric string, from, to time.Time, limit int) ([]model.TelemetryPoint, error) {
	id, err := r.seriesID(ctx, tenantID, deviceID, metric)
	if err != nil || id == 0 {
		return nil, err
	}
	rows, err := r.query(ctx, `SELECT ts, kind, num, txt FROM telemetry WHERE series_id = ? AND ts >= ? AND ts < ?
		ORDER BY ts LIMIT ?`, id, from.UnixMicro(), to.UnixMicro(), clampLimit(limit, 1000, 100000))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []model.TelemetryPoint
	for rows.Next() {
		p := model.TelemetryPoint{TenantID: tenantID, DeviceID: deviceID, Metric: metric}
		var ts int64
		var kind string
		if err := rows.Scan(&ts, &kind, &p.Num, &p.Text); err != nil {
			return nil, err
		}
		p.Time, p.Kind = fromMicro(ts), model.ValueKind(kind)
		out = append(out, p)
	}
	return out, rows.Err()
}

func (r reader) DownsampleTelemetry(ctx context.Context, tenantID, deviceID, metric string, from, to time.Time, step time.Duration) ([]model.TelemetryBucket, error) {
	st := step.Microseconds()
	if st <= 0 {
		return nil, fmt.Errorf("downsample: step must be at least 1µs")
	}
	id, err := r.seriesID(ctx, tenantID, deviceID, metric)
	if err != nil || id == 0 {
		return nil, err
	}
	f := from.UnixMicro()
	rows, err := r.query(ctx, `SELECT (ts - ?) / ? AS b, COUNT(*), AVG(num), MIN(num), MAX(num) FROM telemetry
		WHERE series_id = ? AND ts >= ? AND ts < ? AND kind IN ('n', 'b') GROUP BY b ORDER BY b`, f, st, id, f, to.UnixMicro())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []model.TelemetryBucket
	for rows.Next() {
		var b model.TelemetryBucket
		var i int64
		if err := rows.Scan(&i, &b.Count, &b.Avg, &b.Min, &b.Max); err != nil {
			return nil, err
		}
		b.Start = fromMicro(f + i*st)
		out = append(out, b)
	}
	return out, rows.Err()
}

func (r reader) GetTelemetryRetention(ctx context.Context, tenantID string) (time.Duration, error) {
	var us int64
	err := r.row(ctx, `SELECT retention_us FROM telemetry_retention WHERE tenant_id = ?`, tenantID).Scan(&us)
	if err != nil {
		if err = mapErr(err, ""); errors.Is(err, store.ErrNotFound) {
			return 0, nil
		}
		return 0, err
	}
	return time.Duration(us) * time.Microsecond, nil
}

func (t *tx) SetTelemetryRetention(ctx context.Context, tenantID string, d time.Duration) error {
	if d <= 0 {
		_, err := t.exec(ctx, `DELETE FROM telemetry_retention WHERE tenant_id = ?`, tenantID)
		return err
	}
	_, err := t.exec(ctx, `INSERT INTO telemetry_retention (tenant_id, retention_us) VALUES (?, ?)
		ON CONFLICT (tenant_id) DO UPDATE SET retention_us = excluded.retention_us`, tenantID, d.Microseconds())
	return mapErr(err, "")
}

func (db *DB) TelemetryRetentions(ctx context.Context) (map[string]time.Duration, error) {
	rows, err := db.reader.query(ctx, `SELECT tenant_id, retention_us FROM telemetry_retention`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]time.Duration{}
	for rows.Next() {
		var id string
		var us int64
		if err := rows.Scan(&id, &us); err != nil {
			return nil, err
		}
		out[id] = time.Duration(us) * time.Microsecond
	}
	return out, rows.Err()
}

func (db *DB) PruneTelemetry(ctx context.Context, tenantID string, before time.Time, limit int) (int64, error) {
	b := before.UnixMicro()
	res, err := db.w.ExecContext(ctx, db.d.rebind(`DELETE FROM telemetry WHERE (series_id, ts) IN
		(SELECT t.series_id, t.ts FROM telemetry t JOIN telemetry_series s ON s.id = t.series_id
		 WHERE s.tenant_id = ? AND t.ts < ? LIMIT ?)`), tenantID, b, clampLimit(limit, 10000, 100000))
	if err != nil {
		return 0, fmt.Errorf("pruning telemetry: %w", err)
	}
	n, _ := res.RowsAffected()
	if _, err := db.w.ExecContext(ctx, db.d.rebind(`UPDATE telemetry_series SET last_ts = 0, last_kind = '', last_num = 0, last_txt = ''
		WHERE tenant_id = ? AND last_ts < ? AND last_kind <> ''`), tenantID, b); err != nil {
		return n, fmt.Errorf("pruning last values: %w", err)
	}
	return n, nil
}
