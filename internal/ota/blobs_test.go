package ota

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/steward-iot/steward/internal/testutil/s3test"
)

// storeUnderTest is a blob store and a look behind it: the keys of
// published blobs, and whatever an upload may leave behind (temporary
// files or objects, incomplete multipart uploads).
type storeUnderTest struct {
	BlobStore
	blobs     func() []string
	leftovers func() []string
}

func folderStore(t *testing.T) storeUnderTest {
	dir := t.TempDir()
	b, err := OpenBlobs(dir)
	if err != nil {
		t.Fatal(err)
	}
	list := func(sub string) func() []string {
		return func() []string {
			var out []string
			filepath.WalkDir(filepath.Join(dir, sub), func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					out = append(out, p)
				}
				return nil
			})
			return out
		}
	}
	return storeUnderTest{b, list("sha256"), list("tmp")}
}

func bucketStore(t *testing.T) storeUnderTest {
	raw := s3test.URL(t)
	b, err := OpenBucket(t.Context(), raw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	u, _ := url.Parse(raw)
	ep, bucket := u.Query().Get("endpoint"), u.Host
	return storeUnderTest{b,
		func() []string { return s3test.Keys(t, ep, bucket, "sha256/") },
		func() []string {
			left := s3test.Keys(t, ep, bucket, "tmp/")
			out, err := s3test.Client(ep).ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
			if err != nil {
				t.Fatal(err)
			}
			for _, up := range out.Uploads {
				left = append(left, "multipart upload of "+aws.ToString(up.Key))
			}
			return left
		}}
}

func TestBlobStores(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(*testing.T) storeUnderTest
	}{{"folder", folderStore}, {"bucket", bucketStore}} {
		t.Run(tc.name, func(t *testing.T) { testBlobStore(t, tc.open(t)) })
	}
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func readAll(t *testing.T, b BlobStore, digest string) []byte {
	t.Helper()
	f, err := b.Open(t.Context(), digest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func testBlobStore(t *testing.T, st storeUnderTest) {
	ctx := t.Context()
	small := bytes.Repeat([]byte("blob"), 1000)
	// Larger than one part of a multipart upload (5 MiB), with a tail.
	large := make([]byte, 11<<20+12345)
	rand.NewChaCha8([32]byte{1}).Read(large)
	noLeftovers := func(what string) {
		t.Helper()
		if left := st.leftovers(); len(left) != 0 {
			t.Fatalf("%s left %v", what, left)
		}
	}
	for _, tc := range []struct {
		name     string
		data     []byte
		limit    int64
		announce bool
		err      error
	}{
		{"fits exactly", small, 4000, false, nil},
		{"same again", small, 1 << 20, false, nil},
		{"same again, announced", small, 1 << 20, true, nil},
		{"one byte over", small, 3999, false, ErrTooLarge},
		{"one byte over, announced", small, 3999, true, ErrTooLarge},
		{"empty", nil, 10, false, nil},
		{"large, announced", large, 12 << 20, true, nil},
		{"large, announced, over the limit", append(bytes.Clone(large), 'x'), int64(len(large)), true, ErrTooLarge},
		{"large, not announced", large, 12 << 20, false, nil},
		{"large, not announced, over the limit", append(bytes.Clone(large), 'x'), int64(len(large)), false, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expect := ""
			if tc.announce {
				expect = sum(tc.data)
			}
			before := len(st.blobs())
			s, err := st.Stage(ctx, bytes.NewReader(tc.data), tc.limit, expect)
			if err == nil {
				defer s.Discard()
				err = s.Commit(ctx)
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			noLeftovers(tc.name)
			if err != nil {
				if n := len(st.blobs()); n != before {
					t.Fatalf("a refused upload changed the blobs: %d before, %d after", before, n)
				}
				return
			}
			if s.Digest() != sum(tc.data) || s.Length() != int64(len(tc.data)) {
				t.Fatalf("digest %s length %d", s.Digest(), s.Length())
			}
			if !bytes.Equal(readAll(t, st, s.Digest()), tc.data) {
				t.Fatal("stored blob differs")
			}
		})
	}
	// Identical content is stored once.
	if got := st.blobs(); len(got) != 3 {
		t.Fatalf("blobs %v, want small, empty and large once each", got)
	}

	t.Run("announced digest does not match", func(t *testing.T) {
		other := bytes.Repeat([]byte("other"), 3000)
		otherLarge := bytes.Clone(large)
		otherLarge[0]++
		for _, data := range [][]byte{other, otherLarge} {
			s, err := st.Stage(ctx, bytes.NewReader(data), 1<<30, sum(small[1:]))
			if err != nil {
				t.Fatal(err)
			}
			if s.Digest() != sum(data) {
				t.Fatalf("digest %s", s.Digest())
			}
			// The service refuses such content before Commit; a store that
			// wrote to the announced place must not publish it either.
			if _, ok := st.BlobStore.(*Bucket); ok {
				if err := s.Commit(ctx); err == nil {
					t.Fatal("content of another digest was published under the announced one")
				}
			}
			s.Discard()
			if _, err := st.Open(ctx, sum(small[1:])); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the announced digest: %v", err)
			}
			if _, err := st.Open(ctx, sum(data)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the discarded content: %v", err)
			}
			noLeftovers("a discarded upload")
		}
	})

	t.Run("ranges", func(t *testing.T) {
		f, err := st.Open(ctx, sum(large))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if n, err := f.Seek(0, io.SeekEnd); err != nil || n != int64(len(large)) {
			t.Fatalf("size %d, %v", n, err)
		}
		for _, r := range []struct{ off, n int64 }{{0, 10}, {5 << 20, 1 << 20}, {int64(len(large)) - 7, 7}, {123, 4567}} {
			if _, err := f.Seek(r.off, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, r.n)
			if _, err := io.ReadFull(f, got); err != nil {
				t.Fatalf("range %d+%d: %v", r.off, r.n, err)
			}
			if !bytes.Equal(got, large[r.off:r.off+r.n]) {
				t.Fatalf("range %d+%d differs", r.off, r.n)
			}
		}
		f.Seek(0, io.SeekEnd)
		if n, err := f.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("read at the end: %d, %v", n, err)
		}
	})

	t.Run("concurrent writers of the same content", func(t *testing.T) {
		content := bytes.Repeat([]byte("concurrent"), 2000)
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				s, err := st.Stage(ctx, bytes.NewReader(content), 1<<20, []string{"", sum(content)}[i%2])
				if err == nil {
					err = s.Commit(ctx)
					s.Discard()
				}
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if !bytes.Equal(readAll(t, st, sum(content)), content) {
			t.Fatal("stored blob differs")
		}
		noLeftovers("concurrent writers")
	})

	t.Run("remove", func(t *testing.T) {
		if _, err := st.Open(ctx, "../../etc/passwd"); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a path outside the store: %v", err)
		}
		for _, d := range []string{sum(small), sum(large)} {
			if err := st.Remove(ctx, d); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Open(ctx, d); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("removed blob: %v", err)
			}
			if err := st.Remove(ctx, d); err != nil {
				t.Fatalf("removing an absent blob: %v", err)
			}
		}
	})
}
