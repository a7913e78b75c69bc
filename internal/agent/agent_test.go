package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/testutil/testserver"
)

func TestRenewAtTwoThirds(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		life time.Duration
		want time.Time
	}{
		{90 * 24 * time.Hour, nb.Add(60 * 24 * time.Hour)},
		{3 * time.Hour, nb.Add(2 * time.Hour)},
		{time.Hour, nb.Add(40 * time.Minute)},
	} {
		c := &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(tc.life)}
		if got := RenewAt(c); !got.Equal(tc.want) {
			t.Errorf("lifetime %s: renew at %s, want %s", tc.life, got, tc.want)
		}
	}
}

func testAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	cfg.defaults()
	inst, err := NewDirInstaller(t.TempDir(), "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Installer == nil {
		cfg.Installer = inst
	}
	a := &Agent{cfg: cfg, log: cfg.Log, devID: "dev_test", started: cfg.Now(), answered: map[string]json.RawMessage{},
		updates: make(chan trigger, 1), reconnect: make(chan struct{}, 1), intervalC: make(chan time.Duration, 1), stop: make(chan error, 1)}
	return a
}

func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCommandHook(t *testing.T) {
	hook := writeScript(t, `case "$1" in
  echo) cat ;;
  text) echo "hello $STEWARD_DEVICE_ID" ;;
  fail) echo "disk full" >&2; exit 3 ;;
esac
`)
	a := testAgent(t, Config{CommandHook: hook})
	for _, tc := range []struct {
		name, params, status, want string
	}{
		{"echo", `{"a":1}`, "succeeded", `{"a":1}`},
		{"text", ``, "succeeded", `{"output":"hello dev_test"}`},
		{"fail", `{}`, "failed", `disk full`},
	} {
		res := a.runHook(t.Context(), Command{ID: "cmd_1", Name: tc.name, Params: json.RawMessage(tc.params)})
		got := res.Error
		if res.Status == "succeeded" {
			b, _ := json.Marshal(res.Result)
			got = string(b)
		}
		if res.Status != tc.status || got != tc.want {
			t.Errorf("%s: %s %s", tc.name, res.Status, got)
		}
	}
	// Without a hook an unknown command fails and names the known ones.
	b := testAgent(t, Config{})
	if res := b.runHook(t.Context(), Command{Name: "dance"}); res.Status != "failed" || !strings.Contains(res.Error, `unknown command "dance"`) ||
		!strings.Contains(res.Error, "ping, reboot, update_check, wipe") {
		t.Fatalf("unknown command: %+v", res)
	}
}

func TestHealthCommand(t *testing.T) {
	a := testAgent(t, Config{HealthCmd: `test "$STEWARD_NEW_VERSION" != 2.0.0 || { echo "app crashed"; exit 1; }`})
	if err := a.health(t.Context(), "1.5.0"); err != nil {
		t.Fatalf("healthy version: %v", err)
	}
	if err := a.health(t.Context(), "2.0.0"); err == nil || !strings.Contains(err.Error(), "app crashed") {
		t.Fatalf("unhealthy version: %v", err)
	}
	if err := testAgent(t, Config{}).health(t.Context(), "2.0.0"); err != nil {
		t.Fatalf("no health command: %v", err)
	}
}

func TestScriptInstaller(t *testing.T) {
	dir := t.TempDir()
	hook := writeScript(t, `d="$STEWARD_STATE_DIR"
case "$1" in
  current) cat "$d/current" ;;
  install) cp "$2" "$d/next.img"; echo "$3" > "$d/next" ;;
  switch) touch "$d/switched" ;;
  restart) exit 10 ;;
  commit) mv "$d/next" "$d/current" ;;
  rollback) echo "$2" > "$d/why"; exit 1 ;;
esac
`)
	os.WriteFile(filepath.Join(dir, "current"), []byte("1.0.0\n"), 0o600)
	img := filepath.Join(dir, "image")
	os.WriteFile(img, []byte("x"), 0o600)
	s := &ScriptInstaller{Hook: hook, Env: []string{"STEWARD_STATE_DIR=" + dir}}
	ctx := t.Context()
	if v, err := s.Current(); err != nil || v != "1.0.0" {
		t.Fatalf("current: %q %v", v, err)
	}
	if err := s.Install(ctx, img, "2.0.0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Switch(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(ctx); !errors.Is(err, ErrRestarting) {
		t.Fatalf("restart exit 10: %v", err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Current(); v != "2.0.0" {
		t.Fatalf("after commit: %s", v)
	}
	if err := s.Rollback(ctx, "health check failed"); err == nil || !strings.Contains(err.Error(), "rollback") {
		t.Fatalf("failing rollback: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "why")); strings.TrimSpace(string(b)) != "health check failed" {
		t.Fatalf("rollback reason: %q", b)
	}
}

func TestTelemetry(t *testing.T) {
	m := Telemetry(90 * time.Second)
	if m["agent_uptime_s"] != int64(90) {
		t.Fatalf("agent uptime: %v", m)
	}
	if _, err := os.Stat("/proc/meminfo"); err == nil {
		for _, k := range []string{"uptime_s", "load1", "mem_total_kb", "mem_available_kb"} {
			if _, ok := m[k]; !ok {
				t.Errorf("missing %s in %v", k, m)
			}
		}
	}
}

func TestDesiredTelemetryInterval(t *testing.T) {
	a := testAgent(t, Config{TelemetryInterval: time.Minute})
	a.onDesired(t.Context(), []byte(`{"version":3,"state":{"telemetry_interval":5,"mode":"eco"}}`))
	if a.interval != 5*time.Second || len(a.intervalC) != 1 {
		t.Fatalf("interval %s", a.interval)
	}
	for _, bad := range []string{`{"state":{"telemetry_interval":0}}`, `{"state":{"telemetry_interval":"fast"}}`,
		`{"state":{"telemetry_interval":1e9}}`, `not json`} {
		a.onDesired(t.Context(), []byte(bad))
		if a.interval != 5*time.Second {
			t.Fatalf("%s changed the interval to %s", bad, a.interval)
		}
	}
}

// TestCAPinning: a fetched CA is checked against the pinned fingerprint,
// kept, and used from the state folder afterwards.
func TestCAPinning(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	fp := srv.Platform.Identity.CA().Fingerprint()
	ctx := t.Context()
	if _, _, err := LoadCA(ctx, t.TempDir(), srv.Platform.ESTURL(), "", strings.Repeat("ab", 32)); err == nil ||
		!strings.Contains(err.Error(), fp) {
		t.Fatalf("wrong pin: %v", err)
	}
	dir := t.TempDir()
	_, shown, err := LoadCA(ctx, dir, srv.Platform.ESTURL(), "", strings.ToUpper(fp[:2])+":"+fp[2:])
	if err != nil || shown != fp {
		t.Fatalf("right pin: %q %v", shown, err)
	}
	if _, shown, err := LoadCA(ctx, dir, "https://127.0.0.1:1", "", ""); err != nil || shown != "" {
		t.Fatalf("second start (kept CA, no fetch): %q %v", shown, err)
	}
}

// TestEnrollAndRenew: the agent enrolls with a bootstrap token and with a
// claim code (keys made here, kept 0600); past 2/3 of the lifetime it
// renews over EST simplereenroll with a new key, and the new certificate
// works on the device routes.
func TestEnrollAndRenew(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	tn := srv.CreateTenant(t, "agent-enroll")
	p := srv.CreateProduct(t, tn.ID)
	ctx := t.Context()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Platform.Identity.CA().Anchor())

	if _, err := Enroll(ctx, srv.Platform.ESTURL(), roots, t.TempDir(), Enrollment{}); err == nil ||
		!strings.Contains(err.Error(), "--bootstrap-token") {
		t.Fatalf("no credential: %v", err)
	}
	tok := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: "/api/v1/bootstrap-tokens", Key: tn.Admin.Secret,
		Body: map[string]any{"product_id": p.ID, "name": "agent test"}}).Str("token")
	if _, err := Enroll(ctx, srv.Platform.ESTURL(), roots, t.TempDir(), Enrollment{BootstrapToken: tok}); err == nil ||
		!strings.Contains(err.Error(), "--serial") {
		t.Fatalf("token without serial: %v", err)
	}
	dir := t.TempDir()
	id, err := Enroll(ctx, srv.Platform.ESTURL(), roots, dir, Enrollment{BootstrapToken: tok, Serial: srv.Unique("SN")})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, IdentityFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v %v", st.Mode(), err)
	}
	again, err := LoadIdentity(dir)
	if err != nil || again.DeviceID() != id.DeviceID() || !strings.HasPrefix(id.DeviceID(), "dev_") {
		t.Fatalf("reload: %v %s", err, again.DeviceID())
	}

	// Claim code: the maker registers the device with a code, the owner
	// claims it, then the device enrolls with serial and code.
	maker := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: "/api/v1/tenants", Key: srv.AdminKey,
		Body: map[string]any{"name": srv.Unique("maker"), "kind": "vendor"}}).Str("id")
	dev := srv.CreateDevice(t, maker, srv.CreateProduct(t, maker).ID)
	code := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: "/api/v1/devices/" + dev.ID + "/claim-code",
		Key: srv.AdminKey, Tenant: maker}).Str("code")
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: "/api/v1/claims", Key: srv.AdminKey, Tenant: tn.ID,
		Body: map[string]any{"code": code}})
	cid, err := Enroll(ctx, srv.Platform.ESTURL(), roots, t.TempDir(), Enrollment{ClaimSerial: dev.Serial, ClaimCode: code})
	if err != nil || cid.DeviceID() != dev.ID {
		t.Fatalf("claim enrollment: %v", err)
	}

	// Factory certificate: the maker registers its factory CA for the
	// product; the device presents the certificate it got at the factory.
	factoryCA, factoryKey := testserver.NewTestCA("Acme Factory CA")
	srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: "/api/v1/products/" + dev.ProductID + "/manufacturer-cas",
		Key: srv.AdminKey, Tenant: maker, Body: map[string]any{"certificate": testserver.NewCAPEMOf(factoryCA), "name": "line 1"}})
	fdev := srv.CreateDevice(t, maker, dev.ProductID)
	fcode := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: "/api/v1/devices/" + fdev.ID + "/claim-code",
		Key: srv.AdminKey, Tenant: maker}).Str("code")
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: "/api/v1/claims", Key: srv.AdminKey, Tenant: tn.ID,
		Body: map[string]any{"code": fcode}})
	fkey := testserver.NewKey()
	fder, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{SerialNumber: fdev.Serial},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		factoryCA, &fkey.PublicKey, factoryKey)
	if err != nil {
		t.Fatal(err)
	}
	fkeyDER, _ := x509.MarshalPKCS8PrivateKey(fkey)
	fdir := t.TempDir()
	os.WriteFile(filepath.Join(fdir, "factory.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fder}), 0o644)
	os.WriteFile(filepath.Join(fdir, "factory.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: fkeyDER}), 0o600)
	if _, err := Enroll(ctx, srv.Platform.ESTURL(), roots, t.TempDir(), Enrollment{FactoryCert: filepath.Join(fdir, "factory.crt")}); err == nil ||
		!strings.Contains(err.Error(), "--factory-key") {
		t.Fatalf("factory certificate without key: %v", err)
	}
	fid, err := Enroll(ctx, srv.Platform.ESTURL(), roots, t.TempDir(), Enrollment{FactoryCert: filepath.Join(fdir, "factory.crt"),
		FactoryKey: filepath.Join(fdir, "factory.key")})
	if err != nil || fid.DeviceID() != fdev.ID {
		t.Fatalf("factory enrollment: %v", err)
	}
	if _, err := Enroll(ctx, srv.Platform.ESTURL(), roots, t.TempDir(), Enrollment{BootstrapToken: "x", ClaimCode: "y"}); err == nil ||
		!strings.Contains(err.Error(), "only one") {
		t.Fatalf("two credentials: %v", err)
	}

	// Renewal: not due before 2/3 of the lifetime, due after.
	a := testAgent(t, Config{Server: srv.Platform.ESTURL()})
	a.id, a.roots = again, roots
	a.updater = &Updater{Source: NewDeviceSource(srv.Platform.ESTURL(), again.HTTPClient(roots, 0))}
	first := again.Certificate()
	a.cfg.Now = func() time.Time { return RenewAt(first).Add(-time.Minute) }
	if err := a.renewIfDue(ctx); err != nil || again.Certificate() != first {
		t.Fatalf("renewed too early: %v", err)
	}
	a.cfg.Now = func() time.Time { return RenewAt(first).Add(time.Minute) }
	if err := a.renewIfDue(ctx); err != nil {
		t.Fatal(err)
	}
	next := again.Certificate()
	if next == first || next.SerialNumber.Cmp(first.SerialNumber) == 0 || next.PublicKey.(*ecdsa.PublicKey).Equal(first.PublicKey) {
		t.Fatal("not renewed with a new key")
	}
	if len(a.reconnect) != 1 {
		t.Fatal("no reconnection asked after the renewal")
	}
	reloaded, err := LoadIdentity(dir)
	if err != nil || reloaded.Certificate().SerialNumber.Cmp(next.SerialNumber) != 0 {
		t.Fatalf("renewed identity not kept: %v", err)
	}
	// The new certificate is the device's on the device routes.
	if _, err := a.updater.Source.(*HTTPSource).Roots(ctx); err == nil || !strings.Contains(err.Error(), "no_vendor_root") {
		t.Fatalf("device routes with the renewed certificate: %v", err)
	}
	// A key file opened up by hand is restricted again at start-up.
	os.Chmod(filepath.Join(dir, IdentityFile), 0o644)
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Platform.Identity.CA().Anchor().Raw}), 0o644)
	inst, _ := NewDirInstaller(t.TempDir(), "1.0.0")
	if _, err := New(ctx, Config{Server: srv.Platform.ESTURL(), MQTT: "127.0.0.1:1", CAFile: caFile, StateDir: dir, Installer: inst}); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(dir, IdentityFile)); st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v after start-up", st.Mode().Perm())
	}
	// Expired: it says how to recover.
	a.cfg.Now = func() time.Time { return next.NotAfter.Add(time.Hour) }
	if err := a.renewIfDue(ctx); err == nil || !strings.Contains(err.Error(), "enroll again") {
		t.Fatalf("expired: %v", err)
	}
}

// blocking serves the metadata and holds the download until it is
// cancelled.
type blocking struct {
	*fakeSource
	started chan struct{}
}

func (b *blocking) Fetch(ctx context.Context, _ string, _ int64, _ string) (io.ReadCloser, error) {
	close(b.started)
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestWithdrawnAssignmentStopsTheDownload: a cancelled assignment message
// stops an update that is still downloading; nothing is installed and no
// failure is reported.
func TestWithdrawnAssignmentStopsTheDownload(t *testing.T) {
	vd := newVD(t)
	src := &blocking{fakeSource: &fakeSource{b: vd.bundle(firmware, release{}), image: firmware}, started: make(chan struct{})}
	u, inst, reports := newUpdater(t, vd, src)
	a := testAgent(t, Config{Installer: inst})
	a.updater = u
	record := u.Report
	u.Report = func(r Report) { a.publishReport(r); record(r) }
	done := make(chan struct{})
	go func() { defer close(done); a.update(t.Context(), trigger{reason: "test"}) }()
	<-src.started
	a.onAssignment([]byte(`{"artifact_id":"art-other","cancelled":true}`)) // another update: ignored
	select {
	case <-done:
		t.Fatal("a withdrawal of another artifact stopped the download")
	case <-time.After(50 * time.Millisecond):
	}
	a.onAssignment([]byte(`{"artifact_id":"art-1","cancelled":true,"reason":"campaign cancelled"}`))
	<-done
	if got := statuses(*reports); got != "notified downloading" {
		t.Fatalf("reports: %s", got)
	}
	if v, _ := inst.Current(); v != "1.0.0" {
		t.Fatalf("running %s", v)
	}
}
