package broker_test

import (
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// TestRefusedConnections: every way of connecting that must fail gets a
// CONNACK with the right reason code (and, on MQTT 5, a reason string),
// raises device.auth_failed, and leaves the broker serving.
func TestRefusedConnections(t *testing.T) {
	e := newEnv(t)
	w := e.watch(t, broker.EventAuthFailed)
	good := e.device(t)

	revoked := e.device(t)
	e.must(t, http.StatusOK, http.MethodPost, api+"/certificates/"+revoked.Serial+"/revoke", map[string]any{"reason": "key_compromise"})

	suspended := e.device(t)
	e.must(t, http.StatusOK, http.MethodPost, api+"/devices/"+suspended.DeviceID+"/transitions", map[string]any{"to": "suspended", "reason": "test"})

	// A certificate of the platform CA that expired yesterday.
	expiredDev := e.device(t)
	key := testserver.NewKey()
	past := time.Now().Add(-48 * time.Hour)
	expCert, err := e.srv.Platform.Identity.CA().IssueDevice(identity.DeviceCertRequest{DeviceID: expiredDev.DeviceID,
		PublicKey: key.Public(), Validity: 24 * time.Hour, Now: past})
	if err != nil {
		t.Fatal(err)
	}
	expired := testserver.Enrolled(expCert, key)

	tokenDev := e.device(t)
	token := e.must(t, http.StatusCreated, http.MethodPost, api+"/devices/"+tokenDev.DeviceID+"/token", nil).Str("token")

	other := foreignCert(t, good.DeviceID)
	cases := []struct {
		name     string
		addr     string
		cert     *tls.Certificate
		clientID string
		user     string
		pass     string
		v5, v3   byte
		reason   string
	}{
		{"no client certificate", e.cert, nil, good.DeviceID, "", "", 0x87, 0x05, "client certificate"},
		{"certificate of another CA", e.cert, &other, good.DeviceID, "", "", 0x87, 0x05, "not issued by this platform"},
		{"revoked certificate", e.cert, &revoked.TLS, revoked.DeviceID, "", "", 0x87, 0x05, "revoked"},
		{"expired certificate", e.cert, &expired.TLS, expired.DeviceID, "", "", 0x87, 0x05, "expired"},
		{"suspended device", e.cert, &suspended.TLS, suspended.DeviceID, "", "", 0x87, 0x05, "suspended"},
		{"client ID of another device", e.cert, &good.TLS, tokenDev.DeviceID, "", "", 0x85, 0x02, "must be the device ID"},
		{"no client ID", e.cert, &good.TLS, "", "", "", 0x85, 0x02, "must be the device ID"},
		{"wrong device token", e.token, nil, tokenDev.DeviceID, tokenDev.DeviceID, "stdt_wrong", 0x86, 0x04, "wrong device token"},
		{"token listener without credentials", e.token, nil, tokenDev.DeviceID, "", "", 0x86, 0x04, "user name"},
		{"token of another device", e.token, nil, good.DeviceID, good.DeviceID, token, 0x86, 0x04, "wrong device token"},
		{"bad API key", e.app, nil, "key_x", broker.AppUsername, "stw_nope", 0x86, 0x04, "API key"},
		{"application on a device listener", e.token, nil, "key_x", broker.AppUsername, "stw_nope", 0x86, 0x04, "application listener"},
		{"device on the application listener", e.app, nil, tokenDev.DeviceID, tokenDev.DeviceID, token, 0x86, 0x04, "API key"},
	}
	for _, c := range cases {
		t.Run(c.name+"/v5", func(t *testing.T) {
			_, ca, err := connect5(t, dialTLS(t, c.addr, e.tls(c.cert)), c.clientID, c.user, c.pass)
			if err == nil || ca == nil {
				t.Fatalf("connected: %v %+v", err, ca)
			}
			if ca.ReasonCode != c.v5 || ca.Properties == nil || !strings.Contains(ca.Properties.ReasonString, c.reason) {
				t.Fatalf("CONNACK 0x%02x %+v, want 0x%02x with a reason naming %q", ca.ReasonCode, ca.Properties, c.v5, c.reason)
			}
			t.Logf("refused: 0x%02x %q", ca.ReasonCode, ca.Properties.ReasonString)
			w.wait(t, broker.EventAuthFailed, c.reason)
		})
		t.Run(c.name+"/v3", func(t *testing.T) {
			scheme := "ssl://"
			o, cl := e.v3opts(c.clientID, e.tls(c.cert), scheme+c.addr)
			if c.user != "" {
				o.SetUsername(c.user).SetPassword(c.pass)
			}
			if c.clientID == "" {
				o.SetClientID("")
			}
			err := connect3(t, o, cl)
			if err == nil {
				t.Fatal("connected")
			}
			want := map[byte]string{0x02: "identifier rejected", 0x04: "bad user name or password", 0x05: "not Authorized"}[c.v3]
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("connect error %q, want return code 0x%02x (%s)", err, c.v3, want)
			}
		})
	}
	// Still serving: the good device connects and publishes.
	c := e.deviceV5(t, good)
	c.mustPublish(t, "d/"+good.DeviceID+"/telemetry", 1, `{"ok": 1}`)
	if got := e.latest(t, good.DeviceID); len(got) != 1 || got["ok"] != 1.0 {
		t.Fatalf("telemetry after the refusals: %v", got)
	}
}

// TestRefusedMessages: what a connected device may not do is refused with
// a reason code, reported on its errors topic, logged, and stores nothing.
func TestRefusedMessages(t *testing.T) {
	const limit = 4096
	e := newEnv(t, envOpts{configure: func(c *broker.Config) { c.MaxPayload = limit }})
	victim := e.device(t)
	dev := e.device(t)
	id := dev.DeviceID
	p := func(rest string) string { return "d/" + id + "/" + rest }

	t.Run("v5", func(t *testing.T) {
		c := e.deviceV5(t, dev)
		if r := c.subscribe(t, p("errors")); r[0] != 1 {
			t.Fatalf("errors SUBACK 0x%02x", r[0])
		}
		pubs := []struct {
			name, topic, payload string
			code                 byte
			reason               string
		}{
			{"another device's topic", "d/" + victim.DeviceID + "/telemetry", `{"x": 1}`, 0x87, ""},
			{"a topic outside the contract", p("twin/desired"), `{"x": 1}`, 0x87, ""},
			{"malformed JSON", p("telemetry"), `{"temperature": 21.5`, 0x99, "not a JSON object"},
			{"wrong value type", p("telemetry"), `{"temperature": [1, 2]}`, 0x99, "not an object or array"},
			{"malformed SenML", p("telemetry/senml"), `[{"n": "a", "v": "one"}]`, 0x99, "must be a number"},
			{"SenML that is not an array", p("telemetry/senml"), `{"n": "a"}`, 0x99, "SenML pack"},
			{"twin report that is not an object", p("twin/reported"), `[1]`, 0x99, "JSON object"},
			{"result of an unknown command", p("commands/cmd_nope/result"), `{"status": "succeeded"}`, 0x80, "no command"},
			{"malformed command result", p("commands/cmd_nope/result"), `{"status": "done"}`, 0x99, "succeeded"},
		}
		for _, x := range pubs {
			pr, err := c.publish(t, x.topic, 1, x.payload)
			if err == nil || pr == nil || pr.ReasonCode != x.code {
				t.Fatalf("%s: PUBACK %+v (%v), want 0x%02x", x.name, pr, err, x.code)
			}
			if x.reason != "" && (pr.Properties == nil || !strings.Contains(pr.Properties.ReasonString, x.reason)) {
				t.Fatalf("%s: reason %+v does not name %q", x.name, pr.Properties, x.reason)
			}
			t.Logf("%s: PUBACK 0x%02x %q", x.name, pr.ReasonCode, pr.Properties.ReasonString)
			time.Sleep(1100 * time.Millisecond / 10) // reports are limited to one a second; see below
		}
		// The first refusal was reported on the errors topic.
		rep := decode(t, next(t, c.inbox, p("errors")).payload)
		if rep["code"] != 135.0 || !strings.Contains(rep["reason"].(string), "not allowed") {
			t.Fatalf("error report: %v", rep)
		}
		for _, f := range []string{"#", "d/+/commands/+", "d/" + victim.DeviceID + "/commands/+", "+/" + id + "/commands/+"} {
			if r := c.subscribe(t, f); r[0] != 0x87 {
				t.Fatalf("subscribe %s: SUBACK 0x%02x, want 0x87", f, r[0])
			}
		}
	})

	t.Run("v3", func(t *testing.T) {
		c := e.deviceV3(t, dev)
		c.subscribe(t, p("errors"))
		if err := c.publish(t, p("telemetry"), 1, `{"broken": `); err != nil {
			t.Fatalf("a 3.1.1 QoS 1 refusal is acknowledged (the device must not resend it): %v", err)
		}
		rep := decode(t, next(t, c.inbox, p("errors")).payload)
		if rep["code"] != 153.0 || !strings.Contains(rep["reason"].(string), "not a JSON object") {
			t.Fatalf("error report: %v", rep)
		}
		tok := c.c.Subscribe("#", 1, nil)
		tok.WaitTimeout(5 * time.Second)
		if codes := tok.(interface{ Result() map[string]byte }).Result(); codes["#"] != 0x80 {
			t.Fatalf("subscribe # on 3.1.1: %v, want 0x80", codes)
		}
		// Publishing at QoS 1 to another device's topic ends a 3.1.1 session.
		c.c.Publish("d/"+victim.DeviceID+"/telemetry", 1, false, `{"x": 1}`)
		select {
		case err := <-c.lost:
			t.Logf("3.1.1 session closed: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("the 3.1.1 session survived publishing to another device's topic")
		}
	})

	t.Run("oversized", func(t *testing.T) {
		c := e.deviceV5(t, dev)
		big := `{"blob": "` + strings.Repeat("x", limit) + `"}`
		c.publish(t, p("telemetry"), 0, big)
		select {
		case d := <-c.disconnect:
			if d.ReasonCode != 0x95 || !strings.Contains(d.Properties.ReasonString, "larger than the limit") {
				t.Fatalf("DISCONNECT 0x%02x %+v, want 0x95", d.ReasonCode, d.Properties)
			}
			t.Logf("oversized: DISCONNECT 0x%02x %q", d.ReasonCode, d.Properties.ReasonString)
		case <-time.After(10 * time.Second):
			t.Fatal("no DISCONNECT after an oversized payload")
		}
		c3 := e.deviceV3(t, dev)
		c3.c.Publish(p("telemetry"), 0, false, big)
		select {
		case <-c3.lost:
		case <-time.After(10 * time.Second):
			t.Fatal("3.1.1 session survived an oversized payload")
		}
	})

	t.Run("client ID takeover by another identity", func(t *testing.T) {
		a := e.deviceV5(t, dev)
		_, ca, err := connect5(t, dialTLS(t, e.cert, e.tls(&victim.TLS)), id, "", "")
		if err == nil || ca == nil || ca.ReasonCode != 0x85 {
			t.Fatalf("takeover: %v %+v, want CONNACK 0x85", err, ca)
		}
		a.mustPublish(t, p("telemetry"), 1, `{"still_here": true}`)
	})

	// Nothing refused was stored; the broker keeps running.
	if got := e.latest(t, victim.DeviceID); len(got) != 0 {
		t.Fatalf("the victim has telemetry: %v", got)
	}
	if got := e.latest(t, id); len(got) != 1 || got["still_here"] != true {
		t.Fatalf("stored telemetry: %v", got)
	}
	tw := e.must(t, http.StatusOK, http.MethodGet, api+"/devices/"+id+"/twin", nil).Obj()
	if tw["reported"].(map[string]any)["version"] != 0.0 {
		t.Fatalf("a refused twin report was stored: %v", tw)
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, envOpts{configure: func(c *broker.Config) { c.RateLimit, c.RateBurst = 0.2, 3 }})
	dev := e.device(t)
	c := e.deviceV5(t, dev)
	var codes []byte
	for i := range 6 {
		pr, _ := c.publish(t, "d/"+dev.DeviceID+"/telemetry", 1, `{"n": `+string(rune('0'+i))+`}`)
		codes = append(codes, pr.ReasonCode)
	}
	if codes[0] != 0 || codes[2] != 0 || codes[5] != 0x97 {
		t.Fatalf("PUBACK codes %x, want the burst of 3 accepted, then 0x97", codes)
	}
}

// TestRevocationClosesSession revokes the certificate of a connected
// device through the API and measures how long its session lives on.
// ended reports, once, how the client's session ended.
func (c *v5) ended() <-chan string {
	how := make(chan string, 1)
	go func() {
		select {
		case d := <-c.disconnect:
			how <- "DISCONNECT " + d.Properties.ReasonString
		case <-c.c.Done():
			how <- "connection closed"
		}
	}()
	return how
}

// ended reports, once, how the client's session ended.
func (c *v3) ended() <-chan string {
	how := make(chan string, 1)
	go func() { err := <-c.lost; how <- "connection lost: " + err.Error() }()
	return how
}

// revokeEnds revokes dev's certificate through the API and waits until
// its session, named session in the messages, has ended.
func revokeEnds(t *testing.T, e *env, dev *testserver.EnrolledDevice, ended <-chan string, session string) {
	t.Helper()
	start := time.Now()
	e.must(t, http.StatusOK, http.MethodPost, api+"/certificates/"+dev.Serial+"/revoke", map[string]any{"reason": "key_compromise"})
	select {
	case how := <-ended:
		t.Logf("%s closed %v after the revocation request was sent (%s)", session, time.Since(start).Round(time.Millisecond), how)
	case <-time.After(10 * time.Second):
		t.Fatalf("the %s of a revoked certificate is still open after 10s", session)
	}
}

func TestRevocationClosesSession(t *testing.T) {
	e := newEnv(t)
	for _, proto := range []string{"v5", "v3"} {
		t.Run(proto, func(t *testing.T) {
			dev := e.device(t)
			var ended <-chan string
			if proto == "v5" {
				ended = e.deviceV5(t, dev).ended()
			} else {
				ended = e.deviceV3(t, dev).ended()
			}
			revokeEnds(t, e, dev, ended, "MQTT "+proto+" session")
			// And it cannot come back.
			_, ca, err := connect5(t, dialTLS(t, e.cert, e.tls(&dev.TLS)), dev.DeviceID, "", "")
			if err == nil || ca.ReasonCode != 0x87 {
				t.Fatalf("reconnect with a revoked certificate: %v %+v", err, ca)
			}
		})
	}
}

// TestQuarantine: a quarantined device keeps only ota/; release closes the
// session so that it reconnects with its full rights.
func TestQuarantine(t *testing.T) {
	e := newEnv(t)
	dev := e.device(t)
	id := dev.DeviceID
	p := func(rest string) string { return "d/" + id + "/" + rest }
	e.must(t, http.StatusOK, http.MethodPost, api+"/devices/"+id+"/transitions", map[string]any{"to": "active", "reason": "test"})
	c := e.deviceV5(t, dev)
	c.subscribe(t, p("commands/+"), p("ota/#"))
	w := e.watch(t, "device.state_changed")
	e.must(t, http.StatusOK, http.MethodPost, api+"/devices/"+id+"/transitions", map[string]any{"to": "quarantined", "reason": "odd traffic"})
	w.wait(t, "device.state_changed", `"to":"quarantined"`)
	eventually(t, "telemetry refused once quarantined", func() bool {
		pr, _ := c.publish(t, p("telemetry"), 1, `{"x": 1}`)
		return pr != nil && pr.ReasonCode == 0x87
	})
	// ota/status stays open: the report is read (and refused for what it
	// says: this device has no update), not refused by the ACL.
	if pr, err := c.publish(t, p("ota/status"), 1, `{"status": "downloading", "artifact_id": "art_x"}`); pr == nil || pr.ReasonCode == 0x87 {
		t.Fatalf("ota/status while quarantined: %v %+v", err, pr)
	}
	if r := c.subscribe(t, p("commands/+")); r[0] != 0x87 {
		t.Fatalf("subscribing to commands while quarantined: 0x%02x", r[0])
	}
	cid := e.must(t, http.StatusCreated, http.MethodPost, api+"/devices/"+id+"/commands", map[string]any{"name": "reboot"}).Str("id")
	none(t, c.inbox, "", 500*time.Millisecond) // drain
	for len(c.inbox) > 0 {
		if m := <-c.inbox; strings.Contains(m.topic, "/commands/") {
			t.Fatalf("a quarantined device got a command: %s", m.topic)
		}
	}
	// Release: the session is closed with 0x98, a new one has full rights.
	e.must(t, http.StatusOK, http.MethodPost, api+"/devices/"+id+"/transitions", map[string]any{"to": "active", "reason": "clean"})
	select {
	case d := <-c.disconnect:
		if d.ReasonCode != 0x98 {
			t.Fatalf("release: DISCONNECT 0x%02x", d.ReasonCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no DISCONNECT after the quarantine was lifted")
	}
	c2 := e.deviceV5(t, dev)
	c2.subscribe(t, p("commands/+"))
	next(t, c2.inbox, p("commands/"+cid)) // the queued command arrives now
}

// TestTokenAndApplications: a device on the token listener, and an
// application reading its tenant's telemetry with an API key.
func TestTokenAndApplications(t *testing.T) {
	e := newEnv(t)
	dev := e.device(t)
	token := e.must(t, http.StatusCreated, http.MethodPost, api+"/devices/"+dev.DeviceID+"/token", nil).Str("token")

	// Another tenant's application sees nothing of this tenant.
	otherTen := e.srv.CreateTenant(t, "other")
	mine := e.srv.CreateKey(t, e.ten.ID, "viewer")
	theirs := e.srv.CreateKey(t, otherTen.ID, "viewer")
	app, ca, err := connect5(t, dialTLS(t, e.app, e.tls(nil)), mine.ID+"-pipeline", broker.AppUsername, mine.Secret)
	if err != nil {
		t.Fatalf("application connect: %v %+v", err, ca)
	}
	if r := app.subscribe(t, "d/+/telemetry", "d/+/commands/+"); r[0] != 1 || r[1] != 0x87 {
		t.Fatalf("application SUBACK %x, want telemetry granted and commands refused", r)
	}
	spy, _, err := connect5(t, dialTLS(t, e.app, e.tls(nil)), theirs.ID+"-spy", broker.AppUsername, theirs.Secret)
	if err != nil {
		t.Fatal(err)
	}
	spy.subscribe(t, "d/+/telemetry", "d/"+dev.DeviceID+"/telemetry")
	if pr, err := app.publish(t, "d/"+dev.DeviceID+"/telemetry", 1, `{"fake": 1}`); err == nil || pr.ReasonCode != 0x87 {
		t.Fatalf("an application published: %v %+v", err, pr)
	}

	c, ca, err := connect5(t, dialTLS(t, e.token, e.tls(nil)), dev.DeviceID, dev.DeviceID, token)
	if err != nil {
		t.Fatalf("token connect: %v %+v", err, ca)
	}
	// The device listens under its whole prefix: its telemetry, of either
	// QoS, reaches the application and the store, not the device again.
	if r := c.subscribe(t, "d/"+dev.DeviceID+"/#"); r[0] != 1 {
		t.Fatalf("device SUBACK %x", r)
	}
	c.mustPublish(t, "d/"+dev.DeviceID+"/telemetry", 1, `{"via": "token"}`)
	got := next(t, app.inbox, "d/"+dev.DeviceID+"/telemetry")
	if string(got.payload) != `{"via": "token"}` {
		t.Fatalf("application got %s", got.payload)
	}
	c.mustPublish(t, "d/"+dev.DeviceID+"/telemetry", 0, `{"qos0": 1}`)
	if got := next(t, app.inbox, "d/"+dev.DeviceID+"/telemetry"); string(got.payload) != `{"qos0": 1}` {
		t.Fatalf("application got %s", got.payload)
	}
	eventually(t, "the QoS 0 point is stored", func() bool { return e.latest(t, dev.DeviceID)["qos0"] == 1.0 })
	none(t, spy.inbox, "d/"+dev.DeviceID+"/telemetry", 300*time.Millisecond)
	none(t, c.inbox, "d/"+dev.DeviceID+"/telemetry", 100*time.Millisecond)
	conn := e.must(t, http.StatusOK, http.MethodGet, api+"/devices/"+dev.DeviceID+"/connection", nil).Obj()
	if conn["method"] != "token" || conn["listener"] != broker.ListenerToken {
		t.Fatalf("connection: %v", conn)
	}

	// The plaintext listener (only when configured) takes tokens, never
	// the identity a client merely claims.
	raw, err := net.Dial("tcp", e.plain)
	if err != nil {
		t.Fatal(err)
	}
	if _, ca, err := connect5(t, raw, dev.DeviceID, dev.DeviceID, "stdt_guess"); err == nil || ca.ReasonCode != 0x86 {
		t.Fatalf("plaintext with a wrong token: %v %+v", err, ca)
	}
	raw, _ = net.Dial("tcp", e.plain)
	p, ca, err := connect5(t, raw, dev.DeviceID, dev.DeviceID, token)
	if err != nil {
		t.Fatalf("plaintext with the token: %v %+v", err, ca)
	}
	p.mustPublish(t, "d/"+dev.DeviceID+"/telemetry", 1, `{"via": "plain"}`)
}

// TestWebSocket connects paho.mqtt.golang over wss with a client certificate.
func TestWebSocket(t *testing.T) {
	e := newEnv(t)
	dev := e.device(t)
	o, c := e.v3opts(dev.DeviceID, e.tls(&dev.TLS), "wss://"+e.ws+"/mqtt")
	if err := connect3(t, o, c); err != nil {
		t.Fatalf("wss connect: %v", err)
	}
	if err := c.publish(t, "d/"+dev.DeviceID+"/telemetry", 1, `{"via": "wss"}`); err != nil {
		t.Fatal(err)
	}
	if got := e.latest(t, dev.DeviceID); got["via"] != "wss" {
		t.Fatalf("latest: %v", got)
	}
}

// TestOfflineCommands: commands wait for an offline device and are
// delivered when it subscribes, unless they expired first.
func TestOfflineCommands(t *testing.T) {
	e := newEnv(t)
	dev := e.device(t)
	id := dev.DeviceID
	short := e.must(t, http.StatusCreated, http.MethodPost, api+"/devices/"+id+"/commands", map[string]any{"name": "short", "expires_in_seconds": 1}).Str("id")
	long := e.must(t, http.StatusCreated, http.MethodPost, api+"/devices/"+id+"/commands", map[string]any{"name": "long", "timeout_seconds": 1}).Str("id")
	eventually(t, "the short command expired", func() bool {
		return e.must(t, http.StatusOK, http.MethodGet, api+"/devices/"+id+"/commands/"+short, nil).Str("status") == "expired"
	})
	c := e.deviceV5(t, dev)
	c.subscribe(t, "d/"+id+"/commands/+")
	m := next(t, c.inbox, "d/"+id+"/commands/"+long)
	if decode(t, m.payload)["name"] != "long" || m.qos != 1 {
		t.Fatalf("delivered: %s (QoS %d)", m.payload, m.qos)
	}
	none(t, c.inbox, "d/"+id+"/commands/"+short, 300*time.Millisecond)
	// Not answered within its timeout: timed out, and a late answer is refused.
	eventually(t, "the long command timed out", func() bool {
		return e.must(t, http.StatusOK, http.MethodGet, api+"/devices/"+id+"/commands/"+long, nil).Str("status") == "timed_out"
	})
	if pr, err := c.publish(t, "d/"+id+"/commands/"+long+"/result", 1, `{"status":"succeeded"}`); err == nil || pr.ReasonCode != 0x80 {
		t.Fatalf("late answer: %v %+v", err, pr)
	}
	list := e.must(t, http.StatusOK, http.MethodGet, api+"/devices/"+id+"/commands", nil).Items()
	if len(list) != 2 || list[0]["id"] != long {
		t.Fatalf("command list: %v", list)
	}
}
