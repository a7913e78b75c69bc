// Package sim is the fleet simulator behind `steward sim`: N simulated
// devices that enroll over EST with a bootstrap token, connect over MQTT
// with their certificate, report their twin and telemetry at a rate,
// answer commands, and behave according to a mix (well-behaved, flaky
// network, outdated firmware, compromised). It is a client of the
// platform like any device, usable for demos, tests and benchmarks, and
// light on memory: one goroutine and a few KiB per device.
package sim

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/steward-iot/steward/internal/client"
	"github.com/steward-iot/steward/internal/est"
	"github.com/steward-iot/steward/internal/identity"
)

// Behaviour is how a simulated device acts.
type Behaviour string

const (
	// WellBehaved reports telemetry at the configured rate and answers
	// every command.
	WellBehaved Behaviour = "well"
	// Flaky loses its connection now and then and comes back.
	Flaky Behaviour = "flaky"
	// Outdated runs an old firmware version.
	Outdated Behaviour = "outdated"
	// Compromised sends bursts of traffic and reports unexpected open
	// ports and outbound flows, for the security engine to find.
	Compromised Behaviour = "compromised"
)

var behaviours = []Behaviour{WellBehaved, Flaky, Outdated, Compromised}

// Mix is the share of each behaviour (weights, not necessarily summing to 1).
type Mix map[Behaviour]float64

// DefaultMix is mostly well-behaved devices with some of each other kind.
var DefaultMix = Mix{WellBehaved: 85, Flaky: 10, Outdated: 4.9, Compromised: 0.1}

// ParseMix reads "well=85,flaky=10,outdated=4,compromised=1".
func ParseMix(s string) (Mix, error) {
	m := Mix{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("sim: mix %q: want behaviour=weight", part)
		}
		b := Behaviour(strings.TrimSpace(k))
		known := false
		for _, x := range behaviours {
			known = known || x == b
		}
		if !known {
			return nil, fmt.Errorf("sim: unknown behaviour %q (well, flaky, outdated, compromised)", k)
		}
		w, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || w < 0 {
			return nil, fmt.Errorf("sim: mix %q: weight must be a number >= 0", part)
		}
		m[b] = w
	}
	if len(m) == 0 {
		return nil, errors.New("sim: empty mix")
	}
	return m, nil
}

// assign gives device i of n its behaviour: exact counts by largest
// remainder, spread over the fleet, at least one device for every
// behaviour with a positive weight when n allows.
func (m Mix) assign(n int, rng *mrand.Rand) []Behaviour {
	total := 0.0
	for _, w := range m {
		total += w
	}
	out := make([]Behaviour, 0, n)
	if total <= 0 {
		for range n {
			out = append(out, WellBehaved)
		}
		return out
	}
	type share struct {
		b    Behaviour
		n    int
		frac float64
	}
	var shares []share
	left := n
	for _, b := range behaviours {
		exact := m[b] / total * float64(n)
		k := int(exact)
		if k == 0 && m[b] > 0 && n >= len(behaviours) {
			k = 1
		}
		shares = append(shares, share{b, k, exact - float64(int(exact))})
		left -= k
	}
	sort.SliceStable(shares, func(i, j int) bool { return shares[i].frac > shares[j].frac })
	for i := 0; left > 0; i = (i + 1) % len(shares) {
		if m[shares[i].b] > 0 {
			shares[i].n++
			left--
		}
	}
	for left < 0 { // the minimums overshot: take from the largest
		j := 0
		for i := range shares {
			if shares[i].n > shares[j].n {
				j = i
			}
		}
		shares[j].n--
		left++
	}
	for _, s := range shares {
		for range s.n {
			out = append(out, s.b)
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// Config is a simulation.
type Config struct {
	// Devices is how many devices to simulate.
	Devices int
	// ESTURL is the enrollment base URL (https://host:port, no path).
	ESTURL string
	// Tokens hands out one bootstrap token per device (a token enrolls
	// one device once; product-scoped, so a device that does not exist
	// yet is registered on enrollment). APITokens makes them through the
	// REST API.
	Tokens TokenSource
	// MQTT are the broker endpoints (host:port, certificate listener);
	// a device tries them in turn, moving to the next when one fails.
	MQTT []string
	// Roots trust the platform CA (data_dir/pki/root.crt).
	Roots *x509.CertPool
	// ServerName checks the servers' certificates (default: the host of
	// each endpoint).
	ServerName string
	// SerialPrefix names the devices: prefix-000001 … (default "SIM").
	SerialPrefix string
	// Interval between two telemetry messages of one device (default 10s).
	Interval time.Duration
	// Mix of behaviours (default DefaultMix).
	Mix Mix
	// EnrollConcurrency bounds parallel enrollments (default 32).
	EnrollConcurrency int
	// ConnectRate bounds new connections per second (default 1000).
	ConnectRate float64
	// Firmware is the version well-behaved devices run (default 1.4.2);
	// outdated ones run OldFirmware (default 0.9.0).
	Firmware, OldFirmware string
	// Progress, when set, gets one status line every ProgressEvery (1s).
	Progress      io.Writer
	ProgressEvery time.Duration
	// IdentityFile, when set, keeps the devices' keys and certificates so
	// that a later run with the same serials reuses them (0600).
	IdentityFile string
	// Seed makes behaviour assignment and jitter reproducible (0 = random).
	Seed uint64
	Log  *slog.Logger
}

// Stats are the simulation's counters.
type Stats struct {
	Devices       int            `json:"devices"`
	Enrolled      int64          `json:"enrolled"`
	EnrollFailed  int64          `json:"enroll_failed"`
	Online        int64          `json:"online"`
	Connects      int64          `json:"connects"`
	ConnectFailed int64          `json:"connect_failed"`
	Refused       int64          `json:"refused"` // CONNACK refusals (revoked, quarantine lifted…)
	Drops         int64          `json:"drops"`   // connections lost (flaky devices, server gone)
	Sent          int64          `json:"sent"`    // QoS 1 messages sent (telemetry, twin reports, command results)
	Acked         int64          `json:"acked"`   // PUBACKs received for them
	Commands      int64          `json:"commands"`
	Errors        int64          `json:"errors"` // messages on d/{id}/errors (refused publishes)
	OTA           int64          `json:"ota"`    // messages under d/{id}/ota/
	ByBehaviour   map[string]int `json:"by_behaviour"`
}

// TokenSource returns a fresh bootstrap token for the device named serial.
type TokenSource func(ctx context.Context, serial string) (string, error)

// APITokens creates bootstrap tokens for productID through the REST API
// at baseURL (e.g. http://127.0.0.1:8080) with an API key that may
// manage devices of tenantID.
func APITokens(baseURL, apiKey, tenantID, productID string) (TokenSource, error) {
	c, err := client.New(baseURL, apiKey, tenantID, client.Options{})
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, serial string) (string, error) {
		var out struct {
			Token string `json:"token"`
		}
		err := c.Do(ctx, http.MethodPost, "/api/v1/bootstrap-tokens",
			map[string]any{"product_id": productID, "name": "sim " + serial}, &out)
		return out.Token, err
	}, nil
}

// Sim runs a fleet of simulated devices.
type Sim struct {
	now   func() time.Time
	cfg   Config
	log   *slog.Logger
	devs  []*device
	st    counters
	limit *rateLimiter
}

type counters struct {
	enrolled, enrollFailed, online, connects, connectFailed, refused, drops atomic.Int64
	sent, acked, commands, errors, ota                                      atomic.Int64
}

type device struct {
	n         int
	serial    string
	behaviour Behaviour
	id        string
	tlsCert   tls.Certificate
	conn      atomic.Pointer[mconn]
	pid       atomic.Uint32
	telPID    atomic.Uint32
	ackedTel  atomic.Int64
	endpoint  int
	reports   atomic.Int64           // security metrics reports sent
	firmware  atomic.Pointer[string] // after a simulated update (nil: the configured one)
	updating  atomic.Bool
}

// New checks the configuration and prepares the devices.
func New(cfg Config) (*Sim, error) {
	if cfg.Devices <= 0 {
		return nil, errors.New("sim: Devices must be > 0")
	}
	if cfg.ESTURL == "" || cfg.Tokens == nil {
		return nil, errors.New("sim: ESTURL and Tokens are required")
	}
	if len(cfg.MQTT) == 0 {
		return nil, errors.New("sim: at least one MQTT endpoint is required")
	}
	if cfg.Roots == nil {
		return nil, errors.New("sim: Roots (the platform CA) is required")
	}
	if cfg.SerialPrefix == "" {
		cfg.SerialPrefix = "SIM"
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.Mix == nil {
		cfg.Mix = DefaultMix
	}
	if cfg.EnrollConcurrency <= 0 {
		cfg.EnrollConcurrency = 32
	}
	if cfg.ConnectRate <= 0 {
		cfg.ConnectRate = 1000
	}
	if cfg.Firmware == "" {
		cfg.Firmware = "1.4.2"
	}
	if cfg.OldFirmware == "" {
		cfg.OldFirmware = "0.9.0"
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = time.Second
	}
	if cfg.Seed == 0 {
		cfg.Seed = mrand.Uint64()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Sim{now: time.Now, cfg: cfg, log: cfg.Log.With("component", "sim"), limit: newRateLimiter(cfg.ConnectRate)}
	rng := mrand.New(mrand.NewPCG(cfg.Seed, 1))
	for i, b := range cfg.Mix.assign(cfg.Devices, rng) {
		s.devs = append(s.devs, &device{n: i, serial: fmt.Sprintf("%s-%06d", cfg.SerialPrefix, i+1), behaviour: b,
			endpoint: i % len(cfg.MQTT)})
	}
	return s, nil
}

// Stats returns the current counters.
func (s *Sim) Stats() Stats {
	st := Stats{Devices: len(s.devs), Enrolled: s.st.enrolled.Load(), EnrollFailed: s.st.enrollFailed.Load(),
		Online: s.st.online.Load(), Connects: s.st.connects.Load(), ConnectFailed: s.st.connectFailed.Load(),
		Refused: s.st.refused.Load(), Drops: s.st.drops.Load(), Sent: s.st.sent.Load(), Acked: s.st.acked.Load(),
		Commands: s.st.commands.Load(), Errors: s.st.errors.Load(), OTA: s.st.ota.Load(), ByBehaviour: map[string]int{}}
	for _, d := range s.devs {
		st.ByBehaviour[string(d.behaviour)]++
	}
	return st
}

// DeviceIDs lists the enrolled devices' IDs by behaviour.
func (s *Sim) DeviceIDs() map[Behaviour][]string {
	out := map[Behaviour][]string{}
	for _, d := range s.devs {
		if d.id != "" {
			out[d.behaviour] = append(out[d.behaviour], d.id)
		}
	}
	return out
}

// Run enrolls every device, connects them and keeps them going until ctx
// ends; then it disconnects them and returns. It fails only when no
// device could enroll.
func (s *Sim) Run(ctx context.Context) error {
	var progress sync.WaitGroup
	pctx, stopProgress := context.WithCancel(context.Background())
	if s.cfg.Progress != nil {
		progress.Add(1)
		go func() { defer progress.Done(); s.progress(pctx) }()
	}
	defer func() { stopProgress(); progress.Wait(); s.printLine() }()

	if err := s.loadIdentities(); err != nil {
		return err
	}
	if err := s.enrollAll(ctx); err != nil {
		return err
	}
	if err := s.saveIdentities(); err != nil {
		return fmt.Errorf("sim: saving identities: %w", err)
	}
	var wg sync.WaitGroup
	for _, d := range s.devs {
		if d.id == "" {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); s.live(ctx, d) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.telemetry(ctx) }()
	wg.Wait()
	return nil
}

func (s *Sim) enrollAll(ctx context.Context) error {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.cfg.Roots, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: s.cfg.EnrollConcurrency}
	defer tr.CloseIdleConnections()
	ec := &est.Client{BaseURL: strings.TrimSuffix(s.cfg.ESTURL, "/"), HTTP: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
	work := make(chan *device)
	var wg sync.WaitGroup
	var (
		errMu    sync.Mutex
		firstErr error
	)
	for range s.cfg.EnrollConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work {
				if err := s.enroll(ctx, ec, d); err != nil {
					s.st.enrollFailed.Add(1)
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					s.log.Warn("enrollment failed", "serial", d.serial, "err", err)
					continue
				}
				s.st.enrolled.Add(1)
			}
		}()
	}
	for _, d := range s.devs {
		if d.id != "" { // known from the identity file
			continue
		}
		select {
		case work <- d:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	if s.st.enrolled.Load() == 0 {
		if firstErr != nil {
			return fmt.Errorf("sim: no device could enroll: %w", firstErr)
		}
		return errors.New("sim: no device enrolled")
	}
	return nil
}

func (s *Sim) enroll(ctx context.Context, ec *est.Client, d *device) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{SerialNumber: d.serial, CommonName: d.serial}}, key)
	if err != nil {
		return err
	}
	tok, err := s.cfg.Tokens(ctx, d.serial)
	if err != nil {
		return fmt.Errorf("bootstrap token: %w", err)
	}
	var cert *x509.Certificate
	for attempt := 0; ; attempt++ {
		cert, err = ec.SimpleEnroll(ctx, csr, "Bearer "+tok)
		var pe *est.ProblemError
		if err == nil || attempt >= 4 || ctx.Err() != nil || (errors.As(err, &pe) && pe.Status < 500 && pe.Status != 429) {
			break
		}
		sleep(ctx, time.Duration(attempt+1)*500*time.Millisecond)
	}
	if err != nil {
		return err
	}
	d.id = identity.DeviceIDOf(cert)
	d.tlsCert = tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}
	return nil
}

// live keeps one device connected until ctx ends: connect, subscribe,
// report the twin, then read until the connection ends; reconnect with a
// backoff, moving to the next endpoint.
func (s *Sim) live(ctx context.Context, d *device) {
	rng := mrand.New(mrand.NewPCG(s.cfg.Seed, uint64(d.n)+2))
	backoff, tried := time.Second, 0
	for ctx.Err() == nil {
		if err := s.limit.wait(ctx); err != nil {
			return
		}
		addr := s.cfg.MQTT[d.endpoint%len(s.cfg.MQTT)]
		c, err := dialMQTT(addr, s.tlsConfig(d, addr), d.id, s.keepalive(), 15*time.Second)
		if err != nil {
			var r errRefused
			if errors.As(err, &r) {
				s.st.refused.Add(1)
			} else {
				s.st.connectFailed.Add(1)
			}
			// Next endpoint at once; back off once all were tried.
			d.endpoint++
			if tried++; tried%len(s.cfg.MQTT) == 0 {
				sleep(ctx, backoff+time.Duration(rng.Int64N(int64(backoff))))
				backoff = min(backoff*2, time.Minute)
			}
			continue
		}
		backoff, tried = time.Second, 0
		s.st.connects.Add(1)
		s.st.online.Add(1)
		d.conn.Store(c)
		stop := context.AfterFunc(ctx, c.close)
		p := func(rest string) string { return "d/" + d.id + "/" + rest }
		err = c.subscribe(1, 1, p("commands/+"), p("twin/desired"), p("errors"), p("ota/#"))
		if err == nil {
			if err = c.publish(p("twin/reported"), s.reported(d), 1, s.nextPID(d)); err == nil {
				s.st.sent.Add(1)
			}
		}
		if err == nil {
			if err = c.publish(p("security/metrics"), s.securityMetrics(d), 1, s.nextPID(d)); err == nil {
				s.st.sent.Add(1)
			}
		}
		if err == nil {
			s.read(ctx, d, c)
		}
		stop()
		d.conn.Store(nil)
		c.c.Close()
		s.st.online.Add(-1)
		if ctx.Err() != nil {
			return
		}
		s.st.drops.Add(1)
		wait := time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))
		if d.behaviour == Flaky {
			wait += time.Duration(rng.Int64N(int64(5 * time.Second)))
		}
		if !sleep(ctx, wait) {
			return
		}
	}
}

func (s *Sim) keepalive() uint16 {
	return uint16(min(max(60, 3*int(s.cfg.Interval/time.Second)), 600))
}

func (s *Sim) tlsConfig(d *device, addr string) *tls.Config {
	name := s.cfg.ServerName
	if name == "" {
		name = addr
		if i := strings.LastIndex(addr, ":"); i >= 0 {
			name = strings.Trim(addr[:i], "[]")
		}
	}
	return &tls.Config{RootCAs: s.cfg.Roots, ServerName: name, Certificates: []tls.Certificate{d.tlsCert},
		MinVersion: tls.VersionTLS12} // no session cache: resumption is per server name, not per device
}

// read handles what the platform sends until the connection ends.
func (s *Sim) read(ctx context.Context, d *device, c *mconn) {
	for {
		typ, b, err := c.read()
		if err != nil {
			return
		}
		switch typ >> 4 {
		case 3: // PUBLISH
			topic, pid, payload, err := parsePublish(typ&0x0f, b)
			if err != nil {
				return
			}
			if pid != 0 {
				if c.puback(pid) != nil {
					return
				}
			}
			s.onMessage(d, c, topic, payload)
		case 4: // PUBACK
			s.st.acked.Add(1)
			if len(b) >= 2 && uint16(b[0])<<8|uint16(b[1]) < telemetryPIDs {
				d.ackedTel.Add(1)
			}
		}
	}
}

func (s *Sim) onMessage(d *device, c *mconn, topic string, payload []byte) {
	rest := strings.TrimPrefix(topic, "d/"+d.id+"/")
	switch {
	case strings.HasPrefix(rest, "commands/") && !strings.HasSuffix(rest, "/result"):
		s.st.commands.Add(1)
		res := map[string]any{"status": "succeeded", "result": map[string]any{"simulated": true}}
		if d.behaviour == Flaky && mrand.IntN(10) == 0 {
			res = map[string]any{"status": "failed", "error": "simulated failure"}
		}
		body, _ := json.Marshal(res)
		if c.publish(topic+"/result", body, 1, s.nextPID(d)) == nil {
			s.st.sent.Add(1)
		}
	case rest == "errors":
		s.st.errors.Add(1)
	case strings.HasPrefix(rest, "ota/"):
		s.st.ota.Add(1)
		if rest == "ota/assignment" {
			s.onAssignment(d, payload)
		}
	}
}

// reported is the device's twin report.
func (s *Sim) reported(d *device) []byte {
	fw := s.firmware(d)
	r := map[string]any{"firmware": fw, "sim": map[string]any{"behaviour": d.behaviour}}
	if d.behaviour == Compromised {
		r["listening_ports"] = []int{22, 23, 4444}
	}
	b, _ := json.Marshal(r)
	return b
}

// securityMetrics is the device's report on d/{id}/security/metrics. A
// compromised device's first report looks normal (it becomes its
// baseline); later ones list a port scan's worth of listening ports and
// destinations it never talked to, which behaviour detection catches.
func (s *Sim) securityMetrics(d *device) []byte {
	n := d.reports.Add(1)
	ports := []map[string]any{{"proto": "tcp", "port": 22}}
	outbound := []map[string]any{{"proto": "tcp", "host": "updates.example.com", "port": 443}}
	procs := 40 + d.n%7
	if d.behaviour == Compromised && n > 1 {
		for port := 4440; port < 4450; port++ {
			ports = append(ports, map[string]any{"proto": "tcp", "port": port})
		}
		for i := range 5 {
			outbound = append(outbound, map[string]any{"proto": "tcp", "host": fmt.Sprintf("198.51.100.%d", 10+i), "port": 23})
		}
		procs += 120
	}
	b, _ := json.Marshal(map[string]any{"listening_ports": ports, "outbound": outbound, "process_count": procs})
	return b
}

// Packet IDs: telemetry uses 1…32767 and everything else 32768…65535, so
// that a PUBACK tells which kind was acknowledged without a table.
const telemetryPIDs = 1 << 15

func (s *Sim) nextPID(d *device) uint16 {
	return telemetryPIDs + uint16(d.pid.Add(1)%telemetryPIDs)
}

func (s *Sim) nextTelemetryPID(d *device) uint16 {
	return 1 + uint16(d.telPID.Add(1)%(telemetryPIDs-1))
}

// AckedTelemetry is, per device ID, how many telemetry messages the
// platform acknowledged (PUBACK: committed to the database).
func (s *Sim) AckedTelemetry() map[string]int64 {
	out := make(map[string]int64, len(s.devs))
	for _, d := range s.devs {
		if d.id != "" {
			out[d.id] = d.ackedTel.Load()
		}
	}
	return out
}

// telemetry sends every online device's measurements, spread evenly over
// the interval by a few goroutines (not one per device).
func (s *Sim) telemetry(ctx context.Context) {
	const workers = 8
	tick := min(100*time.Millisecond, s.cfg.Interval)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(s.cfg.Seed, uint64(w)+1<<40))
			var mine []*device
			for i := w; i < len(s.devs); i += workers {
				if s.devs[i].id != "" {
					mine = append(mine, s.devs[i])
				}
			}
			slots := max(1, int(s.cfg.Interval/tick))
			t := time.NewTicker(tick)
			defer t.Stop()
			for n := 0; ; n++ {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				for i, d := range mine {
					burst := d.behaviour == Compromised && n%slots < slots/10+1
					if i%slots != n%slots && !burst {
						continue
					}
					c := d.conn.Load()
					if c == nil {
						continue
					}
					if d.behaviour == Flaky && rng.IntN(200) == 0 {
						c.c.Close() // the network goes away; live reconnects
						continue
					}
					if burst && n%slots == 0 { // a compromised device's report at the start of each burst
						if c.publish("d/"+d.id+"/security/metrics", s.securityMetrics(d), 1, s.nextPID(d)) == nil {
							s.st.sent.Add(1)
						}
					}
					body := s.measurement(d, rng)
					if c.publish("d/"+d.id+"/telemetry", body, 1, s.nextTelemetryPID(d)) == nil {
						s.st.sent.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
}

func (s *Sim) measurement(d *device, rng *mrand.Rand) []byte {
	temp := 20 + rng.Float64()*5
	cpu := 5 + rng.Float64()*20
	if d.behaviour == Compromised {
		cpu = 85 + rng.Float64()*15
	}
	return fmt.Appendf(nil, `{"temp":%.2f,"cpu":%.1f,"rssi":%d}`, temp, cpu, -40-rng.IntN(50))
}

func (s *Sim) progress(ctx context.Context) {
	t := time.NewTicker(s.cfg.ProgressEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.printLine()
		}
	}
}

func (s *Sim) printLine() {
	if s.cfg.Progress == nil {
		return
	}
	st := s.Stats()
	fmt.Fprintf(s.cfg.Progress, "sim: enrolled %d/%d (failed %d)  online %d  connects %d (failed %d, refused %d, drops %d)  sent %d acked %d  commands %d  errors %d  ota %d\n",
		st.Enrolled, st.Devices, st.EnrollFailed, st.Online, st.Connects, st.ConnectFailed, st.Refused, st.Drops,
		st.Sent, st.Acked, st.Commands, st.Errors, st.OTA)
}

// rateLimiter hands out at most rate tokens per second.
type rateLimiter struct {
	mu    sync.Mutex
	next  time.Time
	every time.Duration
}

func newRateLimiter(rate float64) *rateLimiter {
	return &rateLimiter{every: time.Duration(float64(time.Second) / rate)}
}

func (r *rateLimiter) wait(ctx context.Context) error {
	r.mu.Lock()
	now := time.Now()
	if r.next.Before(now) {
		r.next = now
	}
	at := r.next
	r.next = r.next.Add(r.every)
	r.mu.Unlock()
	if d := time.Until(at); d > 0 && !sleep(ctx, d) {
		return ctx.Err()
	}
	return ctx.Err()
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
