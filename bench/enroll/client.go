package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/steward-iot/steward/internal/est"
)

// job is what the load generator does: enroll every item over HTTPS.
type job struct {
	URL     string
	CA      []byte // DER of the certificate to trust
	Clients int
	Reuse   bool
	Items   []item
}

type item struct {
	Token string
	CSR   []byte
}

// jobResult is what the load generator reports.
type jobResult struct {
	Elapsed  time.Duration
	P50, P95 time.Duration
}

// runJob runs j in a child process (this binary with -client-job).
func runJob(ctx context.Context, dir string, j job) (*jobResult, error) {
	path := filepath.Join(dir, "job.gob")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := gob.NewEncoder(f).Encode(j); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, self, "-client-job", path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("load generator: %v: %s", err, stderr.String())
	}
	var res jobResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("%w: %s", errNoResult, stdout.String())
	}
	return &res, nil
}

// runClient is the child process: it enrolls every item of the job with
// j.Clients concurrent devices and prints a jobResult as JSON.
func runClient(ctx context.Context, path string, out io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	var j job
	err = gob.NewDecoder(f).Decode(&j)
	f.Close()
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(j.CA)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: !j.Reuse, MaxIdleConnsPerHost: j.Clients}
	defer tr.CloseIdleConnections()
	client := &est.Client{BaseURL: j.URL, HTTP: &http.Client{Transport: tr, Timeout: time.Minute}}
	lat := make([]time.Duration, len(j.Items))
	var next atomic.Int64
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	var wg sync.WaitGroup
	for range j.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(j.Items) {
					return
				}
				t0 := time.Now()
				_, err := client.SimpleEnroll(ctx, j.Items[i].CSR, "Bearer "+j.Items[i].Token)
				lat[i] = time.Since(t0)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("enrollment %d: %w", i, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return firstErr
	}
	slices.Sort(lat)
	return json.NewEncoder(out).Encode(jobResult{Elapsed: elapsed, P50: lat[len(lat)/2], P95: lat[len(lat)*95/100]})
}
