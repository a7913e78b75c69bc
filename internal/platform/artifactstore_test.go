package platform_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/steward-iot/steward/internal/config"
	"github.com/steward-iot/steward/internal/platform"
	"github.com/steward-iot/steward/internal/testutil/pgtest"
	"github.com/steward-iot/steward/internal/testutil/s3test"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// TestArtifactsInObjectStore runs two platform nodes on one PostgreSQL
// database and one S3 bucket (SeaweedFS): content uploaded through one
// node downloads, whole and by ranges, from the other; identical content
// is stored once; refused uploads leave nothing in the bucket; deleting
// the last artifact of some content deletes its object.
func TestArtifactsInObjectStore(t *testing.T) {
	storageURL := s3test.URL(t)
	su, _ := url.Parse(storageURL)
	endpoint, bucket := su.Query().Get("endpoint"), su.Host
	storeURL := pgtest.URL(t)
	nodeA := testserver.Start(t, testserver.Options{Configure: func(c *config.Config) {
		c.Store.URL, c.OTA.StorageURL = storeURL, storageURL
	}})
	// The second node shares the CA and director key (data_dir/pki), as
	// docs/operations.md asks, and has no artifacts folder of its own.
	dirB := t.TempDir()
	testserver.CopyFiles(t, filepath.Join(nodeA.Platform.Config.DataDir, platform.PKIDir), filepath.Join(dirB, platform.PKIDir))
	testserver.CopyFiles(t, nodeA.Platform.Config.DataDir, dirB) // the admin key file
	nodeB := testserver.Start(t, testserver.Options{Configure: func(c *config.Config) {
		c.DataDir, c.Store.URL, c.OTA.StorageURL = dirB, storeURL, storageURL
	}})
	if _, err := os.Stat(filepath.Join(dirB, "artifacts")); err == nil {
		t.Fatal("a node with ota.storage_url made a local artifacts folder")
	}

	tn := nodeA.CreateTenant(t, "object store")
	key := tn.Admin.Secret
	prod := nodeA.CreateProduct(t, tn.ID)
	content := make([]byte, 7<<20+333) // more than one multipart part
	rand.NewChaCha8([32]byte{7}).Read(content)
	digestOf := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	digest := digestOf(content)
	create := func(n *testserver.Server) string {
		return n.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: "/api/v1/artifacts", Key: key,
			Body: map[string]any{"name": "fw.bin", "version": "3.1.0", "product_ids": []string{prod.ID}, "hardware_ids": []string{"rev-b"}}}).Str("id")
	}
	put := func(n *testserver.Server, id, query string, body []byte) *testserver.Resp {
		return n.Do(t, testserver.Req{Method: http.MethodPut, Path: "/api/v1/artifacts/" + id + "/content" + query, Key: key, Raw: body,
			Header: map[string]string{"Content-Type": "application/octet-stream"}})
	}
	get := func(n *testserver.Server, id string, header map[string]string) *testserver.Resp {
		return n.Do(t, testserver.Req{Method: http.MethodGet, Path: "/api/v1/artifacts/" + id + "/content", Key: key, Header: header})
	}
	blobs := func() []string { return s3test.Keys(t, endpoint, bucket, "sha256/") }
	noLeftovers := func(what string) {
		t.Helper()
		if tmp := s3test.Keys(t, endpoint, bucket, "tmp/"); len(tmp) != 0 {
			t.Fatalf("%s left temporary objects %v", what, tmp)
		}
		up, err := s3test.Client(endpoint).ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
		if err != nil {
			t.Fatal(err)
		}
		if len(up.Uploads) != 0 {
			t.Fatalf("%s left %d incomplete multipart uploads", what, len(up.Uploads))
		}
	}

	// Uploaded on A with the digest announced (written straight to its key).
	first := create(nodeA)
	if res := put(nodeA, first, "?sha256="+digest, content); res.Status != http.StatusOK || res.Str("sha256") != digest {
		t.Fatalf("upload on A: %s", res)
	}
	if got := blobs(); len(got) != 1 || got[0] != "sha256/"+digest[:2]+"/"+digest {
		t.Fatalf("bucket holds %v", got)
	}

	t.Run("downloads from the other node", func(t *testing.T) {
		res := get(nodeB, first, nil)
		if res.Status != http.StatusOK || !bytes.Equal(res.Raw, content) {
			t.Fatalf("download on B: %d, %d bytes", res.Status, len(res.Raw))
		}
		etag := res.Header.Get("ETag")
		if etag != `"sha256:`+digest+`"` {
			t.Fatalf("ETag %q", etag)
		}
		// A download cut after 3 MiB resumes with Range and If-Range.
		cut := 3 << 20
		head := get(nodeB, first, map[string]string{"Range": "bytes=0-" + itoa(cut-1)})
		tail := get(nodeB, first, map[string]string{"Range": "bytes=" + itoa(cut) + "-", "If-Range": etag})
		if head.Status != http.StatusPartialContent || tail.Status != http.StatusPartialContent {
			t.Fatalf("ranges: %d, %d", head.Status, tail.Status)
		}
		if !bytes.Equal(append(head.Raw, tail.Raw...), content) {
			t.Fatal("the resumed parts differ from the content")
		}
		mid := get(nodeB, first, map[string]string{"Range": "bytes=5000000-5000099"})
		if mid.Status != http.StatusPartialContent || !bytes.Equal(mid.Raw, content[5000000:5000100]) ||
			mid.Header.Get("Content-Range") != "bytes 5000000-5000099/"+itoa(len(content)) {
			t.Fatalf("a middle range: %d %q", mid.Status, mid.Header.Get("Content-Range"))
		}
		// A changed validator gets the whole content again.
		stale := get(nodeB, first, map[string]string{"Range": "bytes=" + itoa(cut) + "-", "If-Range": `"sha256:` + strings.Repeat("0", 64) + `"`})
		if stale.Status != http.StatusOK || len(stale.Raw) != len(content) {
			t.Fatalf("If-Range with another ETag: %d, %d bytes", stale.Status, len(stale.Raw))
		}
		if res := get(nodeB, first, map[string]string{"If-None-Match": etag}); res.Status != http.StatusNotModified {
			t.Fatalf("If-None-Match: %d", res.Status)
		}
	})

	// The same content uploaded on B without a digest (through a temporary
	// object) is stored once.
	second := create(nodeB)
	if res := put(nodeB, second, "", content); res.Status != http.StatusOK || res.Str("sha256") != digest {
		t.Fatalf("upload on B: %s", res)
	}
	if got := blobs(); len(got) != 1 {
		t.Fatalf("identical content stored as %v", got)
	}
	noLeftovers("a duplicate upload")

	t.Run("refusals leave nothing behind", func(t *testing.T) {
		fresh := create(nodeB)
		other := bytes.Repeat([]byte("not the image "), 600000)
		if res := put(nodeB, fresh, "?sha256="+digest, other); res.Status != http.StatusUnprocessableEntity {
			t.Fatalf("wrong digest: %s", res)
		}
		if res := put(nodeB, fresh, "?sha256="+strings.Repeat("ab", 32), other); res.Status != http.StatusUnprocessableEntity {
			t.Fatalf("wrong digest: %s", res)
		}
		nodeB.Platform.OTA.MaxArtifactBytes = 1 << 20
		defer func() { nodeB.Platform.OTA.MaxArtifactBytes = 4 << 30 }()
		if res := put(nodeB, fresh, "", other); res.Status != http.StatusRequestEntityTooLarge {
			t.Fatalf("too large: %s", res)
		}
		if res := put(nodeB, fresh, "?sha256="+digestOf(other), other); res.Status != http.StatusRequestEntityTooLarge {
			t.Fatalf("too large, announced: %s", res)
		}
		if got := blobs(); len(got) != 1 {
			t.Fatalf("refused uploads changed the bucket: %v", got)
		}
		noLeftovers("refused uploads")
	})

	// Deleting one artifact keeps the shared object; deleting the last one
	// (on the other node) removes it.
	nodeA.Must(t, http.StatusNoContent, testserver.Req{Method: http.MethodDelete, Path: "/api/v1/artifacts/" + first, Key: key})
	if res := get(nodeA, second, nil); res.Status != http.StatusOK || !bytes.Equal(res.Raw, content) {
		t.Fatalf("content after deleting a twin: %d", res.Status)
	}
	nodeB.Must(t, http.StatusNoContent, testserver.Req{Method: http.MethodDelete, Path: "/api/v1/artifacts/" + second, Key: key})
	if got := blobs(); len(got) != 0 {
		t.Fatalf("objects left after the last artifact went: %v", got)
	}
}

var itoa = strconv.Itoa

// TestObjectStoreRefusedAtStart: a bucket that does not exist or a store
// that does not answer stops the server with the setting named.
func TestObjectStoreRefusedAtStart(t *testing.T) {
	endpoint := s3test.Endpoint(t)
	for _, tc := range []struct{ name, url, want string }{
		{"no such bucket", s3test.StorageURL(endpoint, "no-such-bucket"), "does not exist"},
		{"unknown parameter", s3test.StorageURL(endpoint, "x") + "&colour=blue", "colour"},
		{"nothing listening", s3test.StorageURL("http://127.0.0.1:1", "x"), "127.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := devConfig(t)
			cfg.OTA.StorageURL = tc.url
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			s, err := platform.New(ctx, cfg, quiet(), "test")
			if err == nil {
				s.Shutdown(ctx)
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), "ota.storage_url") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q names neither ota.storage_url nor %q", err, tc.want)
			}
			if strings.Contains(err.Error(), s3test.SecretKey) {
				t.Fatal("the error shows the secret key")
			}
		})
	}
}
