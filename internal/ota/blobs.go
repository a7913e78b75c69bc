// Package ota is the update service: artifacts (images) and their
// content-addressed storage, the signed update metadata (vendor and
// director roles, TUF/Uptane model) and, later, campaigns.
package ota

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
)

// Blobs is content-addressed local storage: every blob is a file named by
// the hex SHA-256 of its content, under <dir>/sha256/<first two>/<digest>.
// A blob is written to a temporary file first and renamed into place once
// complete, so a reader never sees a partial blob and a crash leaves none.
type Blobs struct {
	dir string
}

// ErrTooLarge: the content is longer than the limit allowed.
var ErrTooLarge = errors.New("content exceeds the size limit")

var digestRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

// OpenBlobs opens (and creates) the storage under dir.
func OpenBlobs(dir string) (*Blobs, error) {
	for _, d := range []string{dir, filepath.Join(dir, "sha256"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating the artifact folder: %w", err)
		}
	}
	return &Blobs{dir: dir}, nil
}

func (b *Blobs) path(digest string) string {
	return filepath.Join(b.dir, "sha256", digest[:2], digest)
}

// Staged is content written and hashed but not yet in place: Commit moves
// it under its digest, Discard drops it.
type Staged struct {
	b      *Blobs
	tmp    string
	done   bool
	Digest string // hex SHA-256
	Length int64
}

// Stage streams r into a temporary file, reading at most limit bytes (more
// is ErrTooLarge and keeps nothing), and hashes it.
func (b *Blobs) Stage(r io.Reader, limit int64) (*Staged, error) {
	f, err := os.CreateTemp(filepath.Join(b.dir, "tmp"), "upload-*")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, ErrTooLarge
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	ok = true
	return &Staged{b: b, tmp: f.Name(), Digest: hex.EncodeToString(h.Sum(nil)), Length: n}, nil
}

// Commit moves the staged content into place under its digest.
func (s *Staged) Commit() error {
	dst := s.b.path(s.Digest)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	if err := os.Rename(s.tmp, dst); err != nil {
		return err
	}
	s.done = true
	return nil
}

// Discard drops staged content that was not committed.
func (s *Staged) Discard() {
	if !s.done {
		os.Remove(s.tmp)
	}
}

// Put stages r and commits it at once, returning its digest and length.
func (b *Blobs) Put(r io.Reader, limit int64) (digest string, n int64, err error) {
	s, err := b.Stage(r, limit)
	if err != nil {
		return "", 0, err
	}
	if err := s.Commit(); err != nil {
		s.Discard()
		return "", 0, err
	}
	return s.Digest, s.Length, nil
}

// Open opens the blob with this digest (os.ErrNotExist when absent).
func (b *Blobs) Open(digest string) (*os.File, error) {
	if !digestRe.MatchString(digest) {
		return nil, fmt.Errorf("blob %q: %w", digest, os.ErrNotExist)
	}
	return os.Open(b.path(digest))
}

// Remove deletes the blob with this digest; an absent blob is no error.
func (b *Blobs) Remove(digest string) error {
	if !digestRe.MatchString(digest) {
		return nil
	}
	if err := os.Remove(b.path(digest)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
