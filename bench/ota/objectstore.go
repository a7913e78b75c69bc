package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/steward-iot/steward/bench/internal/summary"
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
	p, stop, err := startImagePlatform(ctx, o, dir, s3test.StorageURL(ep, bucket))
	if err != nil {
		return nil, err
	}
	defer stop()
	s3c := s3test.Client(ep)
	direct := func() (float64, error) {
		start := time.Now()
		out, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket),
			Key: aws.String("sha256/" + p.digest[:2] + "/" + p.digest)})
		if err != nil {
			return 0, err
		}
		defer out.Body.Close()
		return rate(out.Body, p.size, start)
	}
	plat, direct2, err := alternate(o.Rounds, func() (float64, error) { return p.viaPlatform(ctx) }, direct)
	if err != nil {
		return nil, err
	}
	return &objectResult{size: p.size, platform: plat, direct: direct2, scheme: p.scheme()}, nil
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
