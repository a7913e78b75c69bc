package ota

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/s3blob" // registers s3://
	"gocloud.dev/gcerrors"
)

// Bucket is content-addressed storage in an S3-compatible object store,
// shared by every node of a platform. Keys are the local folder's paths:
// sha256/<first two>/<digest>, and tmp/<random> while an upload of
// unannounced content is on its way.
//
// Publishing relies on S3 making an object visible only when its PUT (or
// its multipart upload) completes: a reader never sees part of an object,
// and an upload aborted before completion leaves no object behind.
//   - When the uploader announced the SHA-256, the content is written
//     straight to its final key and the upload is completed only by Commit,
//     after the hash matched; a mismatch or an oversize body aborts it.
//   - Otherwise the final key is not known before the last byte: the
//     content goes to a temporary key, and Commit copies it (server side,
//     one CopyObject, so at most 5 GiB) to its final key and deletes it.
//
// Incomplete multipart uploads and tmp/ objects left by a node that died
// mid-upload are not visible as blobs; a bucket lifecycle rule removes
// them (docs/ota.md).
type Bucket struct {
	b    *blob.Bucket
	name string
}

var _ BlobStore = (*Bucket)(nil)

// CheckStorageURL checks the form of an object-store URL without
// contacting the store.
func CheckStorageURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != "s3" {
		return errors.New("must be s3://BUCKET?region=…[&endpoint=http://host:port&use_path_style=true]")
	}
	if u.User != nil {
		return errors.New("must not carry credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or another standard AWS source) instead")
	}
	if u.Host == "" {
		return errors.New("names no bucket: s3://BUCKET?…")
	}
	return nil
}

// OpenBucket opens the bucket of an s3:// URL and checks that it answers.
// Credentials come from the standard AWS sources (AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, a profile, an instance role), never the URL.
func OpenBucket(ctx context.Context, raw string) (*Bucket, error) {
	if err := CheckStorageURL(raw); err != nil {
		return nil, err
	}
	u, _ := url.Parse(raw)
	q := u.Query()
	if !q.Has("response_checksum_validation") {
		// The SDK would check a CRC of every download and warn on stderr
		// for each object uploaded in parts (which carry none); the
		// content is checked by its SHA-256 at upload and by the device.
		q.Set("response_checksum_validation", "when_required")
		u.RawQuery = q.Encode()
	}
	b, err := blob.OpenBucket(ctx, u.String())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ok, err := b.IsAccessible(ctx)
	if err == nil && !ok {
		err = errors.New("the bucket does not exist; create it first")
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("bucket %q: %w", u.Host, err)
	}
	return &Bucket{b: b, name: u.Host}, nil
}

// Stage streams r into the bucket; see Bucket for where it goes.
func (b *Bucket) Stage(ctx context.Context, r io.Reader, limit int64, expect string) (StagedBlob, error) {
	if digestRe.MatchString(expect) {
		return b.stageFinal(ctx, r, limit, expect)
	}
	return b.stageTemp(ctx, r, limit)
}

// write streams r to key and hashes it. It returns the writer still open,
// and the cancel function that aborts it: the object appears only when
// the writer is closed without being cancelled.
func (b *Bucket) write(ctx context.Context, key string, r io.Reader, limit int64) (*blob.Writer, context.CancelFunc, string, int64, error) {
	wctx, cancel := context.WithCancel(ctx)
	w, err := b.b.NewWriter(wctx, key, &blob.WriterOptions{ContentType: "application/octet-stream"})
	if err != nil {
		cancel()
		return nil, nil, "", 0, err
	}
	digest, n, err := hashingCopy(w, r, limit)
	if err != nil {
		cancel()
		w.Close()
		return nil, nil, "", 0, err
	}
	return w, cancel, digest, n, nil
}

// stageFinal writes content of an announced digest to its final key; the
// upload completes in Commit. Content already there is only hashed.
func (b *Bucket) stageFinal(ctx context.Context, r io.Reader, limit int64, expect string) (StagedBlob, error) {
	key := blobKey(expect)
	exists, err := b.b.Exists(ctx, key)
	if err != nil {
		return nil, err
	}
	s := &bucketStaged{b: b, key: key}
	if exists {
		s.digest, s.length, err = hashingCopy(io.Discard, r, limit)
		return s, err
	}
	s.w, s.cancel, s.digest, s.length, err = b.write(ctx, key, r, limit)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// stageTemp writes content to a temporary key, complete when it returns.
func (b *Bucket) stageTemp(ctx context.Context, r io.Reader, limit int64) (StagedBlob, error) {
	rnd := make([]byte, 16)
	rand.Read(rnd)
	s := &bucketStaged{b: b, tmp: "tmp/" + hex.EncodeToString(rnd)}
	w, cancel, digest, n, err := b.write(ctx, s.tmp, r, limit)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("storing the upload: %w", err)
	}
	s.digest, s.length, s.key = digest, n, blobKey(digest)
	return s, nil
}

// bucketStaged is staged content in a bucket: either an open writer to
// the final key (w), a complete temporary object (tmp), or neither when
// the same content was already stored.
type bucketStaged struct {
	b      *Bucket
	key    string // final key
	tmp    string
	w      *blob.Writer
	cancel context.CancelFunc
	done   bool
	digest string
	length int64
}

func (s *bucketStaged) Digest() string { return s.digest }
func (s *bucketStaged) Length() int64  { return s.length }

// Commit publishes the content under its digest.
func (s *bucketStaged) Commit(ctx context.Context) error {
	if s.done {
		return nil
	}
	if s.key != blobKey(s.digest) {
		// Written under an announced digest the content does not have.
		return fmt.Errorf("the content hashes to %s, not to the announced digest: not published", s.digest)
	}
	switch {
	case s.w != nil:
		err := s.w.Close() // completes the upload: the object appears whole
		s.cancel()
		s.w = nil
		if err != nil {
			return fmt.Errorf("storing the upload: %w", err)
		}
	case s.tmp != "":
		exists, err := s.b.b.Exists(ctx, s.key)
		if err != nil {
			return err
		}
		if !exists {
			if err := s.b.b.Copy(ctx, s.key, s.tmp, nil); err != nil {
				return fmt.Errorf("publishing the upload: %w", err)
			}
		}
		s.dropTemp(ctx)
	default:
		// Only hashed: the blob was there; make sure it still is (it may
		// have been collected since, when its last artifact went).
		exists, err := s.b.b.Exists(ctx, s.key)
		if err != nil {
			return err
		}
		if !exists {
			return errors.New("the stored copy of this content was removed meanwhile; upload it again")
		}
	}
	s.done = true
	return nil
}

// Discard aborts an open upload or deletes the temporary object.
func (s *bucketStaged) Discard() {
	if s.done {
		return
	}
	s.done = true
	if s.w != nil {
		s.cancel() // cancelled before Close: the upload is aborted
		s.w.Close()
		s.w = nil
	}
	if s.tmp != "" {
		s.dropTemp(context.Background())
	}
}

func (s *bucketStaged) dropTemp(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	s.b.b.Delete(ctx, s.tmp)
	s.tmp = ""
}

// Open returns a reader of the blob that seeks without reading: each read
// after a seek asks the store for the range from there to the end, so
// http.ServeContent answers Range requests with one ranged GET each.
func (b *Bucket) Open(ctx context.Context, digest string) (io.ReadSeekCloser, error) {
	if !digestRe.MatchString(digest) {
		return nil, fmt.Errorf("blob %q: %w", digest, os.ErrNotExist)
	}
	key := blobKey(digest)
	attrs, err := b.b.Attributes(ctx, key)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return nil, fmt.Errorf("blob %s in bucket %s: %w", digest, b.name, os.ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	return &rangeReader{ctx: ctx, b: b.b, key: key, size: attrs.Size}, nil
}

// Remove deletes the blob with this digest; an absent blob is no error.
func (b *Bucket) Remove(ctx context.Context, digest string) error {
	if !digestRe.MatchString(digest) {
		return nil
	}
	if err := b.b.Delete(ctx, blobKey(digest)); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return err
	}
	return nil
}

// Close releases the bucket's connections.
func (b *Bucket) Close() error { return b.b.Close() }

// rangeReader reads an object from an offset, opening a ranged read only
// when data is wanted.
type rangeReader struct {
	ctx  context.Context
	b    *blob.Bucket
	key  string
	size int64
	off  int64
	r    *blob.Reader
}

func (r *rangeReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if r.r == nil {
		rd, err := r.b.NewRangeReader(r.ctx, r.key, r.off, -1, nil)
		if err != nil {
			return 0, err
		}
		r.r = rd
	}
	n, err := r.r.Read(p)
	r.off += int64(n)
	return n, err
}

func (r *rangeReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.off + offset
	case io.SeekEnd:
		abs = r.size + offset
	default:
		return 0, errors.New("seek: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("seek: negative position")
	}
	if abs != r.off && r.r != nil {
		r.r.Close()
		r.r = nil
	}
	r.off = abs
	return abs, nil
}

func (r *rangeReader) Close() error {
	if r.r != nil {
		err := r.r.Close()
		r.r = nil
		return err
	}
	return nil
}
