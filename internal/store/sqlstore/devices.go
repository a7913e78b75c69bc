package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

const deviceCols = `d.id, d.tenant_id, d.product_id, d.serial, d.name, d.state, d.tags, d.attrs, d.fw_version,
	d.created_at, d.updated_at, d.last_seen, d.version`

func scanDevice(s scanner) (*model.Device, error) {
	var d model.Device
	var tags, attrs string
	var created, updated, seen int64
	if err := s.Scan(&d.ID, &d.TenantID, &d.ProductID, &d.Serial, &d.Name, &d.State, &tags, &attrs,
		&d.FirmwareVersion, &created, &updated, &seen, &d.Version); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(tags), &d.Tags); err != nil {
		return nil, fmt.Errorf("device %s: stored tags: %w", d.ID, err)
	}
	if err := json.Unmarshal([]byte(attrs), &d.Attributes); err != nil {
		return nil, fmt.Errorf("device %s: stored attributes: %w", d.ID, err)
	}
	if d.Tags == nil {
		d.Tags = []string{}
	}
	if d.Attributes == nil {
		d.Attributes = map[string]string{}
	}
	d.CreatedAt, d.UpdatedAt = fromMicro(created), fromMicro(updated)
	d.LastSeen = ptrFromMicro(seen)
	return &d, nil
}

func (r reader) GetDevice(ctx context.Context, tenantID, id string) (*model.Device, error) {
	d, err := scanDevice(r.row(ctx, `SELECT `+deviceCols+` FROM devices d WHERE d.tenant_id = ? AND d.id = ?`, tenantID, id))
	return d, mapErr(err, "")
}

// sortColumn maps a sort field to its column; numeric columns page with
// cursor.N, text columns with cursor.K.
func sortColumn(f model.SortField) (col string, numeric bool) {
	switch f {
	case model.SortSerial:
		return "d.serial", false
	case model.SortLastSeen:
		return "d.last_seen", true
	case model.SortFirmware:
		return "d.fw_key", false
	case model.SortCreated:
		return "d.created_at", true
	}
	return "d.id", false
}

// filter builds the WHERE clause of a device query, resolving a group
// into membership (static) or its stored query (dynamic).
func (r reader) filter(ctx context.Context, tenantID string, q model.DeviceQuery, depth int) ([]string, []any, error) {
	if err := q.Validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", store.ErrBadQuery, err)
	}
	var where []string
	var args []any
	add := func(cond string, a ...any) {
		where = append(where, cond)
		args = append(args, a...)
	}
	if q.ProductID != "" {
		add("d.product_id = ?", q.ProductID)
	}
	if len(q.States) > 0 {
		ph := strings.TrimSuffix(strings.Repeat("?, ", len(q.States)), ", ")
		a := make([]any, len(q.States))
		for i, s := range q.States {
			a[i] = string(s)
		}
		add("d.state IN ("+ph+")", a...)
	}
	if err := r.setFilters(ctx, tenantID, q, add); err != nil {
		return nil, nil, err
	}
	if q.FirmwareVersion != "" {
		add("d.fw_version = ?", q.FirmwareVersion)
	}
	if q.MinVersion != "" {
		k, _ := model.VersionKey(q.MinVersion)
		add("d.fw_key >= ?", k)
	}
	if q.MaxVersion != "" {
		k, _ := model.VersionKey(q.MaxVersion)
		add("d.fw_key < ? AND d.fw_key <> ''", k)
	}
	if q.SeenAfter != nil {
		add("d.last_seen >= ?", toMicro(*q.SeenAfter))
	}
	if q.SeenBefore != nil {
		add("d.last_seen < ? AND d.last_seen > 0", toMicro(*q.SeenBefore))
	}
	if q.NeverSeen {
		add("d.last_seen = 0")
	}
	if len(q.DeviceIDs) > 0 {
		a := make([]any, len(q.DeviceIDs))
		for i, id := range q.DeviceIDs {
			a[i] = id
		}
		add("d.id IN ("+placeholders(len(a))+")", a...)
	}
	if q.SerialPrefix != "" {
		// Range instead of LIKE so the serial index serves it on both backends.
		add("d.serial >= ? AND d.serial < ?", q.SerialPrefix, q.SerialPrefix+"\U0010FFFF")
	}
	if q.GroupID != "" {
		g, err := r.GetGroup(ctx, tenantID, q.GroupID)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, nil, fmt.Errorf("%w: group %s", store.ErrNotFound, q.GroupID)
			}
			return nil, nil, err
		}
		switch g.Kind {
		case model.GroupStatic:
			add("d.id IN (SELECT device_id FROM group_members WHERE tenant_id = ? AND group_id = ?)", tenantID, g.ID)
		case model.GroupDynamic:
			if depth > 0 || g.Query == nil {
				return nil, nil, fmt.Errorf("%w: dynamic group %s cannot refer to another group", store.ErrBadQuery, g.ID)
			}
			w, a, err := r.filter(ctx, tenantID, *g.Query, depth+1)
			if err != nil {
				return nil, nil, err
			}
			where = append(where, w...)
			args = append(args, a...)
		}
	}
	return where, args, nil
}

func (r reader) QueryDevices(ctx context.Context, tenantID string, q model.DeviceQuery, p model.Page) ([]model.Device, string, error) {
	if p.Sort == "" {
		p.Sort = model.SortID
	}
	if !p.Sort.Valid() {
		return nil, "", fmt.Errorf("%w: cannot sort by %q", store.ErrBadQuery, p.Sort)
	}
	c, err := decodeCursorOf(p.Cursor, "devices")
	if err != nil {
		return nil, "", err
	}
	if c != nil && (c.S != string(p.Sort) || c.D != p.Desc) {
		return nil, "", store.ErrBadCursor
	}
	where, args, err := r.filter(ctx, tenantID, q, 0)
	if err != nil {
		return nil, "", err
	}
	where = append([]string{"d.tenant_id = ?"}, where...)
	args = append([]any{tenantID}, args...)
	col, numeric := sortColumn(p.Sort)
	cmp, dir := ">", "ASC"
	if p.Desc {
		cmp, dir = "<", "DESC"
	}
	if c != nil {
		switch {
		case col == "d.id":
			where = append(where, "d.id "+cmp+" ?")
			args = append(args, c.I)
		case numeric:
			where = append(where, "("+col+", d.id) "+cmp+" (?, ?)")
			args = append(args, c.N, c.I)
		default:
			where = append(where, "("+col+", d.id) "+cmp+" (?, ?)")
			args = append(args, c.K, c.I)
		}
	}
	limit := clampLimit(p.Limit, 50, 1000)
	order := col + " " + dir
	if col != "d.id" {
		order += ", d.id " + dir
	}
	sqlText := `SELECT ` + deviceCols + `, d.fw_key FROM devices d WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY ` + order + ` LIMIT ?`
	rows, err := r.query(ctx, sqlText, append(args, limit+1)...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var out []model.Device
	var keys []string
	for rows.Next() {
		var fwKey string
		d, err := scanDevice(rowWithExtra{rows, &fwKey})
		if err != nil {
			return nil, "", err
		}
		out = append(out, *d)
		keys = append(keys, fwKey)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	if len(out) <= limit {
		return out, "", nil
	}
	out = out[:limit]
	last := out[limit-1]
	next := cursor{I: last.ID, S: string(p.Sort), D: p.Desc, T: "devices"}
	switch p.Sort {
	case model.SortSerial:
		next.K = last.Serial
	case model.SortFirmware:
		next.K = keys[limit-1]
	case model.SortLastSeen:
		next.N = ptrMicro(last.LastSeen)
	case model.SortCreated:
		next.N = toMicro(last.CreatedAt)
	}
	return out, encodeCursor(next), nil
}

// rowWithExtra scans the device columns plus trailing extra columns.
type rowWithExtra struct {
	s     scanner
	extra *string
}

func (r rowWithExtra) Scan(dest ...any) error { return r.s.Scan(append(dest, r.extra)...) }

func (r reader) CountDevices(ctx context.Context, tenantID string, q model.DeviceQuery) (int64, error) {
	where, args, err := r.filter(ctx, tenantID, q, 0)
	if err != nil {
		return 0, err
	}
	where = append([]string{"d.tenant_id = ?"}, where...)
	args = append([]any{tenantID}, args...)
	var n int64
	err = r.row(ctx, `SELECT COUNT(*) FROM devices d WHERE `+strings.Join(where, " AND "), args...).Scan(&n)
	return n, err
}

func (r reader) CountDevicesByState(ctx context.Context, tenantID string) (map[model.State]int64, error) {
	// Kept by triggers (migration 0005), so the summary is 8 rows, not a count.
	rows, err := r.query(ctx, `SELECT state, n FROM device_state_counts WHERE tenant_id = ? AND n <> 0`, tenantID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[model.State]int64{}
	for rows.Next() {
		var s model.State
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[s] = n
	}
	return out, rows.Err()
}

func (r reader) ListTransitions(ctx context.Context, tenantID, deviceID string, o ListOptions) ([]model.Transition, string, error) {
	c, err := decodeCursorOf(o.Cursor, "transitions")
	if err != nil {
		return nil, "", err
	}
	limit := clampLimit(o.Limit, 100, 1000)
	var after int64
	if c != nil {
		after = c.N
	}
	rows, err := r.query(ctx, `SELECT id, device_id, from_state, to_state, actor, reason, at FROM transitions
		WHERE tenant_id = ? AND device_id = ? AND id > ? ORDER BY id LIMIT ?`, tenantID, deviceID, after, limit+1)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var out []model.Transition
	for rows.Next() {
		var t model.Transition
		var at int64
		if err := rows.Scan(&t.ID, &t.DeviceID, &t.From, &t.To, &t.Actor, &t.Reason, &at); err != nil {
			return nil, "", err
		}
		t.At = fromMicro(at)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	if len(out) <= limit {
		return out, "", nil
	}
	out = out[:limit]
	return out, encodeCursor(cursor{I: "t", N: out[limit-1].ID, T: "transitions"}), nil
}

func deviceJSON(d *model.Device) (tags, attrs string, fwKey string, err error) {
	if d.Tags == nil {
		d.Tags = []string{}
	}
	if d.Attributes == nil {
		d.Attributes = map[string]string{}
	}
	tb, _ := json.Marshal(d.Tags)
	ab, _ := json.Marshal(d.Attributes)
	if d.FirmwareVersion != "" {
		if fwKey, err = model.VersionKey(d.FirmwareVersion); err != nil {
			return "", "", "", err
		}
	}
	return string(tb), string(ab), fwKey, nil
}

func (t *tx) CreateDevice(ctx context.Context, d *model.Device) error {
	tags, attrs, fwKey, err := deviceJSON(d)
	if err != nil {
		return err
	}
	if d.Version == 0 {
		d.Version = 1
	}
	_, err = t.exec(ctx, `INSERT INTO devices (id, tenant_id, product_id, serial, name, state, tags, attrs, fw_version, fw_key,
		created_at, updated_at, last_seen, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.ID, d.TenantID, d.ProductID, d.Serial, d.Name, string(d.State), tags, attrs, d.FirmwareVersion, fwKey,
		toMicro(d.CreatedAt), toMicro(d.UpdatedAt), ptrMicro(d.LastSeen), d.Version)
	if err != nil {
		return mapErr(err, "device with serial "+quote(d.Serial)+" of this product")
	}
	return t.writeIndexes(ctx, d)
}

// writeIndexes replaces the tag and attribute rows that make filters fast.
func (t *tx) writeIndexes(ctx context.Context, d *model.Device) error {
	for _, tag := range d.Tags {
		if _, err := t.exec(ctx, `INSERT INTO device_tags (tenant_id, tag, device_id) VALUES (?, ?, ?)`, d.TenantID, tag, d.ID); err != nil {
			return mapErr(err, "tag "+quote(tag))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(d.Attributes)) {
		if _, err := t.exec(ctx, `INSERT INTO device_attrs (tenant_id, key, value, device_id) VALUES (?, ?, ?, ?)`,
			d.TenantID, k, d.Attributes[k], d.ID); err != nil {
			return mapErr(err, "attribute "+quote(k))
		}
	}
	return nil
}

func (t *tx) UpdateDevice(ctx context.Context, d *model.Device) error {
	tags, attrs, fwKey, err := deviceJSON(d)
	if err != nil {
		return err
	}
	res, err := t.exec(ctx, `UPDATE devices SET product_id = ?, serial = ?, name = ?, tags = ?, attrs = ?, fw_version = ?, fw_key = ?,
		updated_at = ?, version = version + 1 WHERE tenant_id = ? AND id = ? AND version = ?`,
		d.ProductID, d.Serial, d.Name, tags, attrs, d.FirmwareVersion, fwKey, toMicro(d.UpdatedAt), d.TenantID, d.ID, d.Version)
	if err != nil {
		return mapErr(err, "device with serial "+quote(d.Serial)+" of this product")
	}
	if err := t.staleOrMissing(ctx, res, d.TenantID, d.ID); err != nil {
		return err
	}
	d.Version++
	if _, err := t.exec(ctx, `DELETE FROM device_tags WHERE device_id = ?`, d.ID); err != nil {
		return err
	}
	if _, err := t.exec(ctx, `DELETE FROM device_attrs WHERE device_id = ?`, d.ID); err != nil {
		return err
	}
	return t.writeIndexes(ctx, d)
}

// staleOrMissing tells a row that moved on from one that is not there.
func (t *tx) staleOrMissing(ctx context.Context, res result, tenantID, id string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := t.GetDevice(ctx, tenantID, id); err != nil {
		return err
	}
	return store.ErrStale
}

func (t *tx) SetDeviceState(ctx context.Context, tenantID string, tr *model.Transition) error {
	res, err := t.exec(ctx, `UPDATE devices SET state = ?, version = version + 1, updated_at = ?
		WHERE tenant_id = ? AND id = ? AND state = ?`, string(tr.To), toMicro(tr.At), tenantID, tr.DeviceID, string(tr.From))
	if err != nil {
		return err
	}
	if err := t.staleOrMissing(ctx, res, tenantID, tr.DeviceID); err != nil {
		return err
	}
	return t.row(ctx, `INSERT INTO transitions (tenant_id, device_id, from_state, to_state, actor, reason, at)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`, tenantID, tr.DeviceID, string(tr.From), string(tr.To), tr.Actor, tr.Reason,
		toMicro(tr.At)).Scan(&tr.ID)
}

func (t *tx) DeleteDevice(ctx context.Context, tenantID, id string) error {
	res, err := t.exec(ctx, `DELETE FROM devices WHERE tenant_id = ? AND id = ?`, tenantID, id)
	if err != nil {
		return err
	}
	return mustAffect(res)
}

func (db *DB) TouchDevice(ctx context.Context, tenantID, id string, at time.Time) error {
	res, err := db.w.ExecContext(ctx, db.d.rebind(`UPDATE devices SET last_seen = ? WHERE tenant_id = ? AND id = ? AND last_seen < ?`),
		toMicro(at), tenantID, id, toMicro(at))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := db.GetDevice(ctx, tenantID, id); err != nil {
			return err
		}
	}
	return nil
}

// drivingRows: a tag or attribute value carried by at most this many
// devices drives the query (its index rows are read and the devices looked
// up by ID); every other one is checked per candidate device with EXISTS,
// which costs the same however common the value is. As IN lists, SQLite
// would materialise every list on every page (277,000 IDs for a tag on a
// third of a million-device fleet).
const drivingRows = 10_000

func (r reader) setFilters(ctx context.Context, tenantID string, q model.DeviceQuery, add func(string, ...any)) error {
	type set struct {
		rows string // FROM … WHERE … of the index table
		args []any
	}
	var sets []set
	for _, tag := range q.Tags {
		sets = append(sets, set{"device_tags WHERE tenant_id = ? AND tag = ?", []any{tenantID, tag}})
	}
	for _, k := range slices.Sorted(maps.Keys(q.Attrs)) {
		sets = append(sets, set{"device_attrs WHERE tenant_id = ? AND key = ? AND value = ?", []any{tenantID, k, q.Attrs[k]}})
	}
	driver, fewest := -1, drivingRows+1
	// PostgreSQL plans IN and EXISTS alike as semi-joins with real
	// statistics; only SQLite needs the probes.
	if r.d == postgresDialect {
		for _, s := range sets {
			add("d.id IN (SELECT device_id FROM "+s.rows+")", s.args...)
		}
		return nil
	}
	for i, s := range sets {
		var n int
		// Bounded: reads at most drivingRows+1 index entries.
		err := r.row(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM `+s.rows+` LIMIT `+strconv.Itoa(drivingRows+1)+`) c`,
			s.args...).Scan(&n)
		if err != nil {
			return err
		}
		if n < fewest {
			driver, fewest = i, n
		}
	}
	for i, s := range sets {
		if i == driver {
			add("d.id IN (SELECT device_id FROM "+s.rows+")", s.args...)
		} else {
			add("EXISTS (SELECT 1 FROM "+s.rows+" AND device_id = d.id)", s.args...)
		}
	}
	return nil
}
