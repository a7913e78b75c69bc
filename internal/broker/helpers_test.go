package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/config"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/platform"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

const api = testserver.APIPrefix

// env is a running platform with its MQTT listeners on ephemeral ports,
// one tenant and one product.
type env struct {
	srv     *testserver.Server
	ten     *testserver.Tenant
	product model.Product
	roots   *x509.CertPool
	cert    string // certificate listener
	token   string // token listener
	ws      string // WebSocket listener
	app     string // application listener
	plain   string // plaintext listener (tokens only)
	dir     string
}

type envOpts struct {
	configure func(*broker.Config)
}

func newEnv(t *testing.T, o ...envOpts) *env {
	t.Helper()
	var opt envOpts
	if len(o) > 0 {
		opt = o[0]
	}
	srv := testserver.Start(t, testserver.Options{
		Configure: func(c *config.Config) {
			c.MQTT.Listen, c.MQTT.TokenListen, c.MQTT.WSListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
			c.MQTT.AppListen, c.MQTT.PlainListen = "127.0.0.1:0", "127.0.0.1:0"
		},
		BeforeStart: func(p *platform.Server) {
			p.CommandSweep = 50 * time.Millisecond
			p.BrokerConfig = opt.configure
		},
	})
	e := &env{srv: srv, dir: t.TempDir(), roots: x509.NewCertPool()}
	e.roots.AddCert(srv.Platform.Identity.CA().Anchor())
	e.cert = srv.Platform.MQTTAddr(broker.ListenerCert)
	e.token = srv.Platform.MQTTAddr(broker.ListenerToken)
	e.ws = srv.Platform.MQTTAddr(broker.ListenerWS)
	e.app = srv.Platform.MQTTAddr(broker.ListenerApp)
	e.plain = srv.Platform.MQTTAddr(broker.ListenerPlain)
	if e.cert == "" || e.token == "" || e.ws == "" || e.app == "" {
		t.Fatalf("MQTT listeners not up: %q %q %q", e.cert, e.token, e.ws)
	}
	e.ten = srv.CreateTenant(t, "mqtt")
	e.product = srv.CreateProduct(t, e.ten.ID)
	return e
}

// device enrolls a new device (real EST enrollment) and returns it.
func (e *env) device(t *testing.T) *testserver.EnrolledDevice {
	t.Helper()
	return e.srv.EnrollWithToken(t, e.ten.ID, e.product.ID, e.srv.Unique("SN"))
}

func (e *env) tls(cert *tls.Certificate) *tls.Config {
	c := &tls.Config{RootCAs: e.roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

func (e *env) do(t *testing.T, method, path string, body any, hdr ...string) *testserver.Resp {
	t.Helper()
	r := testserver.Req{Method: method, Path: path, Key: e.ten.Admin.Secret, Body: body, Header: map[string]string{}}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header[hdr[i]] = hdr[i+1]
	}
	return e.srv.Do(t, r)
}

func (e *env) must(t *testing.T, status int, method, path string, body any, hdr ...string) *testserver.Resp {
	t.Helper()
	res := e.do(t, method, path, body, hdr...)
	if res.Status != status {
		t.Fatalf("%s %s: want %d, got %s", method, path, status, res)
	}
	return res
}

// latest returns the device's last values by metric.
func (e *env) latest(t *testing.T, deviceID string) map[string]any {
	t.Helper()
	res := e.must(t, http.StatusOK, http.MethodGet, api+"/devices/"+deviceID+"/telemetry/latest", nil)
	out := map[string]any{}
	for _, it := range res.Items() {
		out[it["metric"].(string)] = it["value"]
	}
	return out
}

// ---- MQTT 5 (paho.golang) ----

type msg struct {
	topic   string
	payload []byte
	retain  bool
	qos     byte
}

// v5 is a connected MQTT 5 client with an inbox.
type v5 struct {
	c          *paho.Client
	inbox      chan msg
	disconnect chan *paho.Disconnect
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) net.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("dialling %s: %v", addr, err)
	}
	return conn
}

// connect5 connects an MQTT 5 client over conn; it returns the CONNACK
// and the error of a refused connection.
func connect5(t *testing.T, conn net.Conn, clientID, user, pass string) (*v5, *paho.Connack, error) {
	t.Helper()
	c := &v5{inbox: make(chan msg, 256), disconnect: make(chan *paho.Disconnect, 1)}
	c.c = paho.NewClient(paho.ClientConfig{
		// paho writes a packet in several writes and serialises them only
		// on a connection that is a sync.Locker: its own PUBACKs and the
		// test's publishes would otherwise interleave on the wire.
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			c.inbox <- msg{topic: p.Packet.Topic, payload: p.Packet.Payload, retain: p.Packet.Retain, qos: p.Packet.QoS}
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case c.disconnect <- d:
			default:
			}
		},
	})
	cp := &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true}
	if user != "" {
		cp.Username, cp.UsernameFlag = user, true
		cp.Password, cp.PasswordFlag = []byte(pass), true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.c.Connect(ctx, cp)
	if err == nil {
		t.Cleanup(func() { c.c.Disconnect(&paho.Disconnect{}) })
	}
	return c, ca, err
}

// deviceV5 connects dev on the certificate listener.
func (e *env) deviceV5(t *testing.T, dev *testserver.EnrolledDevice) *v5 {
	t.Helper()
	c, ca, err := connect5(t, dialTLS(t, e.cert, e.tls(&dev.TLS)), dev.DeviceID, "", "")
	if err != nil {
		t.Fatalf("connecting %s: %v (%+v)", dev.DeviceID, err, ca)
	}
	return c
}

func (c *v5) subscribe(t *testing.T, filters ...string) []byte {
	t.Helper()
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := c.c.Subscribe(ctx, s)
	if err != nil && sa == nil {
		stuck(t, err)
		t.Fatalf("subscribing to %v: %v", filters, err)
	}
	return sa.Reasons
}

// stuck logs every goroutine's stack when a round trip to the broker
// timed out: the server runs in this process, so a stuck server shows
// where it waits.
func stuck(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, context.DeadlineExceeded) {
		return
	}
	buf := make([]byte, 8<<20)
	t.Logf("no answer from the broker in time; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
}

// publish sends a message and returns the PUBACK (QoS 1) or nil.
func (c *v5) publish(t *testing.T, topic string, qos byte, payload string) (*paho.PublishResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := c.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)})
	if err != nil {
		stuck(t, err)
	}
	return pr, err
}

func (c *v5) mustPublish(t *testing.T, topic string, qos byte, payload string) {
	t.Helper()
	if pr, err := c.publish(t, topic, qos, payload); err != nil {
		t.Fatalf("publishing to %s: %v (%+v)", topic, err, pr)
	}
}

// next waits for a message on topic (others are skipped).
func next(t *testing.T, inbox chan msg, topic string) msg {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-inbox:
			if m.topic == topic {
				return m
			}
		case <-deadline:
			t.Fatalf("no message on %s within 10s", topic)
		}
	}
}

// nextEach waits for one message on each of the topics, in any order;
// messages on other topics are skipped.
func nextEach(t *testing.T, inbox chan msg, topics ...string) map[string]msg {
	t.Helper()
	got := map[string]msg{}
	deadline := time.After(10 * time.Second)
	for len(got) < len(topics) {
		select {
		case m := <-inbox:
			for _, tp := range topics {
				if m.topic == tp {
					if _, seen := got[tp]; !seen {
						got[tp] = m
					}
				}
			}
		case <-deadline:
			t.Fatalf("within 10s got messages on %d of %v", len(got), topics)
		}
	}
	return got
}

// none checks that nothing arrives on topic for d.
func none(t *testing.T, inbox chan msg, topic string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-inbox:
			if m.topic == topic {
				t.Fatalf("unexpected message on %s: %s", topic, m.payload)
			}
		case <-deadline:
			return
		}
	}
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return m
}

// ---- MQTT 3.1.1 (paho.mqtt.golang) ----

type v3 struct {
	c     mqtt3.Client
	inbox chan msg
	lost  chan error
}

func (e *env) v3opts(clientID string, cfg *tls.Config, addr string) (*mqtt3.ClientOptions, *v3) {
	c := &v3{inbox: make(chan msg, 256), lost: make(chan error, 1)}
	o := mqtt3.NewClientOptions().AddBroker(addr).SetClientID(clientID).SetTLSConfig(cfg).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).
		SetConnectTimeout(10 * time.Second).SetKeepAlive(30 * time.Second).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) {
			c.inbox <- msg{topic: m.Topic(), payload: m.Payload(), retain: m.Retained(), qos: m.Qos()}
		}).
		SetConnectionLostHandler(func(_ mqtt3.Client, err error) {
			select {
			case c.lost <- err:
			default:
			}
		})
	return o, c
}

// connect3 connects an MQTT 3.1.1 client; it returns the connect token's error.
func connect3(t *testing.T, o *mqtt3.ClientOptions, c *v3) error {
	t.Helper()
	c.c = mqtt3.NewClient(o)
	tok := c.c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return fmt.Errorf("connect timed out")
	}
	if tok.Error() == nil {
		t.Cleanup(func() { c.c.Disconnect(100) })
	}
	return tok.Error()
}

func (e *env) deviceV3(t *testing.T, dev *testserver.EnrolledDevice) *v3 {
	t.Helper()
	o, c := e.v3opts(dev.DeviceID, e.tls(&dev.TLS), "ssl://"+e.cert)
	if err := connect3(t, o, c); err != nil {
		t.Fatalf("connecting %s (3.1.1): %v", dev.DeviceID, err)
	}
	return c
}

func (c *v3) subscribe(t *testing.T, filters ...string) {
	t.Helper()
	m := map[string]byte{}
	for _, f := range filters {
		m[f] = 1
	}
	tok := c.c.SubscribeMultiple(m, nil)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribing to %v: %v", filters, tok.Error())
	}
}

func (c *v3) publish(t *testing.T, topic string, qos byte, payload string) error {
	t.Helper()
	tok := c.c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("publish to %s: no acknowledgement within 10s", topic)
	}
	return tok.Error()
}

// ---- files for mosquitto ----

// pemFiles writes the CA, the device certificate and its key as PEM.
func (e *env) pemFiles(t *testing.T, dev *testserver.EnrolledDevice) (ca, cert, key string) {
	t.Helper()
	dir := filepath.Join(e.dir, dev.DeviceID)
	os.MkdirAll(dir, 0o700)
	ca, cert, key = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "device.crt"), filepath.Join(dir, "device.key")
	write := func(path, typ string, der []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(ca, "CERTIFICATE", e.srv.Platform.Identity.CA().Anchor().Raw)
	write(cert, "CERTIFICATE", dev.Cert.Raw)
	kder, err := x509.MarshalPKCS8PrivateKey(dev.Key)
	if err != nil {
		t.Fatal(err)
	}
	write(key, "PRIVATE KEY", kder)
	return ca, cert, key
}

// mosquitto returns the path of a mosquitto client; without it the test is
// skipped (failed under CI, where the setup script installs it).
func mosquitto(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (package mosquitto-clients; scripts/setup.sh installs it)", name)
		}
		t.Skipf("%s is not installed (package mosquitto-clients)", name)
	}
	return p
}

func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// ---- certificates the platform did not issue ----

// foreignCert is a client certificate for deviceID from another CA.
func foreignCert(t *testing.T, deviceID string) tls.Certificate {
	t.Helper()
	caCert, caKey := testserver.NewTestCA("Other CA")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: deviceID},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// events collects the platform's bus events of some types.
type events struct {
	mu  sync.Mutex
	evs []model.Event
}

func (e *env) watch(t *testing.T, types ...string) *events {
	t.Helper()
	w := &events{}
	stop, err := e.srv.Platform.Bus.SubscribeEvents(context.Background(), "", 0, func(ev model.Event) {
		for _, typ := range types {
			if ev.Type == typ {
				w.mu.Lock()
				w.evs = append(w.evs, ev)
				w.mu.Unlock()
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return w
}

// wait returns the first event of typ whose data contains all of want.
func (w *events) wait(t *testing.T, typ string, want ...string) model.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		for _, ev := range w.evs {
			if ev.Type != typ {
				continue
			}
			ok := true
			for _, s := range want {
				ok = ok && strings.Contains(string(ev.Data), s)
			}
			if ok {
				w.mu.Unlock()
				return ev
			}
		}
		w.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %s event with %v within 10s", typ, want)
	return model.Event{}
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
