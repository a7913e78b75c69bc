package web_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/config"
	"github.com/steward-iot/steward/internal/detect"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// TestBrowserLiveConnectionsAndAlarms keeps a device page open while a
// real device connects over MQTT and disconnects, and while an alarm is
// raised for it: the online marker, the navigation's count of open alarms
// and the new-alarm notice change without a reload.
func TestBrowserLiveConnectionsAndAlarms(t *testing.T) {
	t.Parallel()
	browser := startBrowser(t)
	srv := testserver.Start(t, testserver.Options{Configure: func(c *config.Config) { c.MQTT.Listen = "127.0.0.1:0" }})
	addr := srv.Platform.MQTTAddr(broker.ListenerCert)
	if addr == "" {
		t.Fatal("the MQTT certificate listener is not up")
	}
	tenant := srv.CreateTenant(t, "live")
	product := srv.CreateProduct(t, tenant.ID)
	srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/users",
		Key: tenant.Admin.Secret, Body: map[string]any{"email": "owen@live.example", "name": "Owen",
			"role": model.RoleOperator, "password": password}})
	dev := srv.EnrollWithToken(t, tenant.ID, product.ID, "L1-0001")

	op := newPerson(t, browser, srv.URL)
	op.signIn("owen@live.example", password)
	seen := fmt.Sprintf(`[data-device-seen=%q]`, dev.DeviceID)
	op.run("watching the device page",
		chromedp.Navigate(srv.URL+"/devices/"+dev.DeviceID),
		chromedp.WaitVisible(css(`#live-status[data-state="live"]`)),
		chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))
	if got := op.text(seen); got != "never" {
		t.Fatalf("before connecting, last seen says %q, want never", got)
	}
	if got := js[string](op, "reading the alarm count", `document.getElementById("nav-alarms").getAttribute("data-open-alarms")`); got != "0" {
		t.Fatalf("the navigation counts %s open alarms, want 0", got)
	}
	if js[bool](op, "is the count shown", `!document.getElementById("nav-alarms").hidden`) {
		t.Fatal("a count of no open alarms is shown")
	}

	// The device connects with its certificate.
	roots := x509.NewCertPool()
	roots.AddCert(srv.Platform.Identity.CA().Anchor())
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{dev.TLS}})
	if err != nil {
		t.Fatalf("dialling the broker: %v", err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), OnClientError: func(error) {}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: dev.DeviceID, KeepAlive: 30, CleanStart: true}); err != nil {
		t.Fatalf("connecting the device: %v", err)
	}
	get(op, "waiting for the device to show online", chromedp.Poll[bool](fmt.Sprintf(
		`document.querySelector(%q).getAttribute("data-online") === "yes"`, seen), chromedp.WithPollingTimeout(15*time.Second)))
	if got := op.text(seen); got != "online now" {
		t.Fatalf("a connected device's last seen says %q", got)
	}
	if got := op.text(`#live-region`); !strings.Contains(got, "online") {
		t.Fatalf("the live region announced %q, want online", got)
	}
	op.screenshot("device-online-live")

	// Behaviour detection raises an alarm for it.
	if _, err := srv.Platform.Alarms.Raise(ctx, detect.Decision{Raise: true, TenantID: tenant.ID, DeviceID: dev.DeviceID,
		Kind: model.AlarmMessageRate, At: time.Now(), Title: "sends far more messages than usual",
		Evidence: map[string]any{"messages_per_minute": 900}}); err != nil {
		t.Fatalf("raising an alarm: %v", err)
	}
	get(op, "waiting for the alarm count", chromedp.Poll[bool](
		`document.getElementById("nav-alarms").getAttribute("data-open-alarms") === "1" && !document.getElementById("nav-alarms").hidden`,
		chromedp.WithPollingTimeout(15*time.Second)))
	if got := js[string](op, "reading the count", `document.getElementById("nav-alarms").textContent`); got != "1 open" {
		t.Fatalf("the navigation's alarm count reads %q, want \"1 open\"", got)
	}
	if !js[bool](op, "is the notice shown", `!document.getElementById("alarm-notice").hidden`) {
		t.Fatal("the device page does not say that a new alarm arrived")
	}
	if got := op.text(`#live-region`); !strings.Contains(got, "sends far more messages than usual") {
		t.Fatalf("the live region announced %q, want the alarm", got)
	}
	op.screenshot("device-alarm-live")

	// The device leaves.
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatalf("disconnecting: %v", err)
	}
	get(op, "waiting for the device to show offline", chromedp.Poll[bool](fmt.Sprintf(
		`document.querySelector(%q).getAttribute("data-online") === "no"`, seen), chromedp.WithPollingTimeout(15*time.Second)))
	if !js[bool](op, "checking the page was not reloaded", `window.notReloaded === true`) {
		t.Fatal("the page was reloaded; the changes must arrive over the event stream")
	}

	// A page made now counts the open alarm itself.
	op.run("opening the alarms page", chromedp.Navigate(srv.URL+"/alarms"), chromedp.WaitVisible(css(`#alarms`)))
	if got := js[string](op, "reading the alarm count", `document.getElementById("nav-alarms").getAttribute("data-open-alarms")`); got != "1" {
		t.Fatalf("a fresh page counts %s open alarms, want 1", got)
	}
}
