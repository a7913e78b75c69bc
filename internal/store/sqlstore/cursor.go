package sqlstore

import (
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
