package agent

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/autopaho/queue/memory"
	"github.com/eclipse/paho.golang/paho"

	"github.com/steward-iot/steward/internal/ota/tufmeta"
)

// Config is what `steward agent` is started with.
type Config struct {
	// Server is the enrollment listener's base URL (https://host:port):
	// EST, and the device routes for updates.
	Server string
	// MQTT is the broker's certificate listener, host:port.
	MQTT string
	// CAFile is the platform CA (PEM); empty: kept in the state folder, or
	// fetched on first run and checked against CAFingerprint.
	CAFile, CAFingerprint string
	// StateDir keeps the identity (0600), the CA, the trusted update
	// metadata and, by default, the slots.
	StateDir string
	Enroll   Enrollment
	// Installer puts images on the device (a DirInstaller or a
	// ScriptInstaller).
	Installer Installer
	// HardwareID is matched against the images' hardware; empty: the one
	// the platform names for the device.
	HardwareID string
	// HealthCmd runs (sh -c) after an update's restart; a non-zero exit
	// rolls the update back. STEWARD_NEW_VERSION holds the new version.
	HealthCmd     string
	HealthTimeout time.Duration
	// CommandHook runs commands the agent does not know itself.
	CommandHook       string
	TelemetryInterval time.Duration
	// SecurityInterval is how often the agent reports what it listens on,
	// talks to and runs (security/metrics) and the neighbours it sees
	// (security/neighbours); 0 = never. ProcRoot is where it reads them
	// ("/proc").
	SecurityInterval time.Duration
	ProcRoot         string
	// Poll is how often the agent asks for an assignment it may have missed.
	Poll         time.Duration
	AgentVersion string
	Log          *slog.Logger
	// Out receives what a person at the console must see (the CA
	// fingerprint on first use).
	Out io.Writer
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// ErrWiped is what Run returns after the wipe command erased the device's
// identity and state.
var ErrWiped = errors.New("the device was wiped: its identity and state are erased")

// ErrRebooting is what Run returns when a reboot (command or update)
// really restarts the device.
var ErrRebooting = errors.New("the device is rebooting")

// Agent is the device-side runtime: one per device.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	roots   *x509.CertPool
	id      *Identity
	devID   string
	updater *Updater
	started time.Time
	queue   *memory.Queue

	mu       sync.Mutex
	cm       *autopaho.ConnectionManager
	interval time.Duration
	answered map[string]json.RawMessage // command ID → result sent (repeats are answered again, not run again)
	lastRep  *Report
	// stopDownload cancels the update being downloaded (a withdrawn
	// assignment); nil once installing started.
	stopDownload     func()
	downloadArtifact string

	updates   chan trigger
	reconnect chan struct{}
	intervalC chan time.Duration
	stop      chan error
}

type trigger struct {
	reason string
	hint   *Assignment
}

// Assignment is the hint the platform sends on d/{id}/ota/assignment; the
// signed metadata is the authority.
type Assignment struct {
	ArtifactID      string `json:"artifact_id"`
	Version         string `json:"version,omitempty"`
	CampaignID      string `json:"campaign_id,omitempty"`
	DirectorVersion int64  `json:"director_version,omitempty"`
	Cancelled       bool   `json:"cancelled,omitempty"`
}

func (c *Config) defaults() {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ProcRoot == "" {
		c.ProcRoot = "/proc"
	}
	if c.TelemetryInterval <= 0 {
		c.TelemetryInterval = time.Minute
	}
	if c.Poll <= 0 {
		c.Poll = time.Hour
	}
	if c.HealthTimeout <= 0 {
		c.HealthTimeout = time.Minute
	}
}

// New prepares the agent: trusts the platform CA and enrolls when the
// state folder has no identity yet. Nothing connects until Run.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	cfg.defaults()
	if cfg.StateDir == "" {
		return nil, errors.New("--state-dir is required: the folder where the agent keeps its key, certificate and update state")
	}
	if cfg.Server == "" {
		return nil, errors.New("--server is required: the platform's enrollment address, e.g. https://steward.example:8443")
	}
	if cfg.MQTT == "" {
		return nil, errors.New("--mqtt is required: the platform's MQTT address, host:port (e.g. steward.example:8883)")
	}
	if cfg.Installer == nil {
		return nil, errors.New("no installer: pass --slots-dir or --install-script")
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the state folder: %w", err)
	}
	roots, fp, err := LoadCA(ctx, cfg.StateDir, cfg.Server, cfg.CAFile, cfg.CAFingerprint)
	if err != nil {
		return nil, err
	}
	switch {
	case fp != "" && cfg.CAFingerprint != "":
		cfg.Log.Info("platform CA fetched; it matches --ca-fingerprint", "sha256", fp)
	case fp != "":
		cfg.Log.Warn("trusting the platform CA on first use; compare its fingerprint with the one the server prints", "sha256", fp)
		fmt.Fprintf(cfg.Out, "Platform CA fetched from %s, SHA-256 fingerprint %s\n(pin it with --ca-fingerprint, or pass --ca FILE)\n", cfg.Server, fp)
	}
	idFile := filepath.Join(cfg.StateDir, IdentityFile)
	if st, err := os.Stat(idFile); err == nil && st.Mode().Perm()&0o077 != 0 {
		cfg.Log.Warn("the key file was open to other users; restricting it to mode 0600", "file", idFile, "mode", st.Mode().Perm().String())
		if err := os.Chmod(idFile, 0o600); err != nil {
			return nil, fmt.Errorf("restricting %s to mode 0600: %w", idFile, err)
		}
	}
	id, err := LoadIdentity(cfg.StateDir)
	if errors.Is(err, os.ErrNotExist) {
		if id, err = Enroll(ctx, cfg.Server, roots, cfg.StateDir, cfg.Enroll); err != nil {
			return nil, err
		}
		cfg.Log.Info("enrolled", "device", id.DeviceID(), "certificate_expires", id.Certificate().NotAfter.UTC())
	} else if err != nil {
		return nil, err
	} else if cfg.Enroll.methods() > 0 {
		cfg.Log.Info("already enrolled; the enrollment credential is not used", "device", id.DeviceID())
	}
	a := &Agent{cfg: cfg, log: cfg.Log.With("device", id.DeviceID()), roots: roots, id: id, devID: id.DeviceID(),
		started: cfg.Now(), queue: memory.New(), interval: cfg.TelemetryInterval, answered: map[string]json.RawMessage{},
		updates: make(chan trigger, 1), reconnect: make(chan struct{}, 1), intervalC: make(chan time.Duration, 1), stop: make(chan error, 1)}
	a.updater = &Updater{Device: tufmeta.Device{ID: a.devID}, StateDir: filepath.Join(cfg.StateDir, "update"),
		Source: NewDeviceSource(cfg.Server, id.HTTPClient(roots, 0)), Install: cfg.Installer, Health: a.health,
		Report: a.publishReport, Retries: 5, Now: cfg.Now}
	return a, nil
}

// DeviceID is the device's platform ID.
func (a *Agent) DeviceID() string { return a.devID }

// Identity is the device's key and certificate.
func (a *Agent) Identity() *Identity { return a.id }

func (a *Agent) topic(s string) string { return "d/" + a.devID + "/" + s }

// Run connects and serves until ctx ends (nil), the device is wiped
// (ErrWiped) or really reboots (ErrRebooting).
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := a.renewIfDue(ctx); err != nil {
		a.log.Error("certificate renewal failed; retrying later", "err", err)
	}
	// The first session exists before anything reports: messages wait in
	// the queue until it is up.
	cm, err := a.connect(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(4)
	go func() { defer wg.Done(); a.runMQTT(ctx, cm) }()
	go func() { defer wg.Done(); a.runUpdates(ctx) }()
	go func() { defer wg.Done(); a.runTelemetry(ctx) }()
	if a.cfg.SecurityInterval > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); a.runSecurityReports(ctx) }()
	}
	go func() { defer wg.Done(); a.runRenewal(ctx) }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-a.stop:
		return err
	}
}

func (a *Agent) halt(err error) {
	select {
	case a.stop <- err:
	default:
	}
}

// ---- MQTT ----

// connect starts a session to the broker (autopaho connects, and
// reconnects, in the background).
func (a *Agent) connect(ctx context.Context) (*autopaho.ConnectionManager, error) {
	host, _, err := net.SplitHostPort(a.cfg.MQTT)
	if err != nil {
		return nil, fmt.Errorf("--mqtt %q: want host:port: %w", a.cfg.MQTT, err)
	}
	u := &url.URL{Scheme: "mqtts", Host: a.cfg.MQTT}
	cfg := autopaho.ClientConfig{ServerUrls: []*url.URL{u}, TlsCfg: a.id.TLSConfig(a.roots, host), KeepAlive: 30,
		CleanStartOnInitialConnection: true, ConnectTimeout: 20 * time.Second, Queue: a.queue,
		ReconnectBackoff: autopaho.NewExponentialBackoff(500*time.Millisecond, 30*time.Second, time.Second, 2),
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			a.log.Info("connected", "broker", a.cfg.MQTT)
			// The session may come up before NewConnection has returned
			// below: publishing (the twin report first) goes through a.cm.
			a.mu.Lock()
			a.cm = cm
			a.mu.Unlock()
			go a.onConnected(ctx, cm)
		},
		OnConnectError: func(err error) { a.log.Warn("MQTT connection failed; retrying", "broker", a.cfg.MQTT, "err", err) },
		ClientConfig: paho.ClientConfig{ClientID: a.devID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
				a.dispatch(ctx, p.Packet.Topic, p.Packet.Payload)
				return true, nil
			}},
			OnClientError:      func(err error) { a.log.Warn("MQTT client error", "err", err) },
			OnServerDisconnect: func(d *paho.Disconnect) { a.log.Warn("disconnected by the broker", "reason_code", d.ReasonCode) },
		}}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("MQTT: %w", err)
	}
	if testHookConnecting != nil {
		testHookConnecting()
	}
	a.mu.Lock()
	a.cm = cm
	a.mu.Unlock()
	return cm, nil
}

// testHookConnecting, when set by a test, runs between starting a session
// and recording it: the time a loaded machine may take there.
var testHookConnecting func()

// runMQTT replaces the session after each renewal (so that the new
// certificate is presented) or simulated reboot, until ctx ends.
func (a *Agent) runMQTT(ctx context.Context, cm *autopaho.ConnectionManager) {
	for {
		select {
		case <-ctx.Done():
		case <-a.reconnect:
			a.log.Info("starting a new MQTT session")
		}
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cm.Disconnect(dctx)
		cancel()
		<-cm.Done()
		if ctx.Err() != nil {
			return
		}
		next, err := a.connect(ctx)
		if err != nil {
			a.halt(err)
			return
		}
		cm = next
	}
}

var subscriptions = []string{"twin/desired", "twin/delta", "commands/+", "errors", "ota/#"}

func (a *Agent) onConnected(ctx context.Context, cm *autopaho.ConnectionManager) {
	var subs []paho.SubscribeOptions
	for _, s := range subscriptions {
		subs = append(subs, paho.SubscribeOptions{Topic: a.topic(s), QoS: 1})
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: subs}); err != nil {
		a.log.Warn("subscribing failed", "err", err)
	}
	a.reportTwin(ctx)
}

// publish sends at QoS 1 through the queue (kept while disconnected).
func (a *Agent) publish(ctx context.Context, topic string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		a.log.Error("encoding a message", "topic", topic, "err", err)
		return
	}
	a.mu.Lock()
	cm := a.cm
	a.mu.Unlock()
	if cm == nil {
		return
	}
	if err := cm.PublishViaQueue(ctx, &autopaho.QueuePublish{Publish: &paho.Publish{QoS: 1, Topic: topic, Payload: b}}); err != nil {
		a.log.Warn("publishing failed", "topic", topic, "err", err)
	}
}

// publishNow sends at QoS 1 and waits for the broker's acknowledgement.
func (a *Agent) publishNow(ctx context.Context, topic string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	a.mu.Lock()
	cm := a.cm
	a.mu.Unlock()
	if cm == nil {
		return errors.New("not connected")
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := cm.AwaitConnection(pctx); err != nil {
		return err
	}
	_, err = cm.Publish(pctx, &paho.Publish{QoS: 1, Topic: topic, Payload: b})
	return err
}

func (a *Agent) dispatch(ctx context.Context, topic string, payload []byte) {
	rest, ok := strings.CutPrefix(topic, "d/"+a.devID+"/")
	if !ok {
		return
	}
	switch {
	case rest == "twin/desired" || rest == "twin/delta":
		a.onDesired(ctx, payload)
	case strings.HasPrefix(rest, "commands/") && strings.Count(rest, "/") == 1:
		go a.onCommand(ctx, strings.TrimPrefix(rest, "commands/"), payload)
	case rest == "errors":
		a.log.Warn("the platform refused a message", "report", string(truncate(payload, 512)))
	case rest == "ota/assignment":
		a.onAssignment(payload)
	}
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// ---- twin ----

// MinTelemetryInterval and MaxTelemetryInterval bound telemetry_interval.
const (
	MinTelemetryInterval = time.Second
	MaxTelemetryInterval = 24 * time.Hour
)

func (a *Agent) onDesired(ctx context.Context, payload []byte) {
	var doc struct {
		State map[string]json.RawMessage `json:"state"`
	}
	if err := json.Unmarshal(payload, &doc); err != nil {
		a.log.Warn("unreadable twin document", "err", err)
		return
	}
	raw, ok := doc.State["telemetry_interval"]
	if !ok {
		return
	}
	var secs float64
	if err := json.Unmarshal(raw, &secs); err != nil || secs < MinTelemetryInterval.Seconds() || secs > MaxTelemetryInterval.Seconds() {
		a.log.Warn("desired telemetry_interval ignored: want seconds between 1 and 86400", "value", string(raw))
		return
	}
	d := time.Duration(secs * float64(time.Second))
	a.mu.Lock()
	changed := d != a.interval
	a.interval = d
	a.mu.Unlock()
	if changed {
		a.log.Info("telemetry interval changed", "interval", d)
		select {
		case a.intervalC <- d:
		default:
		}
		a.reportTwin(ctx)
	}
}

// Reported is the twin's reported document as the agent sends it.
type Reported struct {
	Agent             map[string]string `json:"agent"`
	Firmware          map[string]string `json:"firmware"`
	UptimeSeconds     int64             `json:"uptime_s"`
	TelemetryInterval float64           `json:"telemetry_interval"`
	Update            *Report           `json:"update,omitempty"`
}

func (a *Agent) reported() Reported {
	fw := map[string]string{}
	if v, err := a.cfg.Installer.Current(); err == nil {
		fw["version"] = v
	}
	if d, ok := a.cfg.Installer.(*DirInstaller); ok {
		if slot, _, _, err := d.State(); err == nil {
			fw["slot"] = slot
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return Reported{Agent: map[string]string{"version": a.cfg.AgentVersion}, Firmware: fw,
		UptimeSeconds: int64(a.cfg.Now().Sub(a.started).Seconds()), TelemetryInterval: a.interval.Seconds(), Update: a.lastRep}
}

func (a *Agent) reportTwin(ctx context.Context) {
	a.publish(ctx, a.topic("twin/reported"), a.reported())
}

// uptime is the time since the agent (or the simulated device) started.
func (a *Agent) uptime() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg.Now().Sub(a.started)
}

// ---- telemetry ----

func (a *Agent) runTelemetry(ctx context.Context) {
	a.mu.Lock()
	every := a.interval
	a.mu.Unlock()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-a.intervalC:
			t.Reset(d)
		case <-t.C:
			a.mu.Lock()
			cm := a.cm
			a.mu.Unlock()
			if cm == nil {
				continue
			}
			b, _ := json.Marshal(Telemetry(a.uptime()))
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if _, err := cm.Publish(pctx, &paho.Publish{QoS: 0, Topic: a.topic("telemetry"), Payload: b}); err != nil {
				a.log.Debug("telemetry not sent", "err", err)
			}
			cancel()
		}
	}
}

// runSecurityReports sends the security engine's reports: the first soon
// after start (the device's baseline), then every SecurityInterval.
func (a *Agent) runSecurityReports(ctx context.Context) {
	t := time.NewTimer(min(5*time.Second, a.cfg.SecurityInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if m := SecurityMetrics(a.cfg.ProcRoot); m != nil {
			m["ts"] = a.cfg.Now().UTC().Format(time.RFC3339)
			a.publish(ctx, a.topic("security/metrics"), m)
			a.log.Debug("security report sent", "listening_ports", m["listening_ports"], "process_count", m["process_count"])
		}
		if n := Neighbours(a.cfg.ProcRoot); len(n) > 0 {
			a.publish(ctx, a.topic("security/neighbours"), map[string]any{"neighbours": n})
			a.log.Debug("neighbour report sent", "neighbours", len(n))
		}
		t.Reset(a.cfg.SecurityInterval)
	}
}

// ---- certificate renewal ----

func (a *Agent) renewIfDue(ctx context.Context) error {
	if a.cfg.Now().Before(RenewAt(a.id.Certificate())) {
		return nil
	}
	return a.renew(ctx)
}

func (a *Agent) renew(ctx context.Context) error {
	old := a.id.Certificate()
	if a.cfg.Now().After(old.NotAfter) {
		return fmt.Errorf("the certificate expired at %s and cannot be renewed: remove %s and enroll again with a new credential",
			old.NotAfter.UTC().Format(time.RFC3339), filepath.Join(a.cfg.StateDir, IdentityFile))
	}
	if err := a.id.Renew(ctx, a.cfg.Server, a.roots); err != nil {
		return err
	}
	a.log.Info("certificate renewed", "expires", a.id.Certificate().NotAfter.UTC())
	// Fresh connections present the new certificate.
	if t, ok := a.updater.Source.(*HTTPSource); ok {
		if tr, ok := t.Client.Transport.(*http.Transport); ok {
			tr.CloseIdleConnections()
		}
	}
	select {
	case a.reconnect <- struct{}{}:
	default:
	}
	return nil
}

func (a *Agent) runRenewal(ctx context.Context) {
	retry := time.Minute
	for {
		wait := RenewAt(a.id.Certificate()).Sub(a.cfg.Now())
		if wait < 0 {
			wait = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if err := a.renew(ctx); err != nil {
			a.log.Error("certificate renewal failed; retrying", "err", err, "in", retry)
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
			retry = min(retry*2, time.Hour)
			continue
		}
		retry = time.Minute
	}
}
