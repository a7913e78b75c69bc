package platform_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/config"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/platform"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/secretbox"
	"github.com/steward-iot/steward/internal/store/sqlstore"
	"github.com/steward-iot/steward/internal/testutil/pgtest"
)

func devConfig(t *testing.T) config.Config {
	cfg := config.Default()
	cfg.Dev = true
	cfg.DataDir = t.TempDir()
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Store.URL = ""
	return cfg
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func start(t *testing.T, cfg config.Config) *platform.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := platform.New(ctx, cfg, quiet(), "test-version")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start(ctx); err != nil {
		s.Shutdown(ctx)
		t.Fatalf("Start: %v", err)
	}
	return s
}

func stop(t *testing.T, s *platform.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func getJSON(t *testing.T, url, key string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// The platform starts on an ephemeral port, writes the first admin key once
// (0600), serves with it, and keeps it across a restart on the same data.
func TestStartWritesAdminKeyOnce(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			cfg := devConfig(t)
			if backend == "postgres" {
				cfg.Store.URL = pgtest.URL(t)
			}
			s := start(t, cfg)
			if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") || strings.HasSuffix(s.URL(), ":0") {
				t.Fatalf("URL = %q, want http://127.0.0.1:<ephemeral port>", s.URL())
			}
			want := filepath.Join(cfg.DataDir, platform.AdminKeyFile)
			if s.AdminKeyPath != want {
				t.Fatalf("AdminKeyPath = %q, want %q", s.AdminKeyPath, want)
			}
			fi, err := os.Stat(want)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("admin key file mode = %v, want 0600", fi.Mode().Perm())
			}
			b, _ := os.ReadFile(want)
			key := strings.TrimSpace(string(b))
			if code, body := getJSON(t, s.URL()+"/api/v1/tenants", key); code != 200 {
				t.Fatalf("GET /api/v1/tenants with the admin key: %d %v", code, body)
			}
			if code, body := getJSON(t, s.URL()+"/readyz", ""); code != 200 || body["store"] != backend {
				t.Fatalf("GET /readyz: %d %v, want 200 with store %s", code, body, backend)
			}
			if code, body := getJSON(t, s.URL()+"/healthz", ""); code != 200 || body["version"] != "test-version" {
				t.Fatalf("GET /healthz: %d %v", code, body)
			}
			stop(t, s)
			if _, err := http.Get(s.URL() + "/healthz"); err == nil {
				t.Fatalf("server still answers after Shutdown")
			}

			// Restart on the same data: no new key, the old one still works.
			cfg.HTTP.Listen = "127.0.0.1:0"
			s2 := start(t, cfg)
			defer stop(t, s2)
			if s2.AdminKeyPath != "" {
				t.Errorf("restart created a new admin key at %s", s2.AdminKeyPath)
			}
			b2, _ := os.ReadFile(want)
			if string(b2) != string(b) {
				t.Errorf("restart rewrote the admin key file")
			}
			if code, body := getJSON(t, s2.URL()+"/api/v1/tenants", key); code != 200 {
				t.Fatalf("old admin key after restart: %d %v", code, body)
			}
		})
	}
}

// A bad configuration is refused before anything is created, naming the field.
func TestNewRejectsBadConfig(t *testing.T) {
	cfg := devConfig(t)
	cfg.DataDir = filepath.Join(cfg.DataDir, "never-made")
	cfg.HTTP.Listen = "8080"
	_, err := platform.New(context.Background(), cfg, quiet(), "test")
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "http.listen" {
		t.Fatalf("New with listen %q: %v, want a config error naming http.listen", cfg.HTTP.Listen, err)
	}
	if _, err := os.Stat(cfg.DataDir); !os.IsNotExist(err) {
		t.Fatalf("the data folder was created for a refused configuration")
	}
}

// Start on a port that is taken fails with a clear error, and Shutdown
// still stops the workers Start had begun and closes the store.
func TestStartOnBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := devConfig(t)
	cfg.HTTP.Listen = ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := platform.New(ctx, cfg, quiet(), "test")
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "listening on "+ln.Addr().String()) {
		t.Fatalf("Start on a busy port: %v, want an error naming the address", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown after a failed Start: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Shutdown after a failed Start hangs")
	}
}

// TestWebhookSecretsSealedOnStart: a webhook secret stored in clear (by a
// version that did not seal them) is sealed when the server starts, and
// still signs with the same value.
func TestWebhookSecretsSealedOnStart(t *testing.T) {
	ctx := t.Context()
	cfg := devConfig(t)
	s := start(t, cfg)
	admin := &authz.Principal{KeyID: "test", Role: model.RolePlatformAdmin}
	ten, err := s.Registry.CreateTenant(ctx, admin, "hooks", model.TenantEnterprise)
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.Registry.CreateWebhook(ctx, admin, ten.ID, registry.WebhookInput{URL: "https://hooks.example/in"}, false)
	if err != nil {
		t.Fatal(err)
	}
	db := s.Store.(*sqlstore.DB)
	raw := func() string {
		_, r := db.DBs()
		var v string
		if err := r.QueryRow(db.Rebind(`SELECT secret FROM webhooks WHERE id = ?`), w.ID).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := raw(); !secretbox.IsSealed(v) {
		t.Fatalf("a new webhook's secret is stored as %q", v)
	}
	wdb, _ := db.DBs()
	if _, err := wdb.Exec(db.Rebind(`UPDATE webhooks SET secret = ? WHERE id = ?`), w.Secret, w.ID); err != nil {
		t.Fatal(err)
	}
	stop(t, s)

	s = start(t, cfg)
	defer stop(t, s)
	db = s.Store.(*sqlstore.DB)
	if v := raw(); !secretbox.IsSealed(v) || strings.Contains(v, w.Secret) {
		t.Fatalf("after a restart the clear secret is stored as %q", v)
	}
	got, err := s.Store.GetWebhook(ctx, ten.ID, w.ID)
	if err != nil || got.Secret != w.Secret {
		t.Fatalf("GetWebhook after sealing: %+v, %v; want the secret unchanged", got, err)
	}
}
