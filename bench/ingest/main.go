// Command ingest measures telemetry ingestion end to end: simulated
// devices (internal/sim: EST enrollment, MQTT over TLS with client
// certificates, QoS 1) send telemetry to a real platform, and the rate of
// messages the platform acknowledged (a PUBACK follows the database
// commit) is reported as messages and points per second, on SQLite and on
// PostgreSQL. The simulator runs in the same process as the server, so
// on a small machine the figures are a lower bound of the server's.
//
//	go run ./bench/ingest -backend both -devices 1000 -interval 50ms -time 15s -markdown
package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/steward-iot/steward/bench/internal/summary"
	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/config"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/platform"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/sim"
	"github.com/steward-iot/steward/internal/testutil/pgtest"
)

// pointsPerMessage is what one simulated telemetry message carries
// (temp, cpu, rssi).
const pointsPerMessage = 3

type options struct {
	Backend  string
	PG       string
	Devices  int
	Interval time.Duration
	Warmup   time.Duration
	Time     time.Duration
	Markdown bool
}

type result struct {
	backend         string
	devices         int
	offered         float64 // messages per second asked for
	msgs, points    float64 // acknowledged per second
	acked, sent     int64
	connectDuration time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.Backend, "backend", "both", "sqlite, postgres or both")
	flag.StringVar(&o.PG, "pg", pgtest.BaseURL(), "PostgreSQL server URL (a fresh schema is created in it and dropped)")
	flag.IntVar(&o.Devices, "devices", 1000, "simulated devices")
	flag.DurationVar(&o.Interval, "interval", 50*time.Millisecond, "telemetry interval per device")
	flag.DurationVar(&o.Warmup, "warmup", 3*time.Second, "load before the measurement starts")
	flag.DurationVar(&o.Time, "time", 15*time.Second, "measurement time")
	flag.BoolVar(&o.Markdown, "markdown", false, "also print the results as a Markdown table")
	flag.Parse()
	if err := run(context.Background(), o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, out io.Writer) error {
	backends := []string{o.Backend}
	if o.Backend == "both" {
		backends = []string{"sqlite", "postgres"}
	}
	fmt.Fprintf(out, "ingest: %d devices, one message (%d points) every %s each, %s warm-up, %s measured, %d CPUs, %s\n",
		o.Devices, pointsPerMessage, o.Interval, o.Warmup, o.Time, runtime.NumCPU(), runtime.Version())
	var results []result
	for _, be := range backends {
		r, err := measure(ctx, o, be, out)
		if err != nil {
			return fmt.Errorf("%s: %w", be, err)
		}
		results = append(results, r)
		fmt.Fprintf(out, "%-8s offered %.0f msg/s  acknowledged %.0f msg/s = %.0f points/s  (%d devices connected in %s)\n",
			r.backend, r.offered, r.msgs, r.points, r.devices, r.connectDuration.Round(time.Millisecond))
	}
	if o.Markdown {
		fmt.Fprintln(out)
		fmt.Fprintln(out, "| backend | devices | offered msg/s | acknowledged msg/s | points/s |")
		fmt.Fprintln(out, "| --- | ---: | ---: | ---: | ---: |")
		for _, r := range results {
			fmt.Fprintf(out, "| %s | %d | %.0f | %.0f | %.0f |\n", r.backend, r.devices, r.offered, r.msgs, r.points)
		}
	}
	// No peer and no target: the row shows the figure next to the others.
	var rows []summary.Row
	for _, r := range results {
		rows = append(rows, summary.Row{Benchmark: "ingest", Unit: "points/s", Value: r.points,
			Measurement: fmt.Sprintf("telemetry points acknowledged, %s, %d devices offering %.0f msg/s", r.backend, r.devices, r.offered)})
	}
	summary.Print(out, rows...)
	return nil
}

func measure(ctx context.Context, o options, backend string, out io.Writer) (result, error) {
	r := result{backend: backend, devices: o.Devices, offered: float64(o.Devices) / o.Interval.Seconds()}
	dir, err := os.MkdirTemp("", "steward-bench-ingest-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	cfg := config.Default()
	cfg.Dev = true
	cfg.DataDir = dir
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.MQTT.Listen = "127.0.0.1:0"
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
	// Measure ingestion, not the per-device rate limits.
	srv.BrokerConfig = func(c *broker.Config) { c.RateLimit, c.ByteRate = -1, -1 }
	if err := srv.Start(ctx); err != nil {
		return r, err
	}
	admin := &authz.Principal{KeyID: "bench", Role: model.RolePlatformAdmin}
	ten, err := srv.Registry.CreateTenant(ctx, admin, "ingest-"+backend, model.TenantEnterprise)
	if err != nil {
		return r, err
	}
	prod, err := srv.Registry.CreateProduct(ctx, admin, ten.ID, registry.ProductInput{Vendor: "Bench", Model: "I1"})
	if err != nil {
		return r, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(srv.Identity.CA().Anchor())
	tokens := func(ctx context.Context, serial string) (string, error) {
		tok, _, err := srv.Identity.CreateBootstrapToken(ctx, admin, ten.ID, identity.BootstrapInput{ProductID: prod.ID})
		return tok, err
	}
	s, err := sim.New(sim.Config{Devices: o.Devices, ESTURL: srv.ESTURL(), Tokens: tokens,
		MQTT: []string{srv.MQTTAddr(broker.ListenerCert)}, Roots: roots, Interval: o.Interval,
		Mix: sim.Mix{sim.WellBehaved: 1}, Seed: 1})
	if err != nil {
		return r, err
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- s.Run(sctx) }()
	defer func() { stop(); <-done }()
	for s.Stats().Online < int64(o.Devices) {
		select {
		case err := <-done:
			done <- err
			return r, fmt.Errorf("simulation ended early: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(start) > 5*time.Minute {
			return r, fmt.Errorf("only %d of %d devices online after 5 minutes", s.Stats().Online, o.Devices)
		}
	}
	r.connectDuration = time.Since(start)
	time.Sleep(o.Warmup)
	a0, t0 := s.Stats().Acked, time.Now()
	time.Sleep(o.Time)
	a1, t1 := s.Stats().Acked, time.Now()
	r.msgs = float64(a1-a0) / t1.Sub(t0).Seconds()
	r.points = r.msgs * pointsPerMessage
	st := s.Stats()
	r.acked, r.sent = st.Acked, st.Sent
	return r, nil
}

// pgSchema creates a fresh schema and returns a URL that uses it.
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
