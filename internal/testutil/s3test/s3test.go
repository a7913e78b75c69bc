// Package s3test gives tests a fresh bucket on a real S3 server on
// loopback: SeaweedFS (`weed mini`, installed by scripts/setup.sh), started
// once per test binary on free ports and killed with it.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"go/build"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The server's only identity; URL puts these keys in the environment,
// where the platform's S3 client reads them.
const (
	AccessKey = "steward-test"
	SecretKey = "steward-test-secret-0123456789"
	Region    = "us-east-1"
)

var (
	once     sync.Once
	endpoint string
	startErr error
	logPath  string
)

// Binary is the SeaweedFS executable: $STEWARD_TEST_WEED, weed on PATH, or
// $GOPATH/bin/weed (where scripts/setup.sh puts it); "" when absent.
func Binary() string {
	if p := os.Getenv("STEWARD_TEST_WEED"); p != "" {
		return p
	}
	if p, err := exec.LookPath("weed"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		gopath = build.Default.GOPATH
	}
	p := filepath.Join(strings.Split(gopath, string(os.PathListSeparator))[0], "bin", "weed")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// Endpoint returns the S3 server's base URL (http://127.0.0.1:PORT),
// starting it on first use. Without the server the test is skipped, except
// under CI=true, where that is a failure.
func Endpoint(tb testing.TB) string {
	tb.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal("SeaweedFS (weed) is required under CI=true: run ./scripts/setup.sh")
		}
		tb.Skip("SeaweedFS (weed) is not installed: run ./scripts/setup.sh (or set STEWARD_TEST_WEED)")
	}
	ep, err := Start()
	if err != nil {
		tb.Fatalf("starting SeaweedFS: %v", err)
	}
	return ep
}

// Start runs the server once per process (later calls return the same
// endpoint) and puts its keys in AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY. Benchmarks use it directly.
func Start() (string, error) {
	once.Do(func() {
		bin := Binary()
		if bin == "" {
			startErr = errors.New("SeaweedFS (weed) is not installed: run ./scripts/setup.sh")
			return
		}
		os.Setenv("AWS_ACCESS_KEY_ID", AccessKey)
		os.Setenv("AWS_SECRET_ACCESS_KEY", SecretKey)
		os.Unsetenv("AWS_SESSION_TOKEN")
		os.Unsetenv("AWS_PROFILE")
		endpoint, startErr = start(bin)
	})
	return endpoint, startErr
}

// CreateBucket makes a bucket on the server.
func CreateBucket(ctx context.Context, endpoint, bucket string) error {
	_, err := Client(endpoint).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	return err
}

// URL creates a new, empty bucket and returns its ota.storage_url.
func URL(tb testing.TB) string {
	tb.Helper()
	ep := Endpoint(tb)
	rnd := make([]byte, 6)
	rand.Read(rnd)
	bucket := "t-" + hex.EncodeToString(rnd)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := CreateBucket(ctx, ep, bucket); err != nil {
		tb.Fatalf("creating bucket %s: %v", bucket, err)
	}
	return StorageURL(ep, bucket)
}

// StorageURL is the ota.storage_url of a bucket on a local server.
func StorageURL(endpoint, bucket string) string {
	return "s3://" + bucket + "?endpoint=" + endpoint + "&region=" + Region + "&use_path_style=true"
}

// Client is a plain S3 client of the local server, to look at buckets
// behind the platform's back.
func Client(endpoint string) *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
		// Objects uploaded in parts carry no whole-object checksum; the
		// SDK would warn about that on every read.
		DisableLogOutputChecksumValidationSkipped: true,
	})
}

// Keys lists the keys of a bucket under prefix.
func Keys(tb testing.TB, endpoint, bucket, prefix string) []string {
	tb.Helper()
	out, err := Client(endpoint).ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		tb.Fatalf("listing bucket %s: %v", bucket, err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// start runs `weed mini` in a fresh folder and waits until S3 answers.
func start(bin string) (string, error) {
	removeStale()
	dir, err := os.MkdirTemp("", fmt.Sprintf("steward-s3test-%d-", os.Getpid()))
	if err != nil {
		return "", err
	}
	p, err := freePorts(8)
	if err != nil {
		return "", err
	}
	args := []string{"mini", "-dir=" + dir, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-master.port=" + strconv.Itoa(p[0]), "-master.port.grpc=" + strconv.Itoa(p[1]),
		"-volume.port=" + strconv.Itoa(p[2]), "-volume.port.grpc=" + strconv.Itoa(p[3]),
		"-filer.port=" + strconv.Itoa(p[4]), "-filer.port.grpc=" + strconv.Itoa(p[5]),
		"-s3.port=" + strconv.Itoa(p[6]), "-s3.port.grpc=" + strconv.Itoa(p[7]),
		"-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
		"-master.telemetry=false", "-master.volumeSizeLimitMB=64"}
	cmd := exec.Command(bin, args...)
	logPath = filepath.Join(dir, "weed.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return "", err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+AccessKey, "AWS_SECRET_ACCESS_KEY="+SecretKey)
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ep := "http://127.0.0.1:" + strconv.Itoa(p[6])
	c := Client(ep)
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
		cancel()
		if err == nil {
			return ep, nil
		}
		select {
		case werr := <-exited:
			return "", fmt.Errorf("weed mini exited (%v); its log: %s", werr, tail(logPath))
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return "", fmt.Errorf("S3 on %s did not answer within 90s (%v); log: %s", ep, err, tail(logPath))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// removeStale deletes the folders of servers whose test binary is gone.
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "steward-s3test-*"))
	for _, d := range dirs {
		parts := strings.SplitN(filepath.Base(d), "-", 4)
		if len(parts) < 3 {
			continue
		}
		pid, err := strconv.Atoi(parts[2])
		if err != nil {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}
