package store

import (
	"errors"
	"testing"
)

func TestConflictErrorMessage(t *testing.T) {
	for _, c := range []struct {
		what, want string
	}{
		{"serial \"A-1\"", "serial \"A-1\" already exists"},
		{"", "a record with the same unique values already exists"}, // never ": already exists"
	} {
		err := error(&ConflictError{What: c.what})
		if err.Error() != c.want {
			t.Errorf("ConflictError{%q}: %q, want %q", c.what, err, c.want)
		}
		if !errors.Is(err, ErrConflict) {
			t.Errorf("ConflictError{%q} is not ErrConflict", c.what)
		}
	}
}
