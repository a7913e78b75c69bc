// Package testserver starts a real Steward platform for tests: the same
// assembly as `steward server --dev` (store, embedded bus, relay, webhook
// dispatcher, HTTP API) on an ephemeral loopback port, with SQLite in a
// temporary folder by default or a fresh PostgreSQL schema. Helpers create
// tenants, products, devices and API keys through the real HTTP API, so
// what a test sets up went through the same checks as a client's calls.
//
//	srv := testserver.Start(t, testserver.Options{})
//	ten := srv.CreateTenant(t, "acme")
//	key := srv.CreateKey(t, ten.ID, model.RoleViewer)
//	res := srv.Do(t, testserver.Req{Method: "GET", Path: "/api/v1/devices", Key: key.Secret})
//
// The server is shut down by t.Cleanup; its log is printed when the test failed.
package testserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/config"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/platform"
	"github.com/steward-iot/steward/internal/testutil/pgtest"
)

// APIPrefix is where the REST API lives.
const APIPrefix = "/api/v1"

// Options choose how the platform is built.
type Options struct {
	// Postgres stores in a fresh PostgreSQL schema (pgtest.URL: the test is
	// skipped without a server unless CI=true) instead of SQLite.
	Postgres bool
	// Configure may change the configuration before the platform is built.
	Configure func(*config.Config)
	// BeforeStart runs on the built platform before Start (e.g. to set
	// WebhookBackoff).
	BeforeStart func(*platform.Server)
	// LogLevel of the server log kept for failure reports (default Info).
	LogLevel slog.Level
}

// Server is a running platform.
type Server struct {
	// URL is the base URL, e.g. http://127.0.0.1:40123 (no trailing slash).
	URL string
	// AdminKey is the first platform-admin key (from <DataDir>/admin-api-key).
	AdminKey string
	// Platform is the running server: Store, Registry, API, Bus …
	Platform *platform.Server
	// HTTP is the client the helpers use.
	HTTP *http.Client

	seq atomic.Int64
}

// Backend names the store in use ("sqlite" or "postgres").
func (s *Server) Backend() string { return s.Platform.Store.Backend() }

// Start builds and starts a platform and registers its shutdown with t.Cleanup.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	cfg := config.Default()
	cfg.Dev = true
	cfg.DataDir = t.TempDir()
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.ShutdownTimeout = 5 * time.Second
	cfg.Store.URL = ""
	if o.Postgres {
		cfg.Store.URL = pgtest.URL(t)
	}
	if o.Configure != nil {
		o.Configure(&cfg)
	}

	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: o.LogLevel}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := platform.New(ctx, cfg, log, "test")
	if err != nil {
		t.Fatalf("testserver: building the platform: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("testserver: shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("testserver: server log (%s):\n%s", p.Store.Backend(), logs.tail(32<<10))
		}
	})
	if o.BeforeStart != nil {
		o.BeforeStart(p)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatalf("testserver: starting the platform: %v", err)
	}
	key, err := os.ReadFile(filepath.Join(cfg.DataDir, platform.AdminKeyFile))
	if err != nil {
		t.Fatalf("testserver: reading the admin key: %v", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	s := &Server{URL: p.URL(), AdminKey: strings.TrimSpace(string(key)), Platform: p,
		HTTP: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	t.Cleanup(tr.CloseIdleConnections)
	return s
}

// Unique returns a short string unique within this server, for names and
// serials. No result is a substring of another (fixed-width counter), so
// tests can search answers for them.
func (s *Server) Unique(prefix string) string {
	return fmt.Sprintf("%s-%06d", prefix, s.seq.Add(1))
}

// Req is one API request.
type Req struct {
	Method string
	// Path is relative to the server, e.g. "/api/v1/devices?limit=5".
	Path string
	// Key is sent as "Authorization: Bearer <Key>" when not empty.
	Key string
	// Tenant is sent as X-Steward-Tenant when not empty.
	Tenant string
	// Body is JSON-encoded when not nil; Raw is sent as is when not nil.
	Body any
	Raw  []byte
	// Header holds further headers (Content-Type defaults to
	// application/json when there is a body).
	Header map[string]string
	// Context bounds the request (default: the client's timeout).
	Context context.Context
}

// Resp is an answer with its body read and, when it is JSON, decoded.
type Resp struct {
	Status int
	Header http.Header
	Raw    []byte
	// JSON is the decoded body (map[string]any, []any …) or nil.
	JSON any
}

// Obj is the body as a JSON object (empty when it is not one).
func (r *Resp) Obj() map[string]any {
	m, _ := r.JSON.(map[string]any)
	if m == nil {
		return map[string]any{}
	}
	return m
}

// Str is a top-level string field of the body.
func (r *Resp) Str(field string) string {
	s, _ := r.Obj()[field].(string)
	return s
}

// Items is the "items" list of a list answer.
func (r *Resp) Items() []map[string]any {
	l, _ := r.Obj()["items"].([]any)
	out := make([]map[string]any, 0, len(l))
	for _, v := range l {
		if m, ok := v.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// Problem is the body as RFC 9457 problem details (zero when it is not one).
func (r *Resp) Problem() Problem {
	var p Problem
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/problem+json") {
		json.Unmarshal(r.Raw, &p)
	}
	return p
}

// Into decodes the body into v.
func (r *Resp) Into(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Raw, v); err != nil {
		t.Fatalf("decoding %s into %T: %v", r.Raw, v, err)
	}
}

func (r *Resp) String() string {
	b := r.Raw
	if len(b) > 2048 {
		b = append(b[:2048:2048], "…"...)
	}
	return fmt.Sprintf("%d %s", r.Status, b)
}

// Problem is an RFC 9457 answer as the API sends it.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Errors []struct {
		Message  string `json:"message"`
		Location string `json:"location"`
		Value    any    `json:"value"`
	} `json:"errors"`
}

// Text is the detail and every error's location and message, for
// checking that an answer names the problem.
func (p Problem) Text() string {
	var b strings.Builder
	b.WriteString(p.Detail)
	for _, e := range p.Errors {
		b.WriteString("\n" + e.Location + ": " + e.Message)
	}
	return b.String()
}

// Do sends r and returns the answer; transport errors fail the test.
func (s *Server) Do(t testing.TB, r Req) *Resp {
	t.Helper()
	res, err := s.Send(r)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.Path, err)
	}
	return res
}

// Send is Do without a test: for goroutines and for expected failures.
func (s *Server) Send(r Req) (*Resp, error) {
	var body io.Reader
	switch {
	case r.Raw != nil:
		body = bytes.NewReader(r.Raw)
	case r.Body != nil:
		b, err := json.Marshal(r.Body)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	ctx := r.Context
	if ctx == nil {
		ctx = context.Background()
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, s.URL+r.Path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	if r.Key != "" {
		req.Header.Set("Authorization", "Bearer "+r.Key)
	}
	if r.Tenant != "" {
		req.Header.Set("X-Steward-Tenant", r.Tenant)
	}
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	resp, err := s.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := &Resp{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if ct := resp.Header.Get("Content-Type"); strings.Contains(ct, "json") && len(raw) > 0 {
		var v any
		if err := json.Unmarshal(raw, &v); err == nil {
			out.JSON = v
		}
	}
	return out, nil
}

// JSON sends a JSON request and returns the status and the decoded body.
func (s *Server) JSON(t testing.TB, method, path, key, tenant string, body any) (int, map[string]any) {
	t.Helper()
	r := s.Do(t, Req{Method: method, Path: path, Key: key, Tenant: tenant, Body: body})
	return r.Status, r.Obj()
}

// Must sends r and fails the test unless the answer has status want.
func (s *Server) Must(t testing.TB, want int, r Req) *Resp {
	t.Helper()
	res := s.Do(t, r)
	if res.Status != want {
		t.Fatalf("%s %s: want %d, got %s", r.Method, r.Path, want, res)
	}
	return res
}

// Tenant is a tenant made by CreateTenant, with a tenant-admin key.
type Tenant struct {
	model.Tenant
	// Admin is a tenant-admin key of this tenant.
	Admin Key
}

// Key is an API key with its secret.
type Key struct {
	model.APIKey
	Secret string
}

// CreateTenant makes an enterprise tenant named name (made unique) with a
// tenant-admin key, as the platform admin.
func (s *Server) CreateTenant(t testing.TB, name string) *Tenant {
	t.Helper()
	res := s.Must(t, http.StatusCreated, Req{Method: http.MethodPost, Path: APIPrefix + "/tenants", Key: s.AdminKey,
		Body: map[string]any{"name": s.Unique(name), "kind": "enterprise"}})
	ten := &Tenant{}
	res.Into(t, &ten.Tenant)
	ten.Admin = s.CreateKey(t, ten.ID, model.RoleTenantAdmin)
	return ten
}

// CreateKey makes an API key of role in tenantID ("" = a platform key), as
// the platform admin.
func (s *Server) CreateKey(t testing.TB, tenantID string, role model.Role) Key {
	t.Helper()
	return s.CreateKeyAs(t, s.AdminKey, tenantID, role, nil)
}

// CreateKeyAs makes an API key with the key creator (X-Steward-Tenant:
// tenantID when creator is a platform key), optionally expiring.
func (s *Server) CreateKeyAs(t testing.TB, creator, tenantID string, role model.Role, expires *time.Time) Key {
	t.Helper()
	body := map[string]any{"name": s.Unique(string(role)), "role": role}
	if expires != nil {
		body["expires_at"] = expires.UTC().Format(time.RFC3339Nano)
	}
	res := s.Must(t, http.StatusCreated, Req{Method: http.MethodPost, Path: APIPrefix + "/api-keys", Key: creator,
		Tenant: tenantID, Body: body})
	var k Key
	res.Into(t, &k.APIKey)
	k.Secret = res.Str("secret")
	if k.Secret == "" || k.ID == "" {
		t.Fatalf("creating a key: answer without id or secret: %s", res)
	}
	return k
}

// CreateProduct makes a product in tenantID, as the platform admin.
func (s *Server) CreateProduct(t testing.TB, tenantID string) model.Product {
	t.Helper()
	res := s.Must(t, http.StatusCreated, Req{Method: http.MethodPost, Path: APIPrefix + "/products", Key: s.AdminKey,
		Tenant: tenantID, Body: map[string]any{"vendor": "Acme", "model": s.Unique("model")}})
	var p model.Product
	res.Into(t, &p)
	return p
}

// DeviceOpts are optional fields of CreateDevice.
type DeviceOpts struct {
	Serial          string // default: unique
	State           model.State
	Tags            []string
	FirmwareVersion string
}

// CreateDevice registers a device of productID in tenantID, as the platform admin.
func (s *Server) CreateDevice(t testing.TB, tenantID, productID string, o ...DeviceOpts) model.Device {
	t.Helper()
	var opt DeviceOpts
	if len(o) > 0 {
		opt = o[0]
	}
	if opt.Serial == "" {
		opt.Serial = s.Unique("SN")
	}
	body := map[string]any{"product_id": productID, "serial": opt.Serial}
	if opt.State != "" {
		body["state"] = opt.State
	}
	if opt.Tags != nil {
		body["tags"] = opt.Tags
	}
	if opt.FirmwareVersion != "" {
		body["firmware_version"] = opt.FirmwareVersion
	}
	res := s.Must(t, http.StatusCreated, Req{Method: http.MethodPost, Path: APIPrefix + "/devices", Key: s.AdminKey,
		Tenant: tenantID, Body: body})
	var d model.Device
	res.Into(t, &d)
	return d
}

// logBuffer keeps the server log in memory for failure reports.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// Keep memory bounded in long tests: drop the oldest half past 4 MiB.
	if l.buf.Len() > 4<<20 {
		rest := append([]byte(nil), l.buf.Bytes()[l.buf.Len()/2:]...)
		l.buf.Reset()
		l.buf.Write(rest)
	}
	return l.buf.Write(p)
}

func (l *logBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buf.Bytes()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// CopyFiles copies the regular files of one folder level, keeping their
// permissions: how a second node gets the first node's PKI (data_dir/pki)
// or admin key file.
func CopyFiles(t testing.TB, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}
