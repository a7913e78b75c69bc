package sqlstore

import (
	"context"
	"encoding/base64"
	"encoding/json"

	"github.com/steward-iot/steward/internal/store"
)

// A cursor is the sort key and ID of the last row of a page, so the next
// page continues after it even when rows are added or removed meanwhile.
// Encoded as base64url JSON: opaque to clients, checked on the way in.
type cursor struct {
	K string `json:"k,omitempty"` // sort key (string form)
	N int64  `json:"n,omitempty"` // sort key (numeric form)
	I string `json:"i"`           // row ID
	S string `json:"s,omitempty"` // sort field the cursor belongs to
	D bool   `json:"d,omitempty"` // descending order
	T string `json:"t,omitempty"` // the list (table) the cursor belongs to
}

func encodeCursor(c cursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (*cursor, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) > 1024 {
		return nil, store.ErrBadCursor
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, store.ErrBadCursor
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil || c.I == "" {
		return nil, store.ErrBadCursor
	}
	return &c, nil
}

// decodeCursorOf decodes a cursor and checks that it was made by the list
// named kind, so a cursor of one list is not silently used on another.
func decodeCursorOf(s, kind string) (*cursor, error) {
	c, err := decodeCursor(s)
	if err != nil || c == nil {
		return c, err
	}
	if c.T != kind {
		return nil, store.ErrBadCursor
	}
	return c, nil
}

// page describes one keyset-paged list: query is a SELECT with a WHERE
// clause and no ORDER BY, keyCol a unique column to order by, kind binds
// the list's cursors to it.
type page struct {
	query, keyCol, kind string
	desc                bool // newest first
	defLimit            int  // when the caller asks for none
}

// keysetPage reads one page of p: the rows after the cursor's key, at most
// the asked limit, and the cursor of the next page ("" on the last one).
func keysetPage[T any](ctx context.Context, r reader, p page, args []any, o store.ListOptions,
	scan func(scanner) (*T, error), key func(T) string) ([]T, string, error) {
	c, err := decodeCursorOf(o.Cursor, p.kind)
	if err != nil {
		return nil, "", err
	}
	limit := clampLimit(o.Limit, p.defLimit, 1000)
	cmp, dir := ">", "ASC"
	if p.desc {
		cmp, dir = "<", "DESC"
	}
	q := p.query
	if c != nil {
		q += ` AND ` + p.keyCol + ` ` + cmp + ` ?`
		args = append(args, c.I)
	}
	rows, err := r.query(ctx, q+` ORDER BY `+p.keyCol+` `+dir+` LIMIT ?`, append(args, limit+1)...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
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
	return out, encodeCursor(cursor{I: key(out[limit-1]), T: p.kind}), nil
}

// pageByKey pages q ascending by keyCol, 100 rows unless asked otherwise.
func pageByKey[T any](ctx context.Context, r reader, q, keyCol, kind string, args []any, o store.ListOptions,
	scan func(scanner) (*T, error), key func(T) string) ([]T, string, error) {
	return keysetPage(ctx, r, page{query: q, keyCol: keyCol, kind: kind, defLimit: 100}, args, o, scan, key)
}

// queryAll runs q and scans every row with scan.
func queryAll[T any](ctx context.Context, r reader, scan func(scanner) (*T, error), q string, args ...any) ([]T, error) {
	rows, err := r.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *v)
	}
	return out, rows.Err()
}

// scanString reads a one-column row.
func scanString(s scanner) (*string, error) {
	var v string
	return &v, s.Scan(&v)
}
