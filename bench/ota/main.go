// Command ota measures the update service.
//
// Image downloads: the platform's artifact download route (authentication,
// tenant check, store lookup, then http.ServeContent of the
// content-addressed file) side by side with a bare http.ServeContent of the
// same file on the same kind of listener, both on loopback, and prints the
// ratio. The target is platform ≥ 0.9 × bare.
//
//	go run ./bench/ota -size 512 -r 7 -markdown
//
// Campaign creation (with -campaign-devices): a generated fleet bulk-loaded
// into SQLite and/or PostgreSQL, a signed release, then
// ota.Service.CreateCampaign timed over every device and over filtered
// subsets, and the scheduler's first wave. The target is creation < 10 s for
// 1,000,000 devices. -size 0 skips the downloads.
//
//	go run ./bench/ota -size 0 -campaign-devices 1000000 -backend both -markdown
//
// It never fails on a missed target: it reports.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"time"

	"github.com/steward-iot/steward/bench/internal/fleet"
	"github.com/steward-iot/steward/bench/internal/summary"
)

type options struct {
	SizeMiB  int
	Rounds   int
	Markdown bool
	TLS      bool
}

func main() {
	var o options
	flag.IntVar(&o.SizeMiB, "size", 256, "image size in MiB")
	flag.IntVar(&o.Rounds, "r", 5, "timed downloads per side (the median counts)")
	flag.BoolVar(&o.Markdown, "markdown", false, "also print the result as a Markdown table")
	flag.BoolVar(&o.TLS, "tls", true, "HTTPS (the platform's self-signed certificate; the bare server gets the same kind) instead of plain HTTP")
	c := campaignOptions{Log: os.Stderr}
	flag.IntVar(&c.Devices, "campaign-devices", 0, "measure campaign creation over a fleet of this many devices (0 = not)")
	flag.StringVar(&c.Backend, "backend", "both", "campaigns: sqlite, postgres or both")
	flag.IntVar(&c.Rounds, "campaign-rounds", 3, "campaigns: fresh campaigns created per query (and first waves started)")
	flag.IntVar(&c.WaveSize, "wave-size", 1000, "campaigns: wave_size of the campaigns (the first wave's size)")
	flag.StringVar(&c.PG, "pg", fleet.PGFromEnv(), "campaigns: PostgreSQL server URL (a schema bench_<random> is created and dropped)")
	flag.StringVar(&c.Dir, "dir", "", "campaigns: folder for the SQLite database (default: a temporary folder)")
	flag.BoolVar(&c.Keep, "keep", false, "campaigns: keep the SQLite file / PostgreSQL schema afterwards (for EXPLAIN)")
	flag.Uint64Var(&c.Seed, "seed", 1, "campaigns: seed of the generated fleet")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if o.SizeMiB > 0 {
		res, err := run(ctx, o)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ota bench:", err)
			os.Exit(1)
		}
		res.print(os.Stdout, o)
		if err := measureObjectStore(ctx, o); err != nil { // -s3 (objectstore.go)
			fmt.Fprintln(os.Stderr, "ota bench:", err)
			os.Exit(1)
		}
	}
	if c.Devices > 0 {
		if o.SizeMiB > 0 {
			fmt.Println()
		}
		rep, err := runCampaigns(ctx, c)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ota bench:", err)
			os.Exit(1)
		}
		rep.print(os.Stdout, o.Markdown)
	}
}

type result struct {
	size           int64
	platform, bare float64 // MiB/s, median
	scheme         string
}

func run(ctx context.Context, o options) (*result, error) {
	dir, err := os.MkdirTemp("", "steward-bench-ota-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	p, stop, err := startImagePlatform(ctx, o, dir, "")
	if err != nil {
		return nil, err
	}
	defer stop()

	// The bare server: http.ServeContent of the same file, on the same
	// kind of listener (TLS when the platform's is).
	bareSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(p.image)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer f.Close()
		st, _ := f.Stat()
		http.ServeContent(w, r, "image.bin", st.ModTime(), f)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	scheme := p.scheme()
	if scheme == "https" {
		cert, err := selfSigned()
		if err != nil {
			return nil, err
		}
		ln = tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}})
	}
	go bareSrv.Serve(ln)
	defer bareSrv.Close()
	bareURL := scheme + "://" + ln.Addr().String() + "/image.bin"

	plat, bare, err := alternate(o.Rounds, func() (float64, error) { return p.viaPlatform(ctx) },
		func() (float64, error) { return p.download(ctx, bareURL, nil) })
	if err != nil {
		return nil, err
	}
	return &result{size: p.size, platform: plat, bare: bare, scheme: scheme}, nil
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

func (r *result) print(w io.Writer, o options) {
	ratio := r.platform / r.bare
	verdict := "PASS"
	if ratio < 0.9 {
		verdict = "MISS"
	}
	fmt.Fprintf(w, "image %d MiB over %s on loopback, median of %d downloads\n", r.size>>20, r.scheme, o.Rounds)
	fmt.Fprintf(w, "platform artifact download  %8.0f MiB/s\n", r.platform)
	fmt.Fprintf(w, "bare http.ServeContent      %8.0f MiB/s\n", r.bare)
	fmt.Fprintf(w, "ratio %.2f (target >= 0.90): %s\n", ratio, verdict)
	if o.Markdown {
		fmt.Fprintf(w, "\n| image | transport | platform | bare ServeContent | ratio | target ≥ 0.9 |\n| --- | --- | --- | --- | --- | --- |\n")
		fmt.Fprintf(w, "| %d MiB | %s loopback | %.0f MiB/s | %.0f MiB/s | %.2f | %s |\n", r.size>>20, r.scheme, r.platform, r.bare, ratio, verdict)
	}
	summary.Print(w, summary.Row{Benchmark: "ota", Measurement: fmt.Sprintf("artifact download, %d MiB image, %s loopback", r.size>>20, r.scheme),
		Value: r.platform, Unit: "MiB/s", Peer: "plain ServeContent", PeerValue: r.bare, Target: downloadTarget})
}

// downloadTarget: the platform's download route delivers at least 90% of
// what its peer does.
var downloadTarget = &summary.Target{Op: ">=", Bound: 0.9, Ratio: true}

// selfSigned is an ECDSA P-256 certificate for 127.0.0.1, like the
// platform's own self-signed one.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
