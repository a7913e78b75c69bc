// Package broker is the embedded MQTT broker (mochi-mqtt, MQTT 3.1.1 and
// 5) that devices connect to: certificate or token authentication through
// the identity package, a per-device ACL (a device lives under
// d/{deviceID}/, a quarantined one only under its ota/ subset), per-device
// rate and size limits, connection tracking with events on the bus, and
// the device side of telemetry, twins and commands. docs/protocol.md is
// the contract it implements.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/steward-iot/steward/internal/bus"
	"github.com/steward-iot/steward/internal/commands"
	"github.com/steward-iot/steward/internal/detect"
	"github.com/steward-iot/steward/internal/discovery"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/ota"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/telemetry"
	"github.com/steward-iot/steward/internal/twin"
)

// Listener IDs (also the "listener" of events and logs).
const (
	ListenerCert  = "mqtts"
	ListenerToken = "mqtts-token"
	ListenerWS    = "wss"
	ListenerPlain = "mqtt-plain"
	ListenerApp   = "mqtts-app"
)

// Config is the broker's part of the configuration.
type Config struct {
	// Listen is the TLS listener with client certificates ("" = off).
	Listen string
	// TokenListen is the TLS listener with device tokens ("" = off).
	TokenListen string
	// WSListen is WebSocket over TLS, path /mqtt ("" = off).
	WSListen string
	// PlainListen is plain TCP with tokens; only when set ("" = off).
	PlainListen string
	// AppListen is TLS for applications reading device traffic with an API
	// key ("" = off). Applications get a broker of their own, tuned for
	// few, busy subscribers (deep outbound queues), beside the one tuned
	// for many, mostly idle devices.
	AppListen string
	// TLS holds the server certificate; client authentication settings are
	// made per listener. Required unless only PlainListen is set.
	TLS *tls.Config

	// MaxPayload is the largest accepted payload (default 64 KiB); the
	// whole packet may be 4 KiB larger.
	MaxPayload int
	// Per-device limits: messages per second with bursts, bytes per second
	// with bursts (defaults 50/s, 200; 256 KiB/s, 1 MiB). Negative = off.
	RateLimit float64
	RateBurst int
	ByteRate  float64
	ByteBurst int
	// MaxSessionExpiry caps how long a persistent session is kept (1 h).
	MaxSessionExpiry time.Duration

	// Tuning of the per-connection footprint (see bench/broker).
	// WritesPending is the outbound queue of one client (default 256): a
	// subscriber that falls further behind loses QoS 0 messages (and QoS 1
	// ones beyond its receive maximum wait in its inflight store).
	WritesPending int
	// ReadBuffer and WriteBuffer are the per-client buffer sizes (1 KiB).
	ReadBuffer, WriteBuffer int
	// AppWritesPending is an application's outbound queue (default 65536).
	AppWritesPending int
	// ReceiveMaximum is how many QoS 1 messages a client may have
	// unacknowledged towards the broker (default 32).
	ReceiveMaximum uint16
	// ParkAfter is how long a TLS connection waits for data with a
	// goroutine of its own before it waits without one (default 2 s;
	// negative: never). See idleconn.go.
	ParkAfter time.Duration

	// TouchEvery throttles last-seen updates per device (default 1 min).
	TouchEvery time.Duration
	// Node names this broker in events ("" = host name).
	Node string
}

func (c *Config) defaults() {
	if c.ParkAfter == 0 {
		c.ParkAfter = 2 * time.Second
	}
	if c.MaxPayload <= 0 {
		c.MaxPayload = 64 << 10
	}
	if c.RateLimit == 0 {
		c.RateLimit, c.RateBurst = 50, 200
	}
	if c.ByteRate == 0 {
		c.ByteRate, c.ByteBurst = 256<<10, 1<<20
	}
	if c.MaxSessionExpiry <= 0 {
		c.MaxSessionExpiry = time.Hour
	}
	if c.WritesPending <= 0 {
		c.WritesPending = 256
	}
	if c.AppWritesPending <= 0 {
		c.AppWritesPending = 1 << 16
	}
	if c.ReadBuffer <= 0 {
		c.ReadBuffer = 1024
	}
	if c.WriteBuffer <= 0 {
		c.WriteBuffer = 1024
	}
	if c.ReceiveMaximum == 0 {
		c.ReceiveMaximum = 32
	}
	if c.TouchEvery <= 0 {
		c.TouchEvery = time.Minute
	}
}

// Deps are the services the broker works with.
type Deps struct {
	Auth      identity.Authenticator
	Store     store.Store
	Bus       *bus.Bus
	Twin      *twin.Service
	Commands  *commands.Service
	Ingester  telemetry.Sink // the group-commit writer, or the telemetry stream when scaled out
	Log       *slog.Logger
	Metrics   prometheus.Registerer // optional
	Clock     func() time.Time      // optional (tests)
	AuthCheck time.Duration         // timeout of one credential check (5 s)
	// OnPresence, when set, learns that a device came online on this node
	// or left it (internal/cluster routes device-bound events by device
	// subject with it; see HandleDeviceEvent). It runs on the connection's
	// goroutine; when it returns for a device coming online, events routed
	// to the device from then on reach this node: the broker then reads
	// the device's state again, so a change routed just before is not lost.
	OnPresence func(tenantID, deviceID string, online bool)
	// OnConnectionEvent, when set, sees each connection event this node
	// raises (device.connected, device.disconnected, device.auth_failed;
	// the security engine counts revoked certificates, foreign client IDs,
	// takeovers and token logins). It runs on the event goroutine and must
	// not block.
	OnConnectionEvent func(model.Event)
	// Neighbours stores what d/{id}/security/neighbours reports (optional:
	// without it such reports are refused).
	Neighbours *discovery.Service
	// Detect, when set, sees every device's traffic (behaviour detection).
	Detect *detect.Detector
	// OnSecurityMetrics, when set, takes each checked security metrics
	// report that names outbound destinations (observed flows).
	OnSecurityMetrics SecurityMetricsHandler
	// OTA records update reports from d/{id}/ota/status (optional: without
	// it any JSON object is accepted there).
	OTA *ota.Service
}

// Broker is the running MQTT broker.
type Broker struct {
	cfg   Config
	d     Deps
	log   *slog.Logger
	srv   *mqtt.Server // devices
	app   *mqtt.Server // applications (nil without AppListen)
	reg   *registry
	now   func() time.Time
	addr  map[string]net.Addr
	modes map[string]authMode

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	jobs   chan job
	notes  chan note
	closed atomic.Bool
	acker  *acker
	shards atomic.Uint32

	m *metrics
}

// New builds a broker; Start opens its listeners.
// writeTimeout bounds each write to a client: one that stops reading is
// dropped after it, rather than holding the writer (for QoS 1 telemetry, a
// PUBACK shard that other devices share) for as long as it keeps sending.
const writeTimeout = 10 * time.Second

func New(cfg Config, d Deps) (*Broker, error) {
	cfg.defaults()
	if d.Auth == nil || d.Store == nil || d.Bus == nil || d.Twin == nil || d.Commands == nil || d.Ingester == nil {
		return nil, errors.New("broker: Auth, Store, Bus, Twin, Commands and Ingester are required")
	}
	if cfg.Listen == "" && cfg.TokenListen == "" && cfg.WSListen == "" && cfg.PlainListen == "" && cfg.AppListen == "" {
		return nil, errors.New("broker: no listener configured")
	}
	if cfg.TLS == nil && (cfg.Listen != "" || cfg.TokenListen != "" || cfg.WSListen != "" || cfg.AppListen != "") {
		return nil, errors.New("broker: the TLS listeners need a server certificate (Config.TLS)")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Clock == nil {
		d.Clock = func() time.Time { return time.Now().UTC() }
	}
	if d.AuthCheck <= 0 {
		d.AuthCheck = 5 * time.Second
	}
	b := &Broker{cfg: cfg, d: d, log: d.Log.With("component", "mqtt"), reg: newRegistry(), now: d.Clock,
		addr: map[string]net.Addr{}, modes: map[string]authMode{}, jobs: make(chan job, 4096), notes: make(chan note, 16384), m: newMetrics(d.Metrics)}
	if _, err := tlsFields(); err != nil && cfg.ParkAfter > 0 {
		b.log.Warn("idle TLS connections keep crypto/tls's buffers and client certificates (about 10 KiB each)", "err", err)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = int32(cfg.WritesPending)
	caps.MaximumSessionExpiryInterval = uint32(cfg.MaxSessionExpiry.Seconds())
	caps.MaximumPacketSize = uint32(cfg.MaxPayload + 4096)
	caps.ReceiveMaximum = cfg.ReceiveMaximum
	caps.MaximumInflight = 1024
	caps.TopicAliasMaximum = 0
	caps.SharedSubAvailable = 0
	caps.MaximumMessageExpiryInterval = 24 * 60 * 60
	b.srv = mqtt.New(&mqtt.Options{
		Capabilities:             caps,
		ClientNetWriteBufferSize: cfg.WriteBuffer,
		ClientNetReadBufferSize:  cfg.ReadBuffer,
		ClientWriteTimeout:       writeTimeout,
		Logger:                   slog.New(levelFilter{b.log.Handler(), slog.LevelWarn}),
		SysTopicResendInterval:   3600,
		InlineClient:             true,
	})
	if err := b.srv.AddHook(&hook{b: b}, nil); err != nil {
		return nil, err
	}
	if cfg.AppListen != "" {
		appCaps := *caps
		appCaps.MaximumClientWritesPending = int32(cfg.AppWritesPending)
		appCaps.MaximumInflight = 65535
		b.app = mqtt.New(&mqtt.Options{
			Capabilities:             &appCaps,
			ClientNetWriteBufferSize: 32 << 10,
			ClientNetReadBufferSize:  4 << 10,
			ClientWriteTimeout:       writeTimeout,
			Logger:                   slog.New(levelFilter{b.log.Handler(), slog.LevelWarn}),
			SysTopicResendInterval:   3600,
			InlineClient:             true,
		})
		if err := b.app.AddHook(&hook{b: b}, nil); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Start binds the listeners (so a taken port fails here), subscribes to
// the platform events the broker enforces and starts serving.
func (b *Broker) Start(ctx context.Context) error {
	b.ctx, b.cancel = context.WithCancel(context.WithoutCancel(ctx))
	type spec struct {
		id, addr string
		mode     authMode
		ws       bool
	}
	specs := []spec{
		{ListenerCert, b.cfg.Listen, authCert, false},
		{ListenerToken, b.cfg.TokenListen, authToken, false},
		{ListenerWS, b.cfg.WSListen, authCertOrToken, true},
		{ListenerPlain, b.cfg.PlainListen, authToken, false},
		{ListenerApp, b.cfg.AppListen, authToken, false},
	}
	var opened []listeners.Listener
	fail := func(err error) error {
		for _, l := range opened {
			l.Close(func(string) {})
		}
		b.cancel()
		return err
	}
	for _, s := range specs {
		if s.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			return fail(fmt.Errorf("mqtt: listening on %s for %s: %w", s.addr, s.id, err))
		}
		var tc *tls.Config
		if s.id != ListenerPlain {
			tc = b.cfg.TLS.Clone()
			if tc.MinVersion < tls.VersionTLS12 {
				tc.MinVersion = tls.VersionTLS12
			}
			if s.mode != authToken {
				// The chain is checked by the Authenticator, after the
				// handshake, so that a refusal carries an MQTT reason code.
				// The handshake still proves the client holds the key.
				tc.ClientAuth = tls.RequestClientCert
			} else {
				tc.ClientAuth = tls.NoClientCert
			}
		}
		var l listeners.Listener
		if s.ws {
			l = newWSListener(s.id, ln, tc, b.log)
		} else {
			l = newTCPListener(s.id, ln, tc, b.log, b.cfg.ParkAfter)
		}
		b.addr[s.id] = ln.Addr()
		b.modes[s.id] = s.mode
		srv := b.srv
		if s.id == ListenerApp {
			srv = b.app
		}
		if err := srv.AddListener(l); err != nil {
			ln.Close()
			return fail(err)
		}
		opened = append(opened, l)
	}
	for range 4 {
		b.wg.Add(1)
		go b.worker()
	}
	b.acker = newAcker(b)
	for i := range ackShards {
		b.wg.Add(1)
		go b.acker.run(i)
	}
	b.wg.Add(1)
	go b.notifier()
	if err := b.srv.Serve(); err != nil {
		return fail(err)
	}
	if b.app != nil {
		if err := b.app.Serve(); err != nil {
			return fail(err)
		}
	}
	for id, a := range b.addr {
		b.log.Info("mqtt listening", "listener", id, "addr", a.String())
	}
	return nil
}

// Addr returns the bound address of a listener (ListenerCert …), or nil.
func (b *Broker) Addr(listener string) net.Addr { return b.addr[listener] }

// Close disconnects every client (v5: DISCONNECT 0x8B server shutting
// down), waits for their sessions to end and stops the workers.
func (b *Broker) Close(ctx context.Context) error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := b.srv.Close()
	if b.app != nil {
		err = errors.Join(err, b.app.Close())
	}
	done := make(chan struct{})
	go func() {
		b.srv.Listeners.ClientsWg.Wait()
		if b.app != nil {
			b.app.Listeners.ClientsWg.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("mqtt: clients still open at shutdown: %w", ctx.Err()))
	}
	if b.cancel != nil {
		b.cancel()
	}
	b.wg.Wait()
	return err
}

// Connection describes a device's live connection on this node.
type Connection struct {
	Connected  bool            `json:"connected"`
	Since      *time.Time      `json:"since,omitempty"`
	Method     identity.Method `json:"method,omitempty"`
	Listener   string          `json:"listener,omitempty"`
	Protocol   int             `json:"protocol_version,omitempty"`
	Remote     string          `json:"remote,omitempty"`
	CertSerial string          `json:"cert_serial,omitempty"`
}

// Connection reports whether a device is connected to this node.
func (b *Broker) Connection(tenantID, deviceID string) Connection {
	s := b.reg.device(deviceID)
	if s == nil || s.tenantID != tenantID {
		return Connection{}
	}
	at := s.connectedAt
	return Connection{Connected: true, Since: &at, Method: s.method, Listener: s.listener,
		Protocol: int(s.cl.Properties.ProtocolVersion), Remote: s.cl.Net.Remote, CertSerial: s.certSerial}
}

// Online counts the devices connected to this node.
func (b *Broker) Online() int {
	n, _ := b.reg.counts()
	return n
}

// levelFilter drops records below min (the library logs chatty info).
type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.Handler.Enabled(ctx, l)
}

func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{f.Handler.WithAttrs(a), f.min}
}

func (f levelFilter) WithGroup(n string) slog.Handler {
	return levelFilter{f.Handler.WithGroup(n), f.min}
}

type metrics struct {
	connects, authFailures, refused, messages *prometheus.CounterVec
	online                                    prometheus.Gauge
	telemetry                                 prometheus.Counter // messages of kind telemetry: looked up once, not per message
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "steward_mqtt_connects_total",
			Help: "Accepted MQTT connections by listener."}, []string{"listener"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "steward_mqtt_auth_failures_total",
			Help: "Refused MQTT connections by reason code."}, []string{"code"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "steward_mqtt_refused_total",
			Help: "Refused device messages by reason code."}, []string{"code"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "steward_mqtt_messages_total",
			Help: "Accepted device messages by kind."}, []string{"kind"}),
		online: prometheus.NewGauge(prometheus.GaugeOpts{Name: "steward_mqtt_devices_online",
			Help: "Devices connected to this node."}),
	}
	if r != nil {
		m.connects = register(r, m.connects)
		m.authFailures = register(r, m.authFailures)
		m.refused = register(r, m.refused)
		m.messages = register(r, m.messages)
		m.online = register(r, m.online)
	}
	m.telemetry = m.messages.WithLabelValues("telemetry")
	return m
}

// register registers c, or returns the collector of the same name that a
// broker before this one (in the same process and registry) registered:
// both then count into one metric instead of this one counting unseen.
func register[C prometheus.Collector](r prometheus.Registerer, c C) C {
	err := r.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(fmt.Sprintf("mqtt metrics: %v", err))
}

// server is the broker instance a client is connected to.
func (b *Broker) server(cl *mqtt.Client) *mqtt.Server {
	if b.app != nil && cl.Net.Listener == ListenerApp {
		return b.app
	}
	return b.srv
}

// toApps hands an accepted device message to the applications' broker
// (which delivers it to the subscribers of the device's tenant).
func (b *Broker) toApps(topic string, payload []byte, qos byte) {
	if b.app == nil || atomic.LoadInt64(&b.app.Info.Subscriptions) == 0 {
		return
	}
	if qos > 1 {
		qos = 1
	}
	if err := b.app.Publish(topic, payload, false, qos); err != nil {
		b.log.Debug("mqtt: handing a message to applications", "topic", topic, "err", err)
	}
}
