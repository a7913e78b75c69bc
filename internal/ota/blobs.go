// Package ota is the update service: artifacts (images) and their
// content-addressed storage, the signed update metadata (vendor and
// director roles, TUF/Uptane model) and, later, campaigns.
package ota

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
)

// BlobStore keeps artifact content by its SHA-256: a local folder (Blobs)
// or an S3-compatible bucket (Bucket). Content is published under its
// digest only once complete, so a reader never sees a partial blob.
type BlobStore interface {
	// Stage streams r into storage, reading at most limit bytes (more is
	// ErrTooLarge and keeps nothing), and hashes it. expect is the digest
	// the uploader announced, or "": a store may use it to write straight
	// to the final place, published only by Commit.
	Stage(ctx context.Context, r io.Reader, limit int64, expect string) (StagedBlob, error)
	// Open opens the blob with this digest for reading with seeks (ranges);
	// an absent blob is an error wrapping os.ErrNotExist.
	Open(ctx context.Context, digest string) (io.ReadSeekCloser, error)
	// Remove deletes the blob with this digest; an absent blob is no error.
	Remove(ctx context.Context, digest string) error
	// Close releases the store's resources.
	Close() error
}

// StagedBlob is content written and hashed but not yet published: Commit
// publishes it under its digest, Discard drops it (a no-op after Commit).
type StagedBlob interface {
	Digest() string // hex SHA-256
	Length() int64
	Commit(ctx context.Context) error
	Discard()
}

// ErrTooLarge: the content is longer than the limit allowed.
var ErrTooLarge = errors.New("content exceeds the size limit")

var digestRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

// blobKey is where a blob lives, in a folder or a bucket.
func blobKey(digest string) string { return "sha256/" + digest[:2] + "/" + digest }

// Blobs is content-addressed local storage: every blob is a file named by
// the hex SHA-256 of its content, under <dir>/sha256/<first two>/<digest>.
// A blob is written to a temporary file first and renamed into place once
// complete, so a reader never sees a partial blob and a crash leaves none.
type Blobs struct {
	dir string
}

var _ BlobStore = (*Blobs)(nil)

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
	return filepath.Join(b.dir, filepath.FromSlash(blobKey(digest)))
}

// Staged is content in a temporary file of a local store.
type Staged struct {
	b      *Blobs
	tmp    string
	done   bool
	digest string
	length int64
}

func (s *Staged) Digest() string { return s.digest }
func (s *Staged) Length() int64  { return s.length }

// hashingCopy copies at most limit bytes of r to w and hashes them; a
// longer r is ErrTooLarge.
func hashingCopy(w io.Writer, r io.Reader, limit int64) (digest string, n int64, err error) {
	h := sha256.New()
	n, err = io.Copy(io.MultiWriter(w, h), io.LimitReader(r, limit+1))
	if err != nil {
		return "", n, err
	}
	if n > limit {
		return "", n, ErrTooLarge
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// Stage streams r into a temporary file, reading at most limit bytes (more
// is ErrTooLarge and keeps nothing), and hashes it.
func (b *Blobs) Stage(_ context.Context, r io.Reader, limit int64, _ string) (StagedBlob, error) {
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
	digest, n, err := hashingCopy(f, r, limit)
	if err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	ok = true
	return &Staged{b: b, tmp: f.Name(), digest: digest, length: n}, nil
}

// Commit moves the staged content into place under its digest.
func (s *Staged) Commit(context.Context) error {
	dst := s.b.path(s.digest)
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

// Open opens the blob with this digest (os.ErrNotExist when absent).
func (b *Blobs) Open(_ context.Context, digest string) (io.ReadSeekCloser, error) {
	if !digestRe.MatchString(digest) {
		return nil, fmt.Errorf("blob %q: %w", digest, os.ErrNotExist)
	}
	f, err := os.Open(b.path(digest))
	if err != nil {
		return nil, err // a nil *os.File must not become a non-nil interface
	}
	return f, nil
}

// Remove deletes the blob with this digest; an absent blob is no error.
func (b *Blobs) Remove(_ context.Context, digest string) error {
	if !digestRe.MatchString(digest) {
		return nil
	}
	if err := os.Remove(b.path(digest)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Close does nothing: a folder holds no resources.
func (b *Blobs) Close() error { return nil }

// Put stages r and commits it at once, returning its digest and length.
func Put(ctx context.Context, b BlobStore, r io.Reader, limit int64) (digest string, n int64, err error) {
	s, err := b.Stage(ctx, r, limit, "")
	if err != nil {
		return "", 0, err
	}
	defer s.Discard()
	if err := s.Commit(ctx); err != nil {
		return "", 0, err
	}
	return s.Digest(), s.Length(), nil
}
