package sim

import (
	"context"
	"crypto/x509"
	"errors"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/config"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

func TestParseMixAndAssign(t *testing.T) {
	m, err := ParseMix("well=85, flaky=10,outdated=4,compromised=1")
	if err != nil {
		t.Fatal(err)
	}
	got := map[Behaviour]int{}
	for _, b := range m.assign(1000, rand.New(rand.NewPCG(1, 2))) {
		got[b]++
	}
	want := map[Behaviour]int{WellBehaved: 850, Flaky: 100, Outdated: 40, Compromised: 10}
	for b, n := range want {
		if got[b] != n {
			t.Errorf("%s: %d devices, want %d (all: %v)", b, got[b], n, got)
		}
	}
	// Every behaviour with a weight gets at least one device, and the
	// total is exact.
	got = map[Behaviour]int{}
	bs := DefaultMix.assign(7, rand.New(rand.NewPCG(1, 2)))
	for _, b := range bs {
		got[b]++
	}
	if len(bs) != 7 || got[Compromised] != 1 || got[Flaky] != 1 || got[Outdated] != 1 {
		t.Errorf("assign(7) = %v", got)
	}
	for _, bad := range []string{"", "well", "evil=1", "well=-1", "well=x"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q) accepted", bad)
		}
	}
}

// TestSimAgainstServer runs a small fleet against a real platform: every
// device enrolls over EST, connects with its certificate, reports its twin
// and telemetry, and answers a command sent through the API.
func TestSimAgainstServer(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{Configure: func(c *config.Config) { c.MQTT.Listen = "127.0.0.1:0" }})
	ten := srv.CreateTenant(t, "sim")
	prod := srv.CreateProduct(t, ten.ID)
	// Detection judges at once (no learning period), so that the
	// compromised devices' reports raise alarms within the test.
	det := model.DefaultDetectionSettings()
	det.LearningMinutes = 0
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: testserver.APIPrefix + "/security/settings", Key: ten.Admin.Secret,
		Body: map[string]any{"stale_after_days": 7, "max_tenant_admin_keys": 3, "unused_key_days": 90, "flow_window_hours": 24, "detection": det}})
	tokens, err := APITokens(srv.URL, srv.AdminKey, ten.ID, prod.ID)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(srv.Platform.Identity.CA().Anchor())

	const n = 24
	var progress strings.Builder
	cfg := Config{Devices: n, ESTURL: srv.Platform.ESTURL(), Tokens: tokens,
		MQTT: []string{srv.Platform.MQTTAddr(broker.ListenerCert)}, Roots: roots, Interval: 200 * time.Millisecond,
		Mix: Mix{WellBehaved: 70, Flaky: 10, Outdated: 10, Compromised: 10}, Seed: 7,
		IdentityFile: filepath.Join(t.TempDir(), "ids.json"), Progress: &progress, ProgressEvery: 500 * time.Millisecond}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	defer func() {
		if t.Failed() {
			t.Logf("stats: %+v\nprogress:\n%s", s.Stats(), progress.String())
		}
	}()
	testserver.Eventually(t, 30*time.Second, func() bool { st := s.Stats(); return st.Enrolled == n && st.Online >= n-3 },
		"every device enrolled and (but for flaky ones) online")
	testserver.Eventually(t, 10*time.Second, func() bool { return s.Stats().Acked > 3*n }, "telemetry acknowledged")

	// A command through the API to a well-behaved device is answered.
	id := s.DeviceIDs()[WellBehaved][0]
	cid := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/devices/" + id + "/commands",
		Key: srv.AdminKey, Tenant: ten.ID, Body: map[string]any{"name": "reboot"}}).Str("id")
	testserver.Eventually(t, 10*time.Second, func() bool {
		r := srv.Do(t, testserver.Req{Method: http.MethodGet, Path: testserver.APIPrefix + "/devices/" + id + "/commands/" + cid,
			Key: srv.AdminKey, Tenant: ten.ID})
		return r.Status == http.StatusOK && r.Str("status") == "succeeded"
	}, "the simulated device answered the command")
	// Its telemetry is stored.
	testserver.Eventually(t, 10*time.Second, func() bool {
		r := srv.Do(t, testserver.Req{Method: http.MethodGet, Path: testserver.APIPrefix + "/devices/" + id + "/telemetry/latest",
			Key: srv.AdminKey, Tenant: ten.ID})
		return r.Status == http.StatusOK && strings.Contains(r.String(), "temp")
	}, "telemetry of a simulated device stored")

	// A compromised device's port scan report raises an alarm.
	bad := s.DeviceIDs()[Compromised][0]
	testserver.Eventually(t, 10*time.Second, func() bool {
		r := srv.Do(t, testserver.Req{Method: http.MethodGet, Path: testserver.APIPrefix + "/devices/" + bad + "/alarms?kind=new_listening_ports",
			Key: srv.AdminKey, Tenant: ten.ID})
		return r.Status == http.StatusOK && len(r.Items()) == 1
	}, "the compromised device's alarm")

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil
	st := s.Stats()
	if st.Online != 0 || st.EnrollFailed != 0 || st.Commands < 1 {
		t.Fatalf("after the run: %+v", st)
	}
	if !strings.Contains(progress.String(), "enrolled 24/24") {
		t.Fatalf("progress lines: %q", progress.String())
	}
	t.Logf("%+v", st)

	// Started again with the identity file, the same devices connect
	// without enrolling (no token is asked for).
	cfg.Progress = nil
	cfg.Tokens = func(context.Context, string) (string, error) { return "", errors.New("no enrollment expected") }
	s2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() { done2 <- s2.Run(ctx2) }()
	testserver.Eventually(t, 20*time.Second, func() bool { return s2.Stats().Online >= n-3 }, "devices back from the identity file")
	cancel2()
	if err := <-done2; err != nil {
		t.Fatal(err)
	}
	if st := s2.Stats(); st.EnrollFailed != 0 || st.Enrolled != n || st.Refused != 0 {
		t.Fatalf("second run: %+v", st)
	}
}
