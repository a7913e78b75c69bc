package platform

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/cluster"
	"github.com/steward-iot/steward/internal/commands"
	"github.com/steward-iot/steward/internal/httpapi"
	"github.com/steward-iot/steward/internal/telemetry"
	"github.com/steward-iot/steward/internal/twin"
)

// connectivityParts are the device messaging pieces: the MQTT broker and
// the twin, command and telemetry services behind it.
type connectivityParts struct {
	Twin      *twin.Service
	Commands  *commands.Service
	Telemetry *telemetry.Service
	Ingester  *telemetry.Ingester
	// streamSink, with an external bus, carries the broker's telemetry
	// through the bus's telemetry stream; every node's share of it is
	// written through Ingester (stopIngest stops taking it).
	streamSink *telemetry.StreamSink
	stopIngest func()
	// Broker is the MQTT broker; nil when no MQTT listener is configured.
	Broker *broker.Broker
	// BrokerConfig, when set before Start, adjusts the broker's settings
	// (tests and benchmarks: buffer sizes, limits).
	BrokerConfig func(*broker.Config)
	// CommandSweep is how often expired and timed-out commands are
	// finished (default 1s).
	CommandSweep time.Duration

	connCancel context.CancelFunc
	connWG     sync.WaitGroup
	// router finds a device's connection on any node and carries
	// device-bound events to the node holding it.
	router    *cluster.Router
	stopRoute func()
}

// openConnectivity builds the services (the API needs them).
func (s *Server) openConnectivity() {
	s.Twin = twin.New(s.Store)
	s.Commands = commands.New(s.Store, s.Log.With("component", "commands"))
	s.Telemetry = telemetry.NewService(s.Store, s.Log.With("component", "telemetry"), s.Config.Telemetry.Retention)
	s.Ingester = telemetry.NewIngester(s.Store, s.Log.With("component", "ingest"), telemetry.IngestOptions{})
	// A single node with the embedded bus writes directly: there is no
	// work to share, and the stream would add a write per message.
	if !s.Bus.Embedded() {
		s.streamSink = telemetry.NewStreamSink(s.Bus, s.Log.With("component", "ingest"))
	}
}

// telemetryMetrics exports the ingestion counters: what this node
// committed, gave up, and (external bus) handed to the telemetry stream.
func (s *Server) telemetryMetrics(reg prometheus.Registerer) {
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	in := s.Ingester
	reg.MustRegister(
		counter("steward_telemetry_points_written_total", "Telemetry points this node committed to the store.", &in.Points),
		counter("steward_telemetry_batches_total", "Transactions of telemetry points this node committed.", &in.Batches),
		counter("steward_telemetry_points_dropped_total", "Telemetry points given up after failed writes.", &in.Dropped))
	if ss := s.streamSink; ss != nil {
		reg.MustRegister(
			counter("steward_telemetry_stream_published_total", "Telemetry messages the bus's telemetry stream stored for this node's devices.", &ss.Published),
			counter("steward_telemetry_stream_failed_total", "Telemetry messages that could not be put on the telemetry stream.", &ss.Failed))
	}
}

// telemetrySink is where the broker puts telemetry.
func (s *Server) telemetrySink() telemetry.Sink {
	if s.streamSink != nil {
		return s.streamSink
	}
	return s.Ingester
}

// connectivityDeps is what the API gets.
func (s *Server) connectivityDeps() httpapi.Connectivity {
	return httpapi.Connectivity{Twin: s.Twin, Commands: s.Commands, Telemetry: s.Telemetry,
		Connection: func(tenantID, deviceID string) broker.Connection {
			if r := s.router; r != nil {
				return r.Connection(tenantID, deviceID)
			}
			if b := s.Broker; b != nil {
				return b.Connection(tenantID, deviceID)
			}
			return broker.Connection{}
		}}
}

// startConnectivity starts the telemetry writer, the command sweeper, the
// retention pruner and the broker.
func (s *Server) startConnectivity(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	s.connCancel = cancel
	s.connWG.Add(3)
	go func() { defer s.connWG.Done(); s.Ingester.Run(ctx) }()
	go func() { defer s.connWG.Done(); s.Commands.RunSweeper(ctx, s.CommandSweep) }()
	go func() { defer s.connWG.Done(); s.Telemetry.RunPruner(ctx, s.Config.Telemetry.PruneEvery) }()
	if s.streamSink != nil {
		// Every node takes a share of the stream, with or without MQTT
		// listeners of its own.
		s.connWG.Add(1)
		go func() { defer s.connWG.Done(); s.streamSink.Run(ctx) }()
		stop, err := telemetry.Consume(ctx, s.Bus, s.Ingester, s.Log.With("component", "ingest"))
		if err != nil {
			return fmt.Errorf("consuming telemetry: %w", err)
		}
		s.stopIngest = stop
	}

	m := s.Config.MQTT
	cfg := broker.Config{Listen: m.Listen, TokenListen: m.TokenListen, WSListen: m.WSListen, PlainListen: m.PlainListen,
		AppListen:  m.AppListen,
		MaxPayload: m.MaxPayload, RateLimit: m.RateLimit, RateBurst: m.RateBurst, ByteRate: m.ByteRate, ByteBurst: m.ByteBurst,
		MaxSessionExpiry: m.MaxSessionExpiry, ParkAfter: m.IdleAfter}
	if s.BrokerConfig != nil {
		s.BrokerConfig(&cfg)
	}
	if cfg.Listen == "" && cfg.TokenListen == "" && cfg.WSListen == "" && cfg.PlainListen == "" && cfg.AppListen == "" {
		return nil
	}
	if cfg.TLS == nil && (cfg.Listen != "" || cfg.TokenListen != "" || cfg.WSListen != "" || cfg.AppListen != "") {
		hosts := s.Config.ESTHosts()
		for _, a := range []string{cfg.Listen, cfg.TokenListen, cfg.WSListen, cfg.AppListen} {
			if h, _, err := net.SplitHostPort(a); err == nil && net.ParseIP(h) != nil && !net.ParseIP(h).IsUnspecified() {
				hosts = append(hosts, h)
			}
		}
		cert, err := s.Identity.CA().ServerCertificate(hosts)
		if err != nil {
			return fmt.Errorf("mqtt: server certificate: %w", err)
		}
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	deps := broker.Deps{Auth: s.Authenticator, Store: s.Store, Bus: s.Bus, Twin: s.Twin,
		Commands: s.Commands, Ingester: s.telemetrySink(), Log: s.Log, Metrics: s.API.Metrics, OnConnectionEvent: s.ConnWatch.Observe,
		Neighbours: s.Discovery,
		OTA:        s.OTA}
	s.brokerDetection(&deps)
	router, err := cluster.NewRouter(s.Bus, func() cluster.Local {
		if b := s.Broker; b != nil {
			return b
		}
		return nil
	}, s.Log)
	if err != nil {
		return err
	}
	deps.OnPresence = router.Presence
	b, err := broker.New(cfg, deps)
	if err != nil {
		router.Close()
		return err
	}
	if err := b.Start(ctx); err != nil {
		router.Close()
		return fmt.Errorf("%w (is another server running? change mqtt.listen, or set it to off)", err)
	}
	s.Authenticator.OnCutOff(b.CutOff)
	s.Broker = b
	s.router = router
	// Device-bound events go to the node holding the device, whichever
	// node made the change; the durables are shared, so each event is
	// routed once by one of the nodes.
	stop, err := s.Bus.ConsumeEventTypes(ctx, "device-route", broker.DeviceEvents, router.Route)
	if err != nil {
		return fmt.Errorf("routing device events: %w", err)
	}
	s.stopRoute = stop
	return nil
}

// MQTTAddr is the address of an MQTT listener (broker.ListenerCert …), "".
func (s *Server) MQTTAddr(listener string) string {
	if s.Broker == nil {
		return ""
	}
	if a := s.Broker.Addr(listener); a != nil {
		return hostPortForClients(a.String())
	}
	return ""
}

// stopConnectivity stops taking telemetry from the stream (what this node
// holds is committed and acked, the rest goes to other nodes), closes the
// broker (clients get DISCONNECT), then lets the telemetry writer commit
// what is queued and the stream sink hear the stream's last answers.
func (s *Server) stopConnectivity(ctx context.Context) error {
	var err error
	if s.stopRoute != nil {
		s.stopRoute()
	}
	if s.stopIngest != nil {
		s.stopIngest()
	}
	if s.Broker != nil {
		err = s.Broker.Close(ctx)
	}
	if s.router != nil {
		s.router.Close()
	}
	if s.connCancel != nil {
		s.connCancel()
		s.connWG.Wait()
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
