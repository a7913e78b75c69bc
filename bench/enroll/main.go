// Command enroll measures device enrollment: end-to-end HTTPS enrollments
// against a real Steward platform (RFC 7030 simpleenroll with a bootstrap
// token: TLS handshake, CSR check, certificate, registry row, audit record,
// outbox events relayed to the bus) side by side with a bare loop that only
// parses and checks the same kind of CSRs and issues certificates with the
// same CA key, and prints the ratio. The target is e2e ≥ 50% of the bare
// loop. It never fails on a missed target: it reports.
//
// The devices (HTTPS clients) run in a child process, so the server's own
// CPU time per enrollment can be measured apart from the load generator's.
//
//	go run ./bench/enroll -n 2000 -c 16 -backend both -markdown
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/steward-iot/steward/bench/internal/summary"
	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/config"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/platform"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/testutil/pgtest"
)

type options struct {
	N        int
	Clients  int
	Workers  int
	Backend  string
	PG       string
	Reuse    bool
	Markdown bool
	Rounds   int
	Profile  string
	// ClientJob (internal): run as the load generator of this job file.
	ClientJob string
}

func main() {
	var o options
	flag.IntVar(&o.N, "n", 2000, "enrollments per round (each device has its own key, CSR and token)")
	flag.IntVar(&o.Clients, "c", 16, "concurrent HTTPS clients (devices) of the end-to-end run")
	flag.IntVar(&o.Workers, "w", runtime.GOMAXPROCS(0), "goroutines of the bare loop")
	flag.StringVar(&o.Backend, "backend", "sqlite", "sqlite, postgres or both")
	flag.StringVar(&o.PG, "pg", pgtest.BaseURL(), "PostgreSQL server URL (a fresh schema is created in it and dropped)")
	flag.BoolVar(&o.Reuse, "reuse", false, "reuse TLS connections between enrollments (default: a new TLS connection per device, as in the field)")
	flag.IntVar(&o.Rounds, "rounds", 3, "measure each side this many times and keep the best round")
	flag.BoolVar(&o.Markdown, "markdown", false, "also print the results as a Markdown table")
	flag.StringVar(&o.Profile, "cpuprofile", "", "write a CPU profile of the server during the end-to-end runs to this file")
	flag.StringVar(&o.ClientJob, "client-job", "", "internal: run as the load generator of this job file")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if o.ClientJob != "" {
		if err := runClient(ctx, o.ClientJob, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "enroll client:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "enroll:", err)
		os.Exit(1)
	}
}

// device is one simulated device: the DER CSR of its own key, naming its serial.
type device struct {
	Serial string
	CSR    []byte
}

type result struct {
	backend            string
	bare, e2e          float64       // enrollments per second
	bareCPU, serverCPU time.Duration // CPU time per enrollment (bare loop; server process)
	p50, p95           time.Duration
	mode               string
}

func run(ctx context.Context, o options, out io.Writer) error {
	var backends []string
	switch o.Backend {
	case "sqlite", "postgres":
		backends = []string{o.Backend}
	case "both":
		backends = []string{"sqlite", "postgres"}
	default:
		return fmt.Errorf("-backend %q: want sqlite, postgres or both", o.Backend)
	}
	fmt.Fprintf(out, "enroll: n=%d per round, %d rounds, %d clients, %d bare-loop workers, %d CPUs, GOMAXPROCS=%d, %s\n",
		o.N, o.Rounds, o.Clients, o.Workers, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	var results []result
	for _, b := range backends {
		r, err := measure(ctx, o, b, out)
		if err != nil {
			return fmt.Errorf("%s: %w", b, err)
		}
		results = append(results, r)
	}
	fmt.Fprintln(out)
	for _, r := range results {
		fmt.Fprintf(out, "%-8s bare %6.0f/s (%s CPU each)   e2e %6.0f/s (server %s CPU each; p50 %s, p95 %s)   ratio %.1f%% (CPU %.1f%%)  %s\n",
			r.backend, r.bare, us(r.bareCPU), r.e2e, us(r.serverCPU), ms(r.p50), ms(r.p95), 100*r.e2e/r.bare,
			100*float64(r.bareCPU)/float64(r.serverCPU), verdict(r))
	}
	if o.Markdown {
		fmt.Fprintln(out, "\n| backend | connections | bare loop | bare CPU/op | end-to-end | server CPU/op | p50 | p95 | throughput ratio | CPU ratio | target ≥ 50% |")
		fmt.Fprintln(out, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
		for _, r := range results {
			fmt.Fprintf(out, "| %s | %s | %.0f/s | %s | %.0f/s | %s | %s | %s | %.1f%% | %.1f%% | %s |\n", r.backend, r.mode, r.bare,
				us(r.bareCPU), r.e2e, us(r.serverCPU), ms(r.p50), ms(r.p95), 100*r.e2e/r.bare,
				100*float64(r.bareCPU)/float64(r.serverCPU), verdict(r))
		}
	}
	var rows []summary.Row
	for _, r := range results {
		rows = append(rows, summary.Row{Benchmark: "enroll", Measurement: fmt.Sprintf("enrollment rate end to end, %s, %s", r.backend, r.mode),
			Value: r.e2e, Unit: "enrollments/s", Peer: "bare loop", PeerValue: r.bare,
			Target: &summary.Target{Op: ">=", Bound: 0.5, Ratio: true}})
	}
	summary.Print(out, rows...)
	return nil
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }
func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func verdict(r result) string {
	if r.e2e >= r.bare/2 {
		return "PASS"
	}
	return "MISS"
}

// cpuTime is the CPU (user + system) this process has used so far; the
// load generator runs in a child process and is not counted.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// newDevices makes n keys and CSRs (untimed); each CSR names its serial.
func newDevices(n int, tag string) ([]device, error) {
	ds := make([]device, n)
	for i := range ds {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		serial := fmt.Sprintf("BENCH-%s-%07d", tag, i)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{SerialNumber: serial, CommonName: serial}}, key)
		if err != nil {
			return nil, err
		}
		ds[i] = device{Serial: serial, CSR: der}
	}
	return ds, nil
}

func measure(ctx context.Context, o options, backend string, out io.Writer) (result, error) {
	r := result{backend: backend, mode: "new TLS connection per device"}
	if o.Reuse {
		r.mode = "kept-alive TLS connections"
	}
	dir, err := os.MkdirTemp("", "steward-bench-enroll-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	cfg := config.Default()
	cfg.Dev = true
	cfg.DataDir = dir
	cfg.HTTP.Listen = "127.0.0.1:0"
	if backend == "postgres" {
		url, drop, err := pgSchema(ctx, o.PG)
		if err != nil {
			return r, err
		}
		defer drop()
		cfg.Store.URL = url
	}
	srv, err := platform.New(ctx, cfg, slog.New(slog.DiscardHandler), "bench")
	if err != nil {
		return r, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Start(ctx); err != nil {
		return r, err
	}
	admin := &authz.Principal{KeyID: "bench", Role: model.RolePlatformAdmin}
	ten, err := srv.Registry.CreateTenant(ctx, admin, "bench-"+backend, model.TenantEnterprise)
	if err != nil {
		return r, err
	}
	prod, err := srv.Registry.CreateProduct(ctx, admin, ten.ID, registry.ProductInput{Vendor: "Bench", Model: "B1",
		MUDURL: "https://bench.example/mud.json"})
	if err != nil {
		return r, err
	}
	ca := srv.Identity.CA()

	// The bare loop: the least a server must do per enrollment — decode and
	// check the CSR, sign a certificate with the same CA key — and nothing else.
	bareDevs, err := newDevices(o.N, "bare")
	if err != nil {
		return r, err
	}
	bodies := make([][]byte, len(bareDevs))
	for i, d := range bareDevs {
		bodies[i] = []byte(base64.StdEncoding.EncodeToString(d.CSR))
	}
	for round := 0; round < o.Rounds; round++ {
		var next, failed atomic.Int64
		runtime.GC()
		cpu0, start := cpuTime(), time.Now()
		var wg sync.WaitGroup
		for range o.Workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= len(bodies) {
						return
					}
					csr, err := identity.ParseCSR(bodies[i])
					if err == nil {
						_, err = ca.IssueDevice(identity.DeviceCertRequest{DeviceID: bareDevs[i].Serial, PublicKey: csr.PublicKey,
							MUDURL: "https://bench.example/mud.json", Validity: identity.DefaultCertValidity})
					}
					if err != nil {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		rate := float64(o.N) / time.Since(start).Seconds()
		cpu := (cpuTime() - cpu0) / time.Duration(o.N)
		if failed.Load() > 0 {
			return r, fmt.Errorf("bare loop: %d failures", failed.Load())
		}
		fmt.Fprintf(out, "[%s] bare loop round %d: %.0f/s, %s CPU each\n", backend, round+1, rate, us(cpu))
		if rate > r.bare {
			r.bare, r.bareCPU = rate, cpu
		}
	}

	// End to end: every device enrolls over HTTPS with its own token, from
	// the child process.
	if o.Profile != "" {
		f, err := os.Create(o.Profile)
		if err != nil {
			return r, err
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	for round := 0; round < o.Rounds; round++ {
		devs, err := newDevices(o.N, fmt.Sprintf("e2e%d", round))
		if err != nil {
			return r, err
		}
		j := job{URL: srv.ESTURL(), CA: ca.Anchor().Raw, Clients: o.Clients, Reuse: o.Reuse}
		for _, d := range devs {
			tok, _, err := srv.Identity.CreateBootstrapToken(ctx, admin, ten.ID, identity.BootstrapInput{ProductID: prod.ID})
			if err != nil {
				return r, err
			}
			j.Items = append(j.Items, item{Token: tok, CSR: d.CSR})
		}
		// Let the outbox drain before the clock starts.
		waitOutbox(ctx, srv.Store)
		runtime.GC()
		cpu0 := cpuTime()
		res, err := runJob(ctx, dir, j)
		if err != nil {
			return r, err
		}
		// The enrollments' events are part of the work: wait until the
		// relay has put them on the bus.
		waitOutbox(ctx, srv.Store)
		cpu := (cpuTime() - cpu0) / time.Duration(o.N)
		rate := float64(o.N) / res.Elapsed.Seconds()
		fmt.Fprintf(out, "[%s] end-to-end round %d: %.0f/s, server %s CPU each (p50 %s, p95 %s)\n", backend, round+1, rate, us(cpu),
			ms(res.P50), ms(res.P95))
		if rate > r.e2e {
			r.e2e, r.serverCPU, r.p50, r.p95 = rate, cpu, res.P50, res.P95
		}
		if err := check(ctx, srv.Store, ten.ID, devs); err != nil {
			return r, err
		}
	}
	return r, nil
}

// waitOutbox waits (up to 30 s) until the relay has published every event.
func waitOutbox(ctx context.Context, st store.Store) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		evs, err := st.PendingEvents(ctx, 1)
		if err != nil || len(evs) == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// check makes sure the enrollments left what they should: every device
// registered and provisioned, with one certificate and an audit record.
func check(ctx context.Context, st store.Store, tenant string, devs []device) error {
	for _, i := range []int{0, len(devs) / 2, len(devs) - 1} {
		ds, err := st.DevicesBySerial(ctx, tenant, devs[i].Serial)
		if err != nil || len(ds) != 1 {
			return fmt.Errorf("device %s: %d rows, %v", devs[i].Serial, len(ds), err)
		}
		if ds[0].State != model.StateProvisioned {
			return fmt.Errorf("device %s is %s", devs[i].Serial, ds[0].State)
		}
		certs, _, err := st.ListCertificates(ctx, tenant, ds[0].ID, store.ListOptions{})
		if err != nil || len(certs) != 1 {
			return fmt.Errorf("device %s: %d certificates, %v", devs[i].Serial, len(certs), err)
		}
	}
	prefix := strings.TrimSuffix(devs[0].Serial, "0000000")
	n, err := st.CountDevices(ctx, tenant, model.DeviceQuery{SerialPrefix: prefix})
	if err != nil {
		return err
	}
	if int(n) != len(devs) {
		return fmt.Errorf("%d devices registered, want %d", n, len(devs))
	}
	recs, err := st.ListAudit(ctx, tenant, 0, 1<<30)
	if err != nil {
		return err
	}
	issued := 0
	for _, rec := range recs {
		if rec.Action == "certificate.issue" && strings.Contains(string(rec.Summary), prefix) {
			issued++
		}
	}
	if issued != len(devs) {
		return fmt.Errorf("%d certificate.issue audit records for %d enrollments", issued, len(devs))
	}
	return nil
}

// pgSchema makes a fresh schema on the server and returns a URL using it
// and a function that drops it.
func pgSchema(ctx context.Context, base string) (string, func(), error) {
	db, err := sql.Open("pgx", base)
	if err != nil {
		return "", nil, err
	}
	b := make([]byte, 6)
	rand.Read(b)
	schema := "bench_" + hex.EncodeToString(b)
	if _, err := db.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		db.Close()
		return "", nil, fmt.Errorf("PostgreSQL at %s: %w", base, err)
	}
	return pgtest.WithSchema(base, schema), func() {
		db.ExecContext(context.Background(), `DROP SCHEMA `+schema+` CASCADE`)
		db.Close()
	}, nil
}

var errNoResult = errors.New("the load generator printed no result")
