// Package platform assembles a Steward server from its configuration: the
// store, the bus, the domain services, the event relay, webhooks and the
// HTTP edge. It owns start-up order and graceful shutdown.
package platform

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/steward-iot/steward/internal/bus"
	"github.com/steward-iot/steward/internal/config"
	"github.com/steward-iot/steward/internal/events"
	"github.com/steward-iot/steward/internal/httpapi"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/secretbox"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/store/sqlstore"
	"github.com/steward-iot/steward/internal/webhook"
)

// AdminKeyFile is where the first platform admin key is written (0600).
const AdminKeyFile = "admin-api-key"

// Server is a running platform.
type Server struct {
	Config   config.Config
	Log      *slog.Logger
	Store    store.Store
	Bus      *bus.Bus
	Registry *registry.Service
	API      *httpapi.API
	Relay    *events.Relay
	Version  string

	httpSrv  *http.Server
	listener net.Listener
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	// AdminKeyPath is set when this start created the first admin key.
	AdminKeyPath string

	identityParts // Identity, Authenticator, EST (identity.go)

	connectivityParts // Broker, Twin, Commands, Telemetry (connectivity.go)

	dashboardParts // Web, AdminCredentialsPath (dashboard.go)

	securityParts // Vulns, Policy, Defender (security.go)

	otaParts // OTA (ota.go)

	lifecycleParts // Retire, Discovery (lifecycle.go)

	// WebhookBackoff and WebhookPoll tune the webhook dispatcher (retry
	// delays and how often due deliveries are looked for). Zero values keep
	// the dispatcher's defaults (webhook.Backoff, 1s). Set them before
	// Start; tests use them to see retries within milliseconds.
	WebhookBackoff []time.Duration
	WebhookPoll    time.Duration
}

// New opens the store and the bus and builds the services; nothing listens
// until Start.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, version string) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the data folder %s: %w", cfg.DataDir, err)
	}
	s := &Server{Config: cfg, Log: log, Version: version}
	// The store seals webhook secrets with a key kept beside the CA keys
	// (and protected by the same passphrase).
	skey, err := identity.LoadOrCreateSecretsKey(identity.PKIConfig{Dir: filepath.Join(cfg.DataDir, PKIDir), Passphrase: cfg.PKI.Passphrase,
		Log: log.With("component", "identity")})
	if err != nil {
		return nil, err
	}
	box, err := secretbox.New(skey)
	if err != nil {
		return nil, err
	}
	st, err := sqlstore.Open(ctx, cfg.Store.URL, sqlstore.Options{Secrets: box})
	if err != nil {
		return nil, fmt.Errorf("opening the store: %w", err)
	}
	s.Store = st
	sealed, err := st.SealWebhookSecrets(ctx)
	if err != nil {
		st.Close()
		return nil, err
	}
	if sealed.Sealed > 0 {
		log.Info("sealed webhook secrets that were stored in clear", "webhooks", sealed.Sealed)
	}
	if sealed.Unreadable > 0 {
		// Not fatal: the webhooks stay visible and deletable, and each
		// delivery for them fails with the same reason.
		log.Error("webhook secrets do not open with this node's secrets key: their deliveries fail until the key "+
			"they were sealed with is in place (copy data_dir/pki/secrets.key from a node of this platform, or from "+
			"the backup the database came from, then restart), or the webhooks are created again",
			"webhooks", sealed.Unreadable, "key", filepath.Join(cfg.DataDir, PKIDir, identity.SecretsKeyFile))
	}
	b, err := bus.Open(ctx, bus.Config{URL: cfg.Bus.URL, DataDir: filepath.Join(cfg.DataDir, "bus"), Prefix: cfg.Bus.Prefix,
		Replicas: cfg.Bus.Replicas, Name: "steward", EventRetention: cfg.Bus.EventRetention,
		TelemetryRetention: cfg.Bus.TelemetryRetention, TelemetryAckWait: cfg.Bus.TelemetryAckWait}, log.With("component", "bus"))
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("opening the event bus: %w", err)
	}
	s.Bus = b
	s.Registry = registry.New(st)
	if err := s.openIdentity(ctx); err != nil {
		b.Close()
		st.Close()
		return nil, err
	}
	s.Relay = events.NewRelay(st, b, log.With("component", "relay"), 0)
	s.openConnectivity()
	s.openSecurity()
	s.openLifecycle()
	if err := s.openOTA(); err != nil {
		b.Close()
		st.Close()
		return nil, err
	}
	s.mountDeviceAPI()
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.telemetryMetrics(metrics)
	s.API = httpapi.New(httpapi.Deps{Registry: s.Registry, Store: st, Bus: b, Log: log, Metrics: metrics,
		Version: version, AllowHTTPWebhooks: cfg.Dev || cfg.Webhooks.AllowHTTP, Ready: s.ready, Identity: s.Identity,
		Connectivity: s.connectivityDeps(), Security: s.securityDeps(), OTA: s.otaDeps(),
		Lifecycle: s.lifecycleDeps()})
	if err := s.openDashboard(); err != nil {
		b.Close()
		st.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.Store.Ping(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if !s.Bus.Conn().IsConnected() {
		return errors.New("event bus: not connected")
	}
	if err := s.Relay.Err(); err != nil {
		return fmt.Errorf("event relay: %w", err)
	}
	return nil
}

// Start creates the first admin key if needed, starts the background
// workers and begins serving HTTP.
func (s *Server) Start(ctx context.Context) error {
	secret, _, err := s.Registry.Bootstrap(ctx)
	if err != nil {
		return fmt.Errorf("creating the first admin key: %w", err)
	}
	if secret != "" {
		p := filepath.Join(s.Config.DataDir, AdminKeyFile)
		if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
			return fmt.Errorf("writing the admin key file: %w", err)
		}
		s.AdminKeyPath = p
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.Relay.Run(wctx) }()
	go func() {
		defer s.wg.Done()
		d := &webhook.Dispatcher{St: s.Store, Bus: s.Bus, Log: s.Log.With("component", "webhooks"),
			Backoff: s.WebhookBackoff, Poll: s.WebhookPoll}
		if err := d.Run(wctx); err != nil {
			s.Log.Error("webhook dispatcher stopped", "err", err)
		}
	}()

	if err := s.startIdentity(wctx); err != nil {
		return err
	}
	if err := s.startDashboard(wctx); err != nil {
		return err
	}
	if err := s.startConnectivity(wctx); err != nil {
		return err
	}
	s.startSecurity(wctx)
	if err := s.startCampaigns(wctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.Config.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w (is another server running? change http.listen)", s.Config.HTTP.Listen, err)
	}
	s.listener = ln
	s.httpSrv = &http.Server{Handler: s.API, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		ErrorLog: slog.NewLogLogger(s.Log.Handler(), slog.LevelWarn)}
	s.httpSrv.RegisterOnShutdown(s.API.CloseStreams)
	if s.Config.TLS() {
		cert, err := s.tlsCertificate()
		if err != nil {
			ln.Close()
			return err
		}
		s.httpSrv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		ln = tls.NewListener(ln, s.httpSrv.TLSConfig)
	}
	go func() {
		if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Log.Error("http server stopped", "err", err)
		}
	}()
	return nil
}

// Addr is the address the HTTP listener is bound to.
func (s *Server) Addr() string {
	if s.listener == nil {
		return ""
	}
	return s.listener.Addr().String()
}

// URL is the base URL clients use.
func (s *Server) URL() string {
	if s.Config.HTTP.PublicURL != "" {
		return s.Config.HTTP.PublicURL
	}
	scheme := "http"
	if s.Config.TLS() {
		scheme = "https"
	}
	host, port, _ := net.SplitHostPort(s.Addr())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// Shutdown stops taking requests, lets running ones finish, flushes the
// outbox and closes the bus and the store, in that order.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	s.stopDashboard()
	if s.httpSrv != nil {
		if err := s.httpSrv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, s.stopConnectivity(ctx))
	s.stopSecurity()
	s.stopCampaigns()
	errs = append(errs, s.stopIdentity(ctx))
	if s.cancel != nil {
		s.cancel()
		s.wg.Wait()
	}
	if s.Bus != nil {
		errs = append(errs, s.Bus.Close())
	}
	if s.Store != nil {
		errs = append(errs, s.Store.Close())
	}
	return errors.Join(errs...)
}
