package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/steward-iot/steward/internal/client"
	"github.com/steward-iot/steward/internal/est"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/sim"
	"github.com/steward-iot/steward/internal/testutil/natstest"
	"github.com/steward-iot/steward/internal/testutil/pgtest"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// node is one running `steward server` process.
type node struct {
	name, dataDir  string
	cmd            *exec.Cmd
	api, est, mqtt string
	args, env      []string
	bin            string
	exited         chan struct{}
}

var (
	bannerAPI  = regexp.MustCompile(`API\s+(http://\S+)/api/v1`)
	bannerEST  = regexp.MustCompile(`Enroll\s+(https://\S+)/\.well-known/est`)
	bannerMQTT = regexp.MustCompile(`MQTT\s+mqtts://(\S+)`)
)

// startNode runs `steward server` on ephemeral ports against the shared
// store and bus, and waits for its banner.
func startNode(t *testing.T, bin, name, dataDir, storeURL, busURL, prefix string) *node {
	t.Helper()
	n := &node{name: name, dataDir: dataDir, bin: bin,
		args: []string{"server", "--dev", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--log-level", "warn",
			"--store-url", storeURL, "--bus-url", busURL},
		env: append(os.Environ(), "STEWARD_BUS_PREFIX="+prefix, "STEWARD_MQTT_LISTEN=127.0.0.1:0", "STEWARD_EST_LISTEN=127.0.0.1:0")}
	n.start(t)
	return n
}

func (n *node) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(n.bin, n.args...)
	cmd.Env = n.env
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = prefixWriter{n.name, os.Stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(n.exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-n.exited })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if m := bannerEST.FindStringSubmatch(line); m != nil {
				n.est = m[1]
			}
			if m := bannerMQTT.FindStringSubmatch(line); m != nil {
				n.mqtt = m[1]
			}
			if m := bannerAPI.FindStringSubmatch(line); m != nil {
				n.api = m[1]
			}
			if strings.HasPrefix(line, "Try:") {
				close(ready)
				break
			}
		}
		for sc.Scan() {
		}
	}()
	select {
	case <-ready:
	case <-n.exited:
		t.Fatalf("node %s exited before it was ready", n.name)
	case <-time.After(60 * time.Second):
		t.Fatalf("node %s did not print its banner within 60s", n.name)
	}
	if n.api == "" || n.est == "" || n.mqtt == "" {
		t.Fatalf("node %s banner incomplete: api=%q est=%q mqtt=%q", n.name, n.api, n.est, n.mqtt)
	}
}

// restart stops the node gracefully (SIGTERM) and starts it again on the
// same data and MQTT address, so that devices find it where it was.
func (n *node) restart(t *testing.T) time.Duration {
	t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("node %s did not stop within 30s of SIGTERM", n.name)
	}
	if code := n.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("node %s exited with %d after SIGTERM", n.name, code)
	}
	down := time.Now()
	n.env = append(n.env, "STEWARD_MQTT_LISTEN="+n.mqtt)
	n.start(t)
	return time.Since(down)
}

// prefixWriter tags a node's log lines with its name.
type prefixWriter struct {
	name string
	w    *os.File
}

func (p prefixWriter) Write(b []byte) (int, error) {
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if l != "" {
			fmt.Fprintf(p.w, "[%s] %s", p.name, l)
		}
	}
	return len(b), nil
}

// cluster is two nodes sharing one PostgreSQL schema and one NATS prefix,
// a tenant and a product.
type cluster struct {
	a, b              *node
	key, tenant, prod string
	storeURL          string
	busPrefix         string
	anchor            *x509.CertPool
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs two servers")
	}
	busURL, prefix := natstest.URL(), natstest.Prefix(t)
	storeURL := pgtest.URL(t)
	bin := buildBinary(t)
	c := &cluster{storeURL: storeURL, busPrefix: prefix}
	dirA, dirB := t.TempDir(), t.TempDir()
	c.a = startNode(t, bin, "A", dirA, storeURL, busURL, prefix)
	// Every node of a platform holds the same CA (docs/operations.md).
	testserver.CopyFiles(t, filepath.Join(dirA, "pki"), filepath.Join(dirB, "pki"))
	c.b = startNode(t, bin, "B", dirB, storeURL, busURL, prefix)

	k, err := os.ReadFile(filepath.Join(dirA, "admin-api-key"))
	if err != nil {
		t.Fatal(err)
	}
	c.key = strings.TrimSpace(string(k))
	root, err := os.ReadFile(filepath.Join(dirA, "pki", identity.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	c.anchor = x509.NewCertPool()
	if !c.anchor.AppendCertsFromPEM(root) {
		t.Fatal("no root certificate in pki/root.crt")
	}
	ctx := context.Background()
	admin, _ := client.New(c.a.api, c.key, "", client.Options{})
	var tenant struct{ ID string }
	if err := admin.Do(ctx, "POST", "/api/v1/tenants", map[string]string{"name": "cluster", "kind": "enterprise"}, &tenant); err != nil {
		t.Fatal(err)
	}
	c.tenant = tenant.ID
	var product struct{ ID string }
	if err := c.api(c.a).Do(ctx, "POST", "/api/v1/products", map[string]string{"vendor": "Acme", "model": "C2"}, &product); err != nil {
		t.Fatal(err)
	}
	c.prod = product.ID
	return c
}

// api is a tenant client of node n.
func (c *cluster) api(n *node) *client.Client {
	cl, _ := client.New(n.api, c.key, c.tenant, client.Options{})
	return cl
}

// enroll makes an active device with a certificate, enrolled over n's EST
// listener with a bootstrap token.
func (c *cluster) enroll(t *testing.T, n *node, serial string) *testserver.EnrolledDevice {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var tok struct{ Token string }
	if err := c.api(n).Do(ctx, "POST", "/api/v1/bootstrap-tokens", map[string]any{"product_id": c.prod, "name": "cluster test"}, &tok); err != nil {
		t.Fatal(err)
	}
	key := testserver.NewKey()
	ec := &est.Client{BaseURL: n.est, HTTP: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.anchor, MinVersion: tls.VersionTLS12}}}}
	cert, err := ec.SimpleEnroll(ctx, testserver.NewCSR(key, serial), "Bearer "+tok.Token)
	if err != nil {
		t.Fatalf("enrolling %s on %s: %v", serial, n.name, err)
	}
	dev := testserver.Enrolled(cert, key)
	c.transition(t, n, dev.DeviceID, "active")
	return dev
}

func (c *cluster) transition(t *testing.T, n *node, id, to string) {
	t.Helper()
	if err := c.api(n).Do(context.Background(), "POST", "/api/v1/devices/"+id+"/transitions",
		map[string]any{"to": to, "reason": "cluster test"}, nil); err != nil {
		t.Fatalf("transition %s to %s on %s: %v", id, to, n.name, err)
	}
}

type mqttMsg struct {
	topic   string
	payload []byte
}

// mqttDevice is an MQTT 5 device session (paho) on one node.
type mqttDevice struct {
	c     *paho.Client
	inbox chan mqttMsg
	gone  chan *paho.Disconnect
}

func (c *cluster) connect(t *testing.T, n *node, dev *testserver.EnrolledDevice) *mqttDevice {
	t.Helper()
	host, _, _ := net.SplitHostPort(n.mqtt)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n.mqtt, &tls.Config{
		RootCAs: c.anchor, Certificates: []tls.Certificate{dev.TLS}, ServerName: host, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("dialling %s on %s: %v", n.mqtt, n.name, err)
	}
	d := &mqttDevice{inbox: make(chan mqttMsg, 256), gone: make(chan *paho.Disconnect, 1)}
	d.c = paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), // packets written whole (see internal/broker/helpers_test.go)
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			d.inbox <- mqttMsg{p.Packet.Topic, p.Packet.Payload}
			return true, nil
		}},
		OnServerDisconnect: func(x *paho.Disconnect) {
			select {
			case d.gone <- x:
			default:
			}
		}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ca, err := d.c.Connect(ctx, &paho.Connect{ClientID: dev.DeviceID, KeepAlive: 30, CleanStart: true}); err != nil {
		t.Fatalf("connecting %s to %s: %v (%+v)", dev.DeviceID, n.name, err, ca)
	}
	t.Cleanup(func() { d.c.Disconnect(&paho.Disconnect{}) })
	return d
}

func (d *mqttDevice) subscribe(t *testing.T, filters ...string) {
	t.Helper()
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	// Generous: a loaded machine runs two servers and a database here.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sa, err := d.c.Subscribe(ctx, s)
	if err != nil {
		t.Fatalf("subscribing to %v: %v", filters, err)
	}
	for i, r := range sa.Reasons {
		if r > 2 {
			t.Fatalf("subscription to %s refused: 0x%02x", filters[i], r)
		}
	}
}

func (d *mqttDevice) publish(topic, payload string) (*paho.PublishResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return d.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
}

func (d *mqttDevice) next(t *testing.T, topic string, within time.Duration) mqttMsg {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case m := <-d.inbox:
			if m.topic == topic {
				return m
			}
		case <-deadline:
			t.Fatalf("no message on %s within %s", topic, within)
		}
	}
}

func eventuallyTrue(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTwoNodes runs two `steward server` processes on one PostgreSQL
// database and one NATS server: a device connected to node A gets a
// command sent through node B's API, answers it, and B shows the result;
// the twin desired through B reaches the device on A; a quarantine
// ordered through B reduces the device's rights on A at once, lifting it
// ends the session on A; a certificate revoked through B disconnects the
// device from A.
func TestTwoNodes(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	dev := c.enroll(t, c.a, "C2-0001")
	id := dev.DeviceID
	p := func(rest string) string { return "d/" + id + "/" + rest }

	d := c.connect(t, c.a, dev)
	d.subscribe(t, p("commands/+"), p("twin/desired"), p("ota/#"))

	// Node B knows where the device is connected: it asks on the device's subject.
	conn := func(n *node) (out struct {
		Connected bool
		Listener  string
	}) {
		if err := c.api(n).Do(ctx, "GET", "/api/v1/devices/"+id+"/connection", nil, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := conn(c.b); !got.Connected || got.Listener != "mqtts" {
		t.Fatalf("connection of a device on A, asked on B: %+v", got)
	}
	// A command through B reaches the device on A; its result is read on B.
	var cmd struct{ ID, Status string }
	if err := c.api(c.b).Do(ctx, "POST", "/api/v1/devices/"+id+"/commands", map[string]any{"name": "reboot"}, &cmd); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m := d.next(t, p("commands/"+cmd.ID), 10*time.Second)
	t.Logf("command created on B reached the device on A after %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(string(m.payload), `"reboot"`) {
		t.Fatalf("command as received: %s", m.payload)
	}
	if pr, err := d.publish(p("commands/"+cmd.ID+"/result"), `{"status": "succeeded", "result": {"uptime": 7}}`); err != nil || pr.ReasonCode >= 0x80 {
		t.Fatalf("publishing the result: %v %+v", err, pr)
	}
	eventuallyTrue(t, 10*time.Second, "the command's result visible on B", func() bool {
		var got struct{ Status string }
		return c.api(c.b).Do(ctx, "GET", "/api/v1/devices/"+id+"/commands/"+cmd.ID, nil, &got) == nil && got.Status == "succeeded"
	})

	// A twin change through B is pushed by A.
	if err := c.api(c.b).Do(ctx, "PATCH", "/api/v1/devices/"+id+"/twin/desired", map[string]any{"interval": 30}, nil); err != nil {
		t.Fatal(err)
	}
	eventuallyTrue(t, 10*time.Second, "twin desired from B delivered on A", func() bool {
		select {
		case m := <-d.inbox:
			return m.topic == p("twin/desired") && strings.Contains(string(m.payload), `"interval":30`)
		default:
			return false
		}
	})

	// Telemetry is accepted before the quarantine …
	if pr, err := d.publish(p("telemetry"), `{"temp": 21.5}`); err != nil || pr.ReasonCode >= 0x80 {
		t.Fatalf("telemetry before quarantine: %v %+v", err, pr)
	}
	// … and refused on A once B ordered the quarantine; ota/ still works.
	c.transition(t, c.b, id, "quarantined")
	start = time.Now()
	eventuallyTrue(t, 10*time.Second, "telemetry refused on A after a quarantine on B", func() bool {
		pr, _ := d.publish(p("telemetry"), `{"temp": 22}`)
		return pr != nil && pr.ReasonCode == 0x87
	})
	t.Logf("quarantine ordered on B enforced on A after %s", time.Since(start).Round(time.Millisecond))
	// ota/status stays open: the report is read (and refused for what it
	// says: this device has no update), not refused by the ACL.
	if pr, err := d.publish(p("ota/status"), `{"status": "downloading", "artifact_id": "art_none"}`); pr == nil || pr.ReasonCode == 0x87 {
		t.Fatalf("ota/status while quarantined: %v %+v", err, pr)
	}
	// Lifting it on B ends the session on A so that it reconnects with full rights.
	c.transition(t, c.b, id, "active")
	select {
	case x := <-d.gone:
		if x.ReasonCode != 0x98 {
			t.Fatalf("release: DISCONNECT 0x%02x", x.ReasonCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no DISCONNECT on A after the quarantine was lifted on B")
	}

	// A certificate revoked through B ends the device's session on A.
	d2 := c.connect(t, c.a, dev)
	d2.subscribe(t, p("commands/+"))
	if err := c.api(c.b).Do(ctx, "POST", "/api/v1/certificates/"+dev.Serial+"/revoke",
		map[string]any{"reason": "key_compromise"}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case x := <-d2.gone:
		if x.ReasonCode != 0x87 {
			t.Fatalf("revocation: DISCONNECT 0x%02x", x.ReasonCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no DISCONNECT on A after the certificate was revoked on B")
	}
	eventuallyTrue(t, 10*time.Second, "B sees the device offline", func() bool { return !conn(c.b).Connected && !conn(c.a).Connected })
}

// loadedCluster is a two-node cluster with n simulated devices sending
// telemetry every 100 ms, each knowing both nodes.
func loadedCluster(t *testing.T, n int) (*cluster, *sim.Sim, func()) {
	t.Helper()
	c := startCluster(t)
	tokens, err := sim.APITokens(c.a.api, c.key, c.tenant, c.prod)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(sim.Config{Devices: n, ESTURL: c.a.est, Tokens: tokens, MQTT: []string{c.a.mqtt, c.b.mqtt},
		Roots: c.anchor, Interval: 100 * time.Millisecond, Mix: sim.Mix{sim.WellBehaved: 1}, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	eventuallyTrue(t, 60*time.Second, "every simulated device online", func() bool { return s.Stats().Online == int64(n) })
	eventuallyTrue(t, 10*time.Second, "telemetry flowing", func() bool { return s.Stats().Acked > int64(5*n) })
	return c, s, stop
}

// checkTelemetry compares, per device, the telemetry messages the
// platform acknowledged with the points stored (metric "temp"). An
// acknowledged message may still be in the telemetry stream (a node
// killed while holding it hands it on after the ack wait), so it waits,
// within a bound, for the stored counts to catch up.
func checkTelemetry(t *testing.T, c *cluster, s *sim.Sim) {
	t.Helper()
	db, err := sql.Open("pgx", c.storeURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	acked := s.AckedTelemetry()
	behind := func(stored map[string]int64) (n int64) {
		for id, a := range acked {
			n += max(a-stored[id], 0)
		}
		return n
	}
	var stored map[string]int64
	start := time.Now()
	for deadline := start.Add(60 * time.Second); ; {
		stored = storedTelemetry(t, db)
		if behind(stored) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	var total, have, lost int64
	for id, a := range acked {
		total += a
		have += stored[id]
		if stored[id] < a {
			lost += a - stored[id]
			t.Errorf("device %s: %d telemetry messages acknowledged, %d stored", id, a, stored[id])
		}
	}
	t.Logf("telemetry: %d acknowledged, %d stored (%s after the load stopped), %d acknowledged but lost",
		total, have, time.Since(start).Round(time.Millisecond), lost)
	if total == 0 {
		t.Fatal("no telemetry acknowledged")
	}
	// It went through the telemetry stream, which is now drained.
	nc, err := nats.Connect(natstest.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(context.Background(), strings.ToUpper(c.busPrefix)+"_TELEMETRY", "telemetry-ingest")
	if err != nil {
		t.Fatal(err)
	}
	if ci := cons.CachedInfo(); ci.Delivered.Stream < uint64(total) || ci.NumPending != 0 {
		t.Errorf("telemetry stream: %d messages delivered to the nodes (want at least %d), %d pending", ci.Delivered.Stream, total, ci.NumPending)
	}
}

// storedTelemetry counts the stored points of metric "temp" per device.
func storedTelemetry(t *testing.T, db *sql.DB) map[string]int64 {
	t.Helper()
	rows, err := db.Query(`SELECT s.device_id, count(*) FROM telemetry t JOIN telemetry_series s ON s.id = t.series_id
		WHERE s.metric = 'temp' GROUP BY s.device_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	stored := map[string]int64{}
	for rows.Next() {
		var id string
		var k int64
		if err := rows.Scan(&id, &k); err != nil {
			t.Fatal(err)
		}
		stored[id] = k
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return stored
}

// TestRollingRestartUnderLoad restarts each node in turn (SIGTERM, start
// again) while simulated devices send telemetry: every device stays or
// comes back online and no acknowledged message is lost.
func TestRollingRestartUnderLoad(t *testing.T) {
	const n = 24
	c, s, stop := loadedCluster(t, n)
	for _, nd := range []*node{c.a, c.b} {
		drops := s.Stats().Drops
		took := nd.restart(t)
		eventuallyTrue(t, 60*time.Second, "every device online after restarting "+nd.name, func() bool {
			st := s.Stats()
			return st.Online == n && st.Drops > drops
		})
		mid := s.Stats().Acked
		eventuallyTrue(t, 20*time.Second, "telemetry flowing after restarting "+nd.name, func() bool { return s.Stats().Acked > mid+int64(5*n) })
		t.Logf("node %s back %s after SIGTERM; %d devices reconnected", nd.name, took.Round(time.Millisecond), s.Stats().Drops-drops)
	}
	stop()
	t.Logf("sim: %+v", s.Stats())
	checkTelemetry(t, c, s)
}

// TestKill9FailoverUnderLoad runs simulated devices spread over two nodes
// (each device knows both endpoints) sending QoS 1 telemetry, kills node A
// with SIGKILL, and checks that every device comes back on node B and
// that every telemetry message the platform acknowledged before, during
// and after the kill is in the database.
func TestKill9FailoverUnderLoad(t *testing.T) {
	const n = 24
	c, s, stop := loadedCluster(t, n)
	// API writers on node A while it dies: devices created (each with its
	// audit record) and twin changes; only answered requests count.
	ctx := context.Background()
	twinDev := s.DeviceIDs()[sim.WellBehaved][0]
	var (
		mu         sync.Mutex
		created    []string
		twinAcked  int64 // highest desired version acknowledged
		twinValue  int
		writersWG  sync.WaitGroup
		apiA       = c.api(c.a)
		apiStopped = make(chan struct{})
	)
	writersWG.Add(2)
	go func() {
		defer writersWG.Done()
		for i := 0; ; i++ {
			var d struct{ ID string }
			if err := apiA.Do(ctx, "POST", "/api/v1/devices", map[string]any{"product_id": c.prod, "serial": fmt.Sprintf("K9-%05d", i)}, &d); err != nil {
				return
			}
			mu.Lock()
			created = append(created, d.ID)
			mu.Unlock()
		}
	}()
	go func() {
		defer writersWG.Done()
		for i := 1; ; i++ {
			var tw struct {
				Desired struct{ Version int64 } `json:"desired"`
			}
			if err := apiA.Do(ctx, "PATCH", "/api/v1/devices/"+twinDev+"/twin/desired", map[string]any{"n": i}, &tw); err != nil {
				return
			}
			mu.Lock()
			twinAcked, twinValue = tw.Desired.Version, i
			mu.Unlock()
		}
	}()
	go func() { writersWG.Wait(); close(apiStopped) }()
	eventuallyTrue(t, 20*time.Second, "API writes acknowledged on A", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(created) >= 20 && twinValue >= 20
	})
	before := s.Stats()
	if err := c.a.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	<-c.a.exited
	killed := time.Now()
	<-apiStopped
	eventuallyTrue(t, 60*time.Second, "every device back online (on B)", func() bool {
		st := s.Stats()
		return st.Online == n && st.Drops > 0
	})
	t.Logf("all %d devices online on B %s after kill -9 of A (%d moved)", n, time.Since(killed).Round(time.Millisecond), s.Stats().Drops)
	mid := s.Stats().Acked
	eventuallyTrue(t, 20*time.Second, "telemetry flowing through B", func() bool { return s.Stats().Acked > mid+5*n })
	stop()
	t.Logf("sim before the kill: %+v", before)
	t.Logf("sim after the run:   %+v", s.Stats())
	checkTelemetry(t, c, s)

	// Every API write A answered is visible through B, with its audit record.
	apiB := c.api(c.b)
	for _, id := range created {
		if err := apiB.Do(ctx, "GET", "/api/v1/devices/"+id, nil, nil); err != nil {
			t.Errorf("device %s acknowledged by A before kill -9 is missing on B: %v", id, err)
		}
	}
	audited := map[string]bool{}
	for after := int64(0); ; {
		var page struct {
			Items []struct {
				Seq    int64  `json:"seq"`
				Action string `json:"action"`
				Target string `json:"target"`
			} `json:"items"`
		}
		if err := apiB.Do(ctx, "GET", fmt.Sprintf("/api/v1/audit?after=%d&limit=1000", after), nil, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Items) == 0 {
			break
		}
		for _, r := range page.Items {
			if r.Action == "device.create" {
				audited[r.Target] = true
			}
			after = r.Seq
		}
	}
	missing := 0
	for _, id := range created {
		if !audited[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged device creations have no audit record", missing, len(created))
	}
	var tw struct {
		Desired struct {
			Version int64
			State   map[string]any
		} `json:"desired"`
	}
	if err := apiB.Do(ctx, "GET", "/api/v1/devices/"+twinDev+"/twin", nil, &tw); err != nil {
		t.Fatal(err)
	}
	if n, _ := tw.Desired.State["n"].(float64); tw.Desired.Version < twinAcked || int(n) < twinValue || twinAcked == 0 {
		t.Errorf("twin on B: version %d n=%v; A had acknowledged version %d n=%d", tw.Desired.Version, tw.Desired.State["n"], twinAcked, twinValue)
	}
	t.Logf("API on A before kill -9: %d device creations (%d audited), twin desired up to version %d acknowledged; all found on B",
		len(created), len(created)-missing, twinAcked)
}
