package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"syscall"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/config"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/platform"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/store"
)

// cred is one client identity handed from the server process to the load
// generator.
type cred struct {
	ID   string
	Cert []byte // DER
	Key  []byte // PKCS#8 DER
}

// serverInfo is what the Steward server process prints when it is ready.
type serverInfo struct {
	Cert, App string // listener addresses
	CA        []byte // DER of the platform CA
	Creds     string // gob file of []cred
	AppKeyID  string
	AppKey    string
}

// tuning selects the broker's per-connection settings.
type tuning struct {
	WritesPending, ReadBuffer, WriteBuffer int
}

// runServer is the child process: a Steward platform (SQLite, embedded
// NATS, the broker with certificate auth, ACL and telemetry ingestion) with
// n enrolled devices, until SIGTERM. SIGUSR1 returns freed memory to the OS
// (so that RSS shows live memory).
func runServer(dir string, n int, tu tuning) error {
	ctx := context.Background()
	if os.Getenv("STEWARD_BENCH_PPROF") != "" && os.Getenv("STEWARD_BENCH_HOLD") != "" {
		// A look at the idle connections' memory: a heap profile fine
		// enough to tell a few hundred bytes per connection apart (the
		// default samples one allocation in 512 KiB). It costs CPU on
		// every allocation, so a CPU profile of fan-in goes without.
		runtime.MemProfileRate = 4096
	}
	cfg := config.Default()
	cfg.Dev = true
	cfg.DataDir = dir
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.MQTT.Listen, cfg.MQTT.AppListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Log.Level = "warn"
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := platform.New(ctx, cfg, log, "bench")
	if err != nil {
		return err
	}
	p.BrokerConfig = func(c *broker.Config) {
		c.RateLimit, c.ByteRate = -1, -1 // the load is the point
		if tu.WritesPending > 0 {
			c.WritesPending = tu.WritesPending
		}
		if tu.ReadBuffer > 0 {
			c.ReadBuffer = tu.ReadBuffer
		}
		if tu.WriteBuffer > 0 {
			c.WriteBuffer = tu.WriteBuffer
		}
	}
	if err := p.Start(ctx); err != nil {
		return err
	}
	if a := os.Getenv("STEWARD_BENCH_PPROF"); a != "" {
		http.HandleFunc("/stackstart", func(w http.ResponseWriter, _ *http.Request) {
			s := []metrics.Sample{{Name: "/gc/stack/starting-size:bytes"}}
			metrics.Read(s)
			fmt.Fprintln(w, s[0].Value.Uint64())
		})
		go http.ListenAndServe(a, nil)
	}
	admin := &authz.Principal{Role: model.RolePlatformAdmin, KeyID: "bench"}
	ten, err := p.Registry.CreateTenant(ctx, admin, "bench", model.TenantEnterprise)
	if err != nil {
		return err
	}
	prd, err := p.Registry.CreateProduct(ctx, admin, ten.ID, registryProduct())
	if err != nil {
		return err
	}
	appKey, k, err := p.Registry.CreateAPIKey(ctx, admin, ten.ID, "bench consumer", model.RoleViewer, nil)
	if err != nil {
		return err
	}
	creds := make([]cred, 0, n)
	now := time.Now().UTC()
	for len(creds) < n {
		err := p.Store.Update(ctx, func(tx store.Tx) error {
			for i := 0; i < 1000 && len(creds) < n; i++ {
				d := &model.Device{ID: ids.New("dev"), TenantID: ten.ID, ProductID: prd.ID, Serial: fmt.Sprintf("B-%06d", len(creds)),
					State: model.StateActive, CreatedAt: now, UpdatedAt: now, Version: 1}
				if err := tx.CreateDevice(ctx, d); err != nil {
					return err
				}
				key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				c, err := p.Identity.CA().IssueDevice(identity.DeviceCertRequest{DeviceID: d.ID, PublicKey: key.Public(), Validity: 48 * time.Hour})
				if err != nil {
					return err
				}
				rec, err := identity.CertRecord(c, ten.ID, d.ID, model.EnrollMethod("bootstrap_token"), now)
				if err != nil {
					return err
				}
				if err := tx.CreateCertificate(ctx, rec); err != nil {
					return err
				}
				kd, _ := x509.MarshalPKCS8PrivateKey(key)
				creds = append(creds, cred{ID: d.ID, Cert: c.Raw, Key: kd})
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	credPath := filepath.Join(dir, "creds.gob")
	f, err := os.Create(credPath)
	if err != nil {
		return err
	}
	if err := gob.NewEncoder(f).Encode(creds); err != nil {
		return err
	}
	f.Close()
	info := serverInfo{Cert: p.MQTTAddr(broker.ListenerCert), App: p.MQTTAddr(broker.ListenerApp),
		CA: p.Identity.CA().Anchor().Raw, Creds: credPath, AppKeyID: k.ID, AppKey: appKey}
	creds = nil
	debug.FreeOSMemory()
	b, _ := json.Marshal(info)
	fmt.Println(string(b))

	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	for s := range sig {
		if s == syscall.SIGUSR1 {
			// Several collections: each one halves the stacks of idle
			// goroutines that use less than a quarter of theirs, as a
			// server idling for a few minutes would see.
			for range 4 {
				runtime.GC()
			}
			debug.FreeOSMemory()
			continue
		}
		break
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = p.Shutdown(sctx)
	fmt.Fprintf(os.Stderr, "STATS points=%d batches=%d dropped=%d\n", p.Ingester.Points.Load(), p.Ingester.Batches.Load(), p.Ingester.Dropped.Load())
	return err
}

func registryProduct() registry.ProductInput {
	return registry.ProductInput{Vendor: "Bench", Model: "Sensor"}
}
