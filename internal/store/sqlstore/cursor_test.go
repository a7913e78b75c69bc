package sqlstore

import (
	"errors"
	"testing"

	"github.com/steward-iot/steward/internal/store"
)

// FuzzDecodeCursor: any string is either a cursor this package made, which
// re-encodes to the same value, or ErrBadCursor — never a panic.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor(cursor{I: "dev_01", S: "id"}))
	f.Add(encodeCursor(cursor{K: "1.2", N: 7, I: "x", S: "firmware_version"}))
	f.Add("")
	f.Add("!!!")
	f.Add("eyJpIjoiIn0")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeCursor(s)
		if err != nil {
			if !errors.Is(err, store.ErrBadCursor) {
				t.Fatalf("unexpected error type: %v", err)
			}
			return
		}
		if c == nil {
			if s != "" {
				t.Fatalf("nil cursor for %q", s)
			}
			return
		}
		if c.I == "" {
			t.Fatal("accepted a cursor without an ID")
		}
		again, err := decodeCursor(encodeCursor(*c))
		if err != nil || *again != *c {
			t.Fatalf("round trip changed %+v to %+v (%v)", c, again, err)
		}
	})
}
