package retire_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/config"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

const api = testserver.APIPrefix

type env struct {
	srv   *testserver.Server
	roots *x509.CertPool
	cert  string // MQTT certificate listener
	token string // MQTT token listener
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := testserver.Start(t, testserver.Options{Configure: func(c *config.Config) {
		c.MQTT.Listen, c.MQTT.TokenListen = "127.0.0.1:0", "127.0.0.1:0"
	}})
	e := &env{srv: srv, roots: x509.NewCertPool(), cert: srv.Platform.MQTTAddr(broker.ListenerCert),
		token: srv.Platform.MQTTAddr(broker.ListenerToken)}
	e.roots.AddCert(srv.Platform.Identity.CA().Anchor())
	if e.cert == "" || e.token == "" {
		t.Fatal("MQTT listeners not up")
	}
	return e
}

// mqttClient is a device's MQTT 5 connection; commands received are
// answered by answer (when set).
type mqttClient struct {
	c      *paho.Client
	closed chan struct{}
}

// connect opens an MQTT 5 session over TLS (with cert, or with the device
// token as password); it returns the CONNACK reason code on refusal.
func (e *env) connect(t *testing.T, addr string, cert *tls.Certificate, deviceID, token string,
	answer func(c *paho.Client, p *paho.Publish)) (*mqttClient, byte, error) {
	t.Helper()
	cfg := &tls.Config{RootCAs: e.roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, 0, err
	}
	m := &mqttClient{closed: make(chan struct{})}
	m.c = paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), // packets written whole
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			if answer != nil {
				go answer(m.c, p.Packet)
			}
			return true, nil
		}},
		OnServerDisconnect: func(*paho.Disconnect) { close(m.closed) },
		OnClientError:      func(error) {},
	})
	cp := &paho.Connect{ClientID: deviceID, KeepAlive: 30, CleanStart: true}
	if token != "" {
		cp.Username, cp.UsernameFlag, cp.Password, cp.PasswordFlag = deviceID, true, []byte(token), true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := m.c.Connect(ctx, cp)
	if err != nil {
		code := byte(0)
		if ca != nil {
			code = ca.ReasonCode
		}
		return nil, code, err
	}
	t.Cleanup(func() { m.c.Disconnect(&paho.Disconnect{}) })
	return m, 0, nil
}

func (m *mqttClient) publish(t *testing.T, topic, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

func (m *mqttClient) subscribe(t *testing.T, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
}

// wipeAgent answers the wipe command the way steward agent does.
func wipeAgent(c *paho.Client, p *paho.Publish) {
	rest, ok := strings.CutPrefix(p.Topic, "d/")
	if !ok {
		return
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[1] != "commands" {
		return
	}
	var cmd struct {
		Name string `json:"name"`
	}
	json.Unmarshal(p.Payload, &cmd)
	status := `{"status": "failed", "error": "unknown command"}`
	if cmd.Name == "wipe" {
		status = `{"status": "succeeded", "result": {"erased": ["keys", "state"]}}`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.Publish(ctx, &paho.Publish{Topic: p.Topic + "/result", QoS: 1, Payload: []byte(status)})
}

func refused(t *testing.T, what string, code byte, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: connected", what)
	}
	if code != 0x87 && code != 0x86 {
		t.Fatalf("%s: refused with 0x%02x (%v), want not authorized", what, code, err)
	}
}

func auditOK(t *testing.T, srv *testserver.Server, key string) {
	t.Helper()
	res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/audit/verify", Key: key})
	if ok, _ := res.Obj()["ok"].(bool); !ok {
		t.Fatalf("audit chain: %s", res)
	}
}

func auditHas(t *testing.T, srv *testserver.Server, key, action string) {
	t.Helper()
	res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/audit?limit=1000", Key: key})
	for _, it := range res.Items() {
		if it["action"] == action {
			return
		}
	}
	t.Fatalf("no %s audit record", action)
}

// TestDecommission: a connected device is wiped, its identity revoked,
// its data exported and erased, and it stays as a tombstone. Afterwards
// its certificate neither connects nor re-enrolls and its token fails;
// the audit chain is intact.
func TestDecommission(t *testing.T) {
	e := newEnv(t)
	srv := e.srv
	ten := srv.CreateTenant(t, "plant")
	key := ten.Admin.Secret
	prod := srv.CreateProduct(t, ten.ID)
	dev := srv.EnrollWithToken(t, ten.ID, prod.ID, srv.Unique("SN"))
	token := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + dev.DeviceID + "/token",
		Key: key}).Str("token")

	c, _, err := e.connect(t, e.cert, &dev.TLS, dev.DeviceID, "", wipeAgent)
	if err != nil {
		t.Fatal(err)
	}
	c.subscribe(t, "d/"+dev.DeviceID+"/commands/+")
	c.publish(t, "d/"+dev.DeviceID+"/telemetry", `{"temperature": 21.5}`)
	c.publish(t, "d/"+dev.DeviceID+"/twin/reported", `{"firmware": "1.0"}`)
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + dev.DeviceID + "/transitions",
		Key: key, Body: map[string]any{"to": "active", "reason": "test"}})

	start := time.Now()
	res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + dev.DeviceID + "/decommission",
		Key: key, Body: map[string]any{"data": "export", "reason": "replaced"}})
	t.Logf("decommission with a wipe answered by the device and an export: %s", time.Since(start))
	var out struct {
		Device              model.Device `json:"device"`
		Wipe                struct{ Status, CommandID string }
		CertificatesRevoked int  `json:"certificates_revoked"`
		TokenRevoked        bool `json:"token_revoked"`
		Erased              model.DeviceDataCounts
		Export              struct {
			Format    string
			Device    model.Device
			Twin      model.Twin
			Telemetry map[string][]struct{ Value any }
			Commands  []model.Command
		}
	}
	res.Into(t, &out)
	if out.Device.State != model.StateDecommissioned || out.Wipe.Status != "succeeded" || out.CertificatesRevoked != 1 || !out.TokenRevoked {
		t.Fatalf("decommission: %s", res)
	}
	if out.Export.Format != "steward-device-export/1" || out.Export.Device.ID != dev.DeviceID ||
		len(out.Export.Telemetry["temperature"]) != 1 || out.Export.Telemetry["temperature"][0].Value != 21.5 ||
		!strings.Contains(string(out.Export.Twin.Reported), "1.0") || len(out.Export.Commands) != 1 || out.Export.Commands[0].Name != "wipe" {
		t.Fatalf("export: %+v", out.Export)
	}
	if out.Erased.TelemetryPoints != 1 || out.Erased.Commands != 1 || out.Erased.Twin != 1 {
		t.Fatalf("erased: %+v", out.Erased)
	}
	select { // the live session ends
	case <-c.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the decommissioned device's session is still open")
	}

	// The old identity is refused everywhere.
	_, code, err := e.connect(t, e.cert, &dev.TLS, dev.DeviceID, "", nil)
	refused(t, "old certificate over MQTT", code, err)
	_, code, err = e.connect(t, e.token, nil, dev.DeviceID, token, nil)
	refused(t, "old token over MQTT", code, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := srv.ESTClient(&dev.TLS).SimpleReenroll(ctx, testserver.NewCSR(testserver.NewKey(), "")); err == nil {
		t.Fatal("the old certificate re-enrolled over EST")
	}

	// The tombstone stays readable; the erase left nothing.
	d := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/devices/" + dev.DeviceID, Key: key})
	if d.Str("state") != "decommissioned" {
		t.Fatalf("tombstone: %s", d)
	}
	x := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/devices/" + dev.DeviceID + "/export", Key: key})
	var again struct {
		Telemetry    map[string]any
		Commands     []any
		Transitions  []any
		Certificates []struct {
			RevokedAt *time.Time `json:"revoked_at"`
		}
	}
	x.Into(t, &again)
	if len(again.Telemetry) != 0 || len(again.Commands) != 0 || len(again.Transitions) < 2 || len(again.Certificates) != 1 ||
		again.Certificates[0].RevokedAt == nil {
		t.Fatalf("after the erase: %s", x)
	}
	auditHas(t, srv, key, "device.decommission")
	auditOK(t, srv, key)

	// A second device, offline: no wipe sent, data kept.
	other := srv.EnrollWithToken(t, ten.ID, prod.ID, srv.Unique("SN"))
	res = srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + other.DeviceID + "/decommission",
		Key: key, Body: map[string]any{"data": "keep"}})
	if !strings.Contains(res.String(), `"not_connected"`) || strings.Contains(res.String(), `"erased"`) {
		t.Fatalf("offline decommission: %s", res)
	}
	// Bad input changes nothing.
	third := srv.CreateDevice(t, ten.ID, prod.ID)
	bad := srv.Do(t, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + third.ID + "/decommission", Key: key,
		Body: map[string]any{"data": "shred"}})
	if bad.Status != http.StatusUnprocessableEntity || !strings.Contains(bad.String(), "data") {
		t.Fatalf("bad data choice: %s", bad)
	}
	if s := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/devices/" + third.ID, Key: key}).Str("state"); s != "manufactured" {
		t.Fatalf("a refused decommission moved the device to %s", s)
	}
}

// TestTransfer: a household releases a device; the new owner claims it
// with the new code and sees none of the old owner's data; the old
// owner's key and the old device identity are refused.
func TestTransfer(t *testing.T) {
	e := newEnv(t)
	srv := e.srv
	vendor := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/tenants", Key: srv.AdminKey,
		Body: map[string]any{"name": srv.Unique("maker"), "kind": "vendor"}}).Str("id")
	prod := srv.CreateProduct(t, vendor)
	dev := srv.CreateDevice(t, vendor, prod.ID)
	code1 := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + dev.ID + "/claim-code",
		Key: srv.AdminKey, Tenant: vendor}).Str("code")
	alice, bob := srv.CreateTenant(t, "alice"), srv.CreateTenant(t, "bob")
	ak, bk := alice.Admin.Secret, bob.Admin.Secret

	// Alice claims it; the device enrolls with its serial and the code.
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/claims", Key: ak, Body: map[string]any{"code": code1}})
	enroll := func(code string) *testserver.EnrolledDevice {
		t.Helper()
		k := testserver.NewKey()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		basic := "Basic " + basicAuth(dev.Serial, code)
		cert, err := srv.ESTClient(nil).SimpleEnroll(ctx, testserver.NewCSR(k, dev.Serial), basic)
		if err != nil {
			t.Fatalf("enrolling with the claim code: %v", err)
		}
		return testserver.Enrolled(cert, k)
	}
	old := enroll(code1)
	c, _, err := e.connect(t, e.cert, &old.TLS, dev.ID, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.publish(t, "d/"+dev.ID+"/telemetry", `{"power_w": 7}`)
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPatch, Path: api + "/devices/" + dev.ID + "/twin/desired", Key: ak,
		Body: map[string]any{"schedule": "alice's"}})
	srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + dev.ID + "/commands", Key: ak,
		Body: map[string]any{"name": "reboot"}})
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPatch, Path: api + "/devices/" + dev.ID, Key: ak,
		Body: map[string]any{"name": "Alice's kitchen plug", "tags": []string{"kitchen"}}})

	// Alice releases it and gets a new code, once.
	start := time.Now()
	rel := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + dev.ID + "/release", Key: ak,
		Body: map[string]any{"reason": "sold"}})
	t.Logf("release: %s", time.Since(start))
	code2 := rel.Str("claim_code")
	if code2 == "" || code2 == code1 || rel.Obj()["certificates_revoked"] != 1.0 {
		t.Fatalf("release: %s", rel)
	}
	select {
	case <-c.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the released device's session is still open")
	}

	// Alice's key no longer reaches the device or its data.
	for _, p := range []string{"", "/twin", "/commands", "/telemetry/latest", "/certificates", "/export"} {
		if r := srv.Do(t, testserver.Req{Method: http.MethodGet, Path: api + "/devices/" + dev.ID + p, Key: ak}); r.Status != http.StatusNotFound {
			t.Fatalf("old owner GET %s: %d %s", p, r.Status, r)
		}
	}
	if r := srv.Do(t, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + dev.ID + "/commands", Key: ak,
		Body: map[string]any{"name": "reboot"}}); r.Status != http.StatusNotFound {
		t.Fatalf("old owner sends a command: %d", r.Status)
	}
	// The old identity is refused: MQTT and EST.
	_, code, err := e.connect(t, e.cert, &old.TLS, dev.ID, "", nil)
	refused(t, "old certificate over MQTT", code, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := srv.ESTClient(&old.TLS).SimpleReenroll(ctx, testserver.NewCSR(testserver.NewKey(), "")); err == nil {
		t.Fatal("the old certificate re-enrolled")
	}
	// The old code does not claim it again.
	if r := srv.Do(t, testserver.Req{Method: http.MethodPost, Path: api + "/claims", Key: bk, Body: map[string]any{"code": code1}}); r.Status < 400 {
		t.Fatalf("old claim code: %d", r.Status)
	}

	// Bob claims it with the new code and sees a clean device.
	got := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/claims", Key: bk, Body: map[string]any{"code": code2}})
	if got.Str("id") != dev.ID || got.Str("name") != "" || strings.Contains(string(got.Raw), "kitchen") {
		t.Fatalf("claimed: %s", got)
	}
	for p, mustNot := range map[string]string{"/twin": "alice", "/commands": "reboot", "/telemetry/latest": "power_w",
		"/certificates": old.Serial, "/export": "Alice"} {
		r := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/devices/" + dev.ID + p, Key: bk})
		if strings.Contains(string(r.Raw), mustNot) {
			t.Fatalf("new owner sees the old owner's data at %s: %s", p, r)
		}
	}
	for _, it := range srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/audit?limit=1000", Key: bk}).Items() {
		if it["action"] == "device.release" {
			t.Fatal("the new owner's audit trail holds the old owner's records")
		}
	}
	// The device enrolls anew for Bob and connects.
	fresh := enroll(code2)
	if _, _, err := e.connect(t, e.cert, &fresh.TLS, dev.ID, "", nil); err != nil {
		t.Fatalf("the new identity: %v", err)
	}
	auditHas(t, srv, ak, "device.release")
	auditOK(t, srv, ak)
	auditOK(t, srv, bk)
}

func basicAuth(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}
