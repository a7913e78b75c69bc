package ota

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestBlobs(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenBlobs(dir)
	if err != nil {
		t.Fatal(err)
	}
	content := bytes.Repeat([]byte("blob"), 1000)
	sum := sha256.Sum256(content)
	want := hex.EncodeToString(sum[:])
	for _, tc := range []struct {
		name  string
		data  []byte
		limit int64
		err   error
	}{
		{"fits", content, 4000, nil},
		{"same again", content, 1 << 20, nil},
		{"one byte over", content, 3999, ErrTooLarge},
		{"empty", nil, 10, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, n, err := b.Put(bytes.NewReader(tc.data), tc.limit)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			s := sha256.Sum256(tc.data)
			if d != hex.EncodeToString(s[:]) || n != int64(len(tc.data)) {
				t.Fatalf("digest %s length %d", d, n)
			}
		})
	}
	// Concurrent writers of the same content end with one complete blob.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, _, err := b.Put(bytes.NewReader(content), 1<<20); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	f, err := b.Open(want)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, content) {
		t.Fatal("stored blob differs")
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
		t.Fatalf("temporary files left: %d", len(tmp))
	}
	if _, err := b.Open("../../etc/passwd"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a path outside the store: %v", err)
	}
	if err := b.Remove(want); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Open(want); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("removed blob: %v", err)
	}
}
