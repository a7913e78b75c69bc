package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/steward-iot/steward/bench/internal/summary"
	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/config"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/ota"
	"github.com/steward-iot/steward/internal/platform"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/testutil/s3test"
)

var objectStoreFlag = flag.Bool("s3", false, "also time downloads of an artifact kept in an S3 bucket "+
	"(SeaweedFS on loopback, installed by scripts/setup.sh) against a direct S3 GET of the same object")

// measureObjectStore runs the object-store comparison when -s3 is given.
func measureObjectStore(ctx context.Context, o options) error {
	if !*objectStoreFlag || o.SizeMiB <= 0 {
		return nil
	}
	res, err := runObjectStore(ctx, o)
	if err != nil {
		return fmt.Errorf("object store: %w", err)
	}
	fmt.Println()
	res.print(os.Stdout, o)
	return nil
}

// objectResult compares the platform's download of an artifact kept in an
// S3 bucket with a direct S3 GET of the same object.
type objectResult struct {
	size             int64
	platform, direct float64 // MiB/s, median
	scheme           string
}

// runObjectStore starts SeaweedFS (`weed mini`, as the tests do) on
// loopback, a platform with ota.storage_url on a fresh bucket, uploads an
// image and times downloads through the platform and straight from S3.
func runObjectStore(ctx context.Context, o options) (*objectResult, error) {
	ep, err := s3test.Start()
	if err != nil {
		return nil, err
	}
	rnd := make([]byte, 4)
	rand.Read(rnd)
	bucket := "bench-" + hex.EncodeToString(rnd)
	if err := s3test.CreateBucket(ctx, ep, bucket); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "steward-bench-ota-s3-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cfg := config.Default()
	cfg.Dev = !o.TLS
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.MQTT.Listen, cfg.EST.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.OTA.StorageURL = s3test.StorageURL(ep, bucket)
	srv, err := platform.New(ctx, cfg, slog.New(slog.DiscardHandler), "bench")
	if err != nil {
		return nil, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Start(ctx); err != nil {
		return nil, err
	}
	keyB, err := os.ReadFile(filepath.Join(cfg.DataDir, platform.AdminKeyFile))
	if err != nil {
		return nil, err
	}
	admin := &authz.Principal{KeyID: "bench", Role: model.RolePlatformAdmin}
	ten, err := srv.Registry.CreateTenant(ctx, admin, "bench", model.TenantEnterprise)
	if err != nil {
		return nil, err
	}
	prod, err := srv.Registry.CreateProduct(ctx, admin, ten.ID, registry.ProductInput{Vendor: "Bench", Model: "B1"})
	if err != nil {
		return nil, err
	}

	// The image: random bytes in a file, uploaded with its digest announced.
	size := int64(o.SizeMiB) << 20
	path := filepath.Join(dir, "image.bin")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, size); err != nil {
		return nil, err
	}
	f.Close()
	digest := hex.EncodeToString(h.Sum(nil))
	art, err := srv.OTA.CreateArtifact(ctx, "bench", ten.ID, ota.ArtifactInput{Name: "image.bin", Version: "1.0.0",
		ProductIDs: []string{prod.ID}, HardwareIDs: []string{"bench"}})
	if err != nil {
		return nil, err
	}
	if f, err = os.Open(path); err != nil {
		return nil, err
	}
	srv.OTA.MaxArtifactBytes = size
	_, err = srv.OTA.Upload(ctx, "bench", ten.ID, art.ID, f, digest)
	f.Close()
	if err != nil {
		return nil, err
	}

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableCompression: true}}
	viaPlatform := func() (float64, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL()+"/api/v1/artifacts/"+art.ID+"/content", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(keyB)))
		req.Header.Set("X-Steward-Tenant", ten.ID)
		start := time.Now()
		res, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("platform download: %s", res.Status)
		}
		return rate(res.Body, size, start)
	}
	s3c := s3test.Client(ep)
	direct := func() (float64, error) {
		start := time.Now()
		out, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket),
			Key: aws.String("sha256/" + digest[:2] + "/" + digest)})
		if err != nil {
			return 0, err
		}
		defer out.Body.Close()
		return rate(out.Body, size, start)
	}
	var ps, ds []float64
	for i := -1; i < o.Rounds; i++ { // round -1 warms both up
		p, err := viaPlatform()
		if err != nil {
			return nil, err
		}
		d, err := direct()
		if err != nil {
			return nil, err
		}
		if i >= 0 {
			ps, ds = append(ps, p), append(ds, d)
		}
	}
	scheme := "http"
	if strings.HasPrefix(srv.URL(), "https:") {
		scheme = "https"
	}
	return &objectResult{size: size, platform: median(ps), direct: median(ds), scheme: scheme}, nil
}

// rate reads body to the end and returns MiB/s since start.
func rate(body io.Reader, size int64, start time.Time) (float64, error) {
	n, err := io.Copy(io.Discard, body)
	if err != nil {
		return 0, err
	}
	if n != size {
		return 0, fmt.Errorf("got %d bytes of %d", n, size)
	}
	return float64(n) / (1 << 20) / time.Since(start).Seconds(), nil
}

func (r *objectResult) print(w io.Writer, o options) {
	ratio := r.platform / r.direct
	verdict := "PASS"
	if ratio < 0.9 {
		verdict = "MISS"
	}
	fmt.Fprintf(w, "image %d MiB in an S3 bucket (SeaweedFS, http loopback), platform over %s, median of %d downloads\n",
		r.size>>20, r.scheme, o.Rounds)
	fmt.Fprintf(w, "platform artifact download  %8.0f MiB/s\n", r.platform)
	fmt.Fprintf(w, "direct S3 GET               %8.0f MiB/s\n", r.direct)
	fmt.Fprintf(w, "ratio %.2f (target >= 0.90): %s\n", ratio, verdict)
	if o.Markdown {
		fmt.Fprintf(w, "\n| image | storage | platform | direct S3 GET | ratio | target ≥ 0.9 |\n| --- | --- | --- | --- | --- | --- |\n")
		fmt.Fprintf(w, "| %d MiB | S3 (SeaweedFS), platform over %s | %.0f MiB/s | %.0f MiB/s | %.2f | %s |\n",
			r.size>>20, r.scheme, r.platform, r.direct, ratio, verdict)
	}
	summary.Print(w, summary.Row{Benchmark: "ota",
		Measurement: fmt.Sprintf("artifact download from S3 (SeaweedFS), %d MiB image, platform over %s", r.size>>20, r.scheme),
		Value:       r.platform, Unit: "MiB/s", Peer: "direct S3 GET", PeerValue: r.direct, Target: downloadTarget})
}
