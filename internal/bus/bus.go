// Package bus is the platform's event bus: a NATS connection with JetStream,
// either to a NATS server embedded in-process (one machine, no listening
// port) or to an external NATS cluster (scaled out). Domain events are kept
// in one JetStream stream per deployment prefix.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config selects and tunes the bus.
type Config struct {
	// URL is "" to run an embedded NATS server in-process; otherwise the
	// nats:// URL(s) of an external cluster with JetStream, comma separated.
	URL string
	// DataDir is the JetStream store directory (embedded only); created if missing.
	DataDir string
	// Prefix namespaces subjects and the stream so that several deployments
	// or tests can share one NATS server. Default "steward"; one subject
	// token of [A-Za-z0-9_-].
	Prefix string
	// Name is the connection name shown in NATS monitoring.
	Name string
	// EventRetention is the max age of stored events; 0 = 7 days.
	EventRetention time.Duration
	// TelemetryRetention is the max age of telemetry waiting in the
	// telemetry stream to be stored; 0 = 24 hours.
	TelemetryRetention time.Duration
	// TelemetryAckWait is how long a node may hold telemetry it took from
	// the stream before it goes to another node; 0 = 10 s.
	TelemetryAckWait time.Duration
	// Replicas of the events and telemetry streams on a clustered
	// external server; 0 = 1.
	Replicas int
	// RetryBackoff is the redelivery delay after the n-th failed attempt in
	// ConsumeEvents and of telemetry after a failed commit (the last value
	// repeats); nil = 1s, 5s, 30s, 1m, 5m.
	RetryBackoff []time.Duration
}

const (
	defaultPrefix    = "steward"
	defaultRetention = 7 * 24 * time.Hour
	dupWindow        = 2 * time.Minute
	readyTimeout     = 30 * time.Second // JetStream may need to recover a large store
)

var defaultBackoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute}

// tokenRe matches one subject token that needs no escaping and cannot act as a wildcard.
var tokenRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Bus is an open connection to the event bus. It is safe for concurrent use.
type Bus struct {
	cfg    Config
	log    *slog.Logger
	ns     *server.Server // nil in external mode
	nc     *nats.Conn
	js     jetstream.JetStream
	stream string
	// tjs publishes telemetry asynchronously (its own in-flight limit
	// and ack timeout); tstream is the telemetry stream.
	tjs     jetstream.JetStream
	tstream string
	closed  chan struct{} // closed by the nats ClosedHandler

	// ctx is cancelled by Close so that subscriptions and workers stop
	// before the connection is drained; wg tracks their goroutines.
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	done   bool
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Open connects to (or starts) NATS and creates or updates the events stream.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Bus, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = defaultPrefix
	}
	if !tokenRe.MatchString(cfg.Prefix) {
		return nil, fmt.Errorf("bus: invalid prefix %q: must be one subject token of [A-Za-z0-9_-]", cfg.Prefix)
	}
	if cfg.EventRetention <= 0 {
		cfg.EventRetention = defaultRetention
	}
	if cfg.TelemetryRetention <= 0 {
		cfg.TelemetryRetention = defaultTelemetryKeep
	}
	if cfg.TelemetryAckWait <= 0 {
		cfg.TelemetryAckWait = defaultTelemetryAckWait
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if len(cfg.RetryBackoff) == 0 {
		cfg.RetryBackoff = defaultBackoff
	}
	if cfg.Name == "" {
		cfg.Name = "steward"
	}
	name := strings.ToUpper(strings.ReplaceAll(cfg.Prefix, "-", "_"))
	b := &Bus{
		cfg:     cfg,
		log:     log.With("component", "bus"),
		stream:  name + "_EVENTS",
		tstream: name + "_TELEMETRY",
		closed:  make(chan struct{}),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())

	var err error
	if cfg.URL == "" {
		err = b.startEmbedded()
	} else {
		err = b.connectExternal()
	}
	if err == nil {
		b.js, err = jetstream.New(b.nc)
	}
	if err == nil {
		b.tjs, err = jetstream.New(b.nc, jetstream.WithPublishAsyncMaxPending(telemetryMaxPending),
			jetstream.WithPublishAsyncTimeout(telemetryPubTimeout))
	}
	if err == nil {
		err = b.ensureStream(ctx)
	}
	if err != nil {
		_ = b.Close()
		return nil, err
	}
	return b, nil
}

func (b *Bus) startEmbedded() error {
	if b.cfg.DataDir == "" {
		return errors.New("bus: DataDir is required for the embedded NATS server")
	}
	if err := os.MkdirAll(b.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("bus: create data dir: %w", err)
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: b.cfg.Prefix, // a valid token; Name may contain spaces, server names may not
		DontListen: true,         // in-process connections only: no TCP port
		JetStream:  true,
		StoreDir:   b.cfg.DataDir,
		NoLog:      true, // we install our own slog adapter below
		NoSigs:     true, // the host process owns signal handling
	})
	if err != nil {
		return fmt.Errorf("bus: embedded nats server: %w", err)
	}
	ns.SetLogger(serverLog{b.log.With("nats", "embedded")}, false, false)
	b.ns = ns
	ns.Start()
	if !ns.ReadyForConnections(readyTimeout) {
		return errors.New("bus: embedded nats server not ready in time")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name(b.cfg.Name),
		nats.ClosedHandler(func(*nats.Conn) { close(b.closed) }))
	if err != nil {
		return fmt.Errorf("bus: connect to embedded nats server: %w", err)
	}
	b.nc = nc
	return nil
}

func (b *Bus) connectExternal() error {
	where := redactURLs(b.cfg.URL) // the URL may carry credentials
	nc, err := nats.Connect(b.cfg.URL,
		nats.Name(b.cfg.Name),
		nats.MaxReconnects(-1), // a bus that gives up would silently stop events
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			return min(time.Duration(attempts)*500*time.Millisecond, 10*time.Second)
		}),
		nats.DisconnectErrHandler(func(c *nats.Conn, err error) {
			if err != nil { // nil when we close the connection ourselves
				b.log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			b.log.Info("nats reconnected", "url", redactURLs(c.ConnectedUrl()))
		}),
		nats.ErrorHandler(func(c *nats.Conn, s *nats.Subscription, err error) {
			b.log.Warn("nats async error", "err", err)
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(b.closed) }),
	)
	if err != nil {
		return fmt.Errorf("bus: connect to nats %s: %w", where, err)
	}
	b.nc = nc
	b.log.Info("connected to nats", "url", redactURLs(nc.ConnectedUrl()))
	return nil
}

// ensureStream creates or updates the events and telemetry streams.
func (b *Bus) ensureStream(ctx context.Context) error {
	err := b.ensure(ctx, jetstream.StreamConfig{
		Name:        b.stream,
		Description: "Steward domain events",
		Subjects:    []string{b.Subject("events", ">")},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      b.cfg.EventRetention,
		Duplicates:  dupWindow,
		Replicas:    b.cfg.Replicas,
	})
	if err != nil {
		return err
	}
	return b.ensure(ctx, jetstream.StreamConfig{
		Name:        b.tstream,
		Description: "Steward telemetry waiting to be stored",
		Subjects:    []string{b.Subject("telemetry", ">")},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.WorkQueuePolicy, // gone once stored and acked
		Discard:     jetstream.DiscardOld,
		MaxAge:      b.cfg.TelemetryRetention,
		Duplicates:  dupWindow,
		Replicas:    b.cfg.Replicas,
	})
}

// ensure creates or updates a stream. It refuses to take over a stream of
// the same name that serves other subjects (prefixes "a-b" and "a_b", or
// "x" and "X", map to the same stream name).
func (b *Bus) ensure(ctx context.Context, cfg jetstream.StreamConfig) error {
	subject := cfg.Subjects[0]
	if s, err := b.js.Stream(ctx, cfg.Name); err == nil {
		if subj := s.CachedInfo().Config.Subjects; len(subj) != 1 || subj[0] != subject {
			return fmt.Errorf("bus: stream %s already exists for subjects %v, not %s: choose another prefix", cfg.Name, subj, subject)
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("bus: look up stream %s: %w", cfg.Name, err)
	}
	if _, err := b.js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("bus: create or update stream %s: %w", cfg.Name, err)
	}
	return nil
}

// Close stops subscriptions and workers, drains the connection and shuts
// down the embedded server, if any. It is safe to call more than once.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.done = true
		b.mu.Unlock()
		b.cancel()
		b.wg.Wait() // handlers get a cancelled ctx; wait so their acks go out before the drain

		if b.nc != nil {
			if err := b.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				b.closeErr = fmt.Errorf("bus: drain: %w", err)
				b.nc.Close()
			}
			<-b.closed // Drain is asynchronous; bounded by the drain timeout
		}
		if b.ns != nil {
			b.ns.Shutdown()
			b.ns.WaitForShutdown() // releases the store so DataDir can be reopened
		}
	})
	return b.closeErr
}

// track registers a background goroutine; it fails once Close has begun.
func (b *Bus) track() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return errors.New("bus: closed")
	}
	b.wg.Add(1)
	return nil
}

// Conn returns the underlying NATS connection.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// JetStream returns the JetStream API on the connection.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Embedded reports whether the bus runs its own in-process NATS server.
func (b *Bus) Embedded() bool { return b.ns != nil }

// Subject returns prefix + "." + parts joined with ".".
func (b *Bus) Subject(parts ...string) string {
	if len(parts) == 0 {
		return b.cfg.Prefix
	}
	return b.cfg.Prefix + "." + strings.Join(parts, ".")
}

// StreamName returns the name of the events stream.
func (b *Bus) StreamName() string { return b.stream }

// redactURLs hides credentials (user:password or token) in a comma
// separated list of URLs.
func redactURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if !strings.Contains(p, "://") {
			p = "nats://" + p // nats.go accepts bare host:port too
		}
		if u, err := url.Parse(p); err == nil {
			if u.User != nil {
				u.User = url.User("redacted") // a bare user name may be a token
			}
			parts[i] = u.String()
		} else {
			parts[i] = "<invalid url>"
		}
	}
	return strings.Join(parts, ",")
}

// serverLog routes the embedded server's log to slog. Notices (banner,
// config) are debug level: the embedded server is an implementation detail.
type serverLog struct{ l *slog.Logger }

func (s serverLog) Noticef(f string, v ...any) { s.l.Debug(fmt.Sprintf(f, v...)) }
func (s serverLog) Warnf(f string, v ...any)   { s.l.Warn(fmt.Sprintf(f, v...)) }
func (s serverLog) Fatalf(f string, v ...any)  { s.l.Error(fmt.Sprintf(f, v...)) }
func (s serverLog) Errorf(f string, v ...any)  { s.l.Error(fmt.Sprintf(f, v...)) }
func (s serverLog) Debugf(string, ...any)      {}
func (s serverLog) Tracef(string, ...any)      {}
