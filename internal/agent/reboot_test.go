package agent

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// rebootingScript is an installer hook whose restart "reboots": it boots
// the trial slot and exits 10, so the agent stops; the next agent process
// finishes the update.
const rebootingScript = `d="$STEWARD_STATE_DIR/fw"
mkdir -p "$d"
case "$1" in
  current) cat "$d/running" 2>/dev/null || echo 1.0.0 ;;
  install) cp "$2" "$d/next.img" && echo "$3" > "$d/next" ;;
  switch) touch "$d/trial" ;;
  restart) [ -f "$d/trial" ] && { cp "$d/running" "$d/previous" 2>/dev/null || echo 1.0.0 > "$d/previous"; cp "$d/next" "$d/running"; }; exit 10 ;;
  commit) rm -f "$d/trial" "$d/previous" ;;
  rollback) [ -f "$d/previous" ] && mv "$d/previous" "$d/running"; rm -f "$d/trial" ;;
esac
`

// TestRebootResumes: an update whose restart really reboots stops the
// agent (ErrRebooting); the next start over the same state folder runs the
// health check, commits, and the platform hears "succeeded".
func TestRebootResumes(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	tn := srv.CreateTenant(t, "agent-reboot")
	p := srv.CreateProduct(t, tn.ID)
	vendor := srv.NewVendor(t, tn.ID, tn.Admin.Secret)
	art := vendor.Release(t, p.ID, "2.0.0", make([]byte, 100_000))
	tok := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: "/api/v1/bootstrap-tokens", Key: tn.Admin.Secret,
		Body: map[string]any{"product_id": p.ID, "name": "reboot test"}}).Str("token")

	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Platform.Identity.CA().Anchor().Raw}), 0o644)
	hook := writeScript(t, rebootingScript)
	state := filepath.Join(dir, "state")
	healthChecked := filepath.Join(dir, "health-checked")
	cfg := Config{Server: srv.Platform.ESTURL(), MQTT: srv.Platform.MQTTAddr(broker.ListenerCert), CAFile: caFile, StateDir: state,
		Enroll:    Enrollment{BootstrapToken: tok, Serial: srv.Unique("SN")},
		Installer: &ScriptInstaller{Hook: hook, Env: []string{"STEWARD_STATE_DIR=" + dir}},
		HealthCmd: `echo "$STEWARD_NEW_VERSION" > ` + healthChecked, Poll: time.Second, TelemetryInterval: time.Hour,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	first, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: "/api/v1/devices/" + first.DeviceID() + "/ota/assignment",
		Key: tn.Admin.Secret, Body: map[string]any{"artifact_id": art}})
	if err := first.Run(ctx); !errors.Is(err, ErrRebooting) {
		t.Fatalf("first run: %v, want ErrRebooting", err)
	}
	if _, err := os.Stat(filepath.Join(state, "update", journalFile)); err != nil {
		t.Fatalf("no update journal before the reboot: %v", err)
	}

	// The next boot: same state folder, already enrolled.
	cfg.Enroll = Enrollment{}
	second, err := New(ctx, cfg)
	if err != nil || second.DeviceID() != first.DeviceID() {
		t.Fatalf("second start: %v", err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- second.Run(rctx) }()
	testserver.Eventually(t, time.Minute, func() bool {
		res := srv.Do(t, testserver.Req{Method: http.MethodGet, Path: "/api/v1/devices/" + first.DeviceID() + "/ota/assignment", Key: tn.Admin.Secret})
		return res.Status == http.StatusOK && res.Str("status") == "succeeded"
	}, "the platform hears that the update succeeded after the reboot")
	stop()
	if err := <-done; err != nil {
		t.Fatalf("second run: %v", err)
	}
	if b, _ := os.ReadFile(healthChecked); string(b) != "2.0.0\n" {
		t.Fatalf("health check ran for %q", b)
	}
	if v, _ := cfg.Installer.Current(); v != "2.0.0" {
		t.Fatalf("running %s", v)
	}
	if _, err := os.Stat(filepath.Join(state, "update", journalFile)); !os.IsNotExist(err) {
		t.Fatalf("journal left: %v", err)
	}
}

// TestRenewalReconnects: after a renewal the running agent starts a new
// MQTT session presenting the new certificate, and still answers commands.
func TestRenewalReconnects(t *testing.T) {
	t.Parallel()
	srv, tn, cfg := slotAgent(t, "agent-renewal")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	a, done := runAgent(t, ctx, cfg)
	serialOn := func(want string) func() bool {
		return func() bool {
			res := srv.Do(t, testserver.Req{Method: http.MethodGet, Path: "/api/v1/devices/" + a.DeviceID() + "/connection", Key: tn.Admin.Secret})
			return res.Status == http.StatusOK && res.Str("cert_serial") == want
		}
	}
	first := a.Identity().Certificate()
	testserver.Eventually(t, 30*time.Second, serialOn(identitySerial(first)), "connected with the first certificate")
	if err := a.renew(ctx); err != nil {
		t.Fatal(err)
	}
	next := a.Identity().Certificate()
	testserver.Eventually(t, 30*time.Second, serialOn(identitySerial(next)), "connected again with the renewed certificate")
	cmd := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: "/api/v1/devices/" + a.DeviceID() + "/commands",
		Key: tn.Admin.Secret, Body: map[string]any{"name": "ping"}}).Str("id")
	testserver.Eventually(t, 30*time.Second, func() bool {
		res := srv.Do(t, testserver.Req{Method: http.MethodGet, Path: "/api/v1/devices/" + a.DeviceID() + "/commands/" + cmd, Key: tn.Admin.Secret})
		return res.Str("status") == "succeeded"
	}, "ping answered after the renewal")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

// slotAgent starts a platform with a tenant and a product, and returns
// the configuration of an agent enrolling there with a bootstrap token,
// running firmware 1.0.0 from a slot installer, with telemetry and polls
// an hour apart.
func slotAgent(t *testing.T, tenant string) (*testserver.Server, *testserver.Tenant, Config) {
	srv := testserver.Start(t, testserver.Options{})
	tn := srv.CreateTenant(t, tenant)
	p := srv.CreateProduct(t, tn.ID)
	tok := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: "/api/v1/bootstrap-tokens", Key: tn.Admin.Secret,
		Body: map[string]any{"product_id": p.ID, "name": tenant}}).Str("token")
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Platform.Identity.CA().Anchor().Raw}), 0o644)
	inst, err := NewDirInstaller(filepath.Join(dir, "slots"), "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	return srv, tn, Config{Server: srv.Platform.ESTURL(), MQTT: srv.Platform.MQTTAddr(broker.ListenerCert), CAFile: caFile,
		StateDir: filepath.Join(dir, "state"), Enroll: Enrollment{BootstrapToken: tok, Serial: srv.Unique("SN")}, Installer: inst,
		AgentVersion: "test", TelemetryInterval: time.Hour, Poll: time.Hour}
}

// runAgent makes an agent of cfg and runs it until ctx ends; done gives
// Run's result.
func runAgent(t *testing.T, ctx context.Context, cfg Config) (a *Agent, done <-chan error) {
	a, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	go func() { ch <- a.Run(ctx) }()
	return a, ch
}

func identitySerial(c *x509.Certificate) string { return identity.SerialHex(c.SerialNumber) }

// TestTwinReportedWhenConnectedEarly: the session may come up before the
// agent has recorded it (on a loaded machine); the twin report it sends
// on connecting must not be lost then.
func TestTwinReportedWhenConnectedEarly(t *testing.T) {
	testHookConnecting = func() { time.Sleep(2 * time.Second) }
	defer func() { testHookConnecting = nil }()
	srv, tn, cfg := slotAgent(t, "agent-early")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	a, done := runAgent(t, ctx, cfg)
	testserver.Eventually(t, 30*time.Second, func() bool {
		res := srv.Do(t, testserver.Req{Method: http.MethodGet, Path: "/api/v1/devices/" + a.DeviceID() + "/twin", Key: tn.Admin.Secret})
		var tw struct {
			Reported struct {
				State struct {
					Firmware map[string]string `json:"firmware"`
				} `json:"state"`
			} `json:"reported"`
		}
		if res.Status != http.StatusOK {
			return false
		}
		res.Into(t, &tw)
		return tw.Reported.State.Firmware["version"] == "1.0.0"
	}, "the twin report sent on connecting")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}
