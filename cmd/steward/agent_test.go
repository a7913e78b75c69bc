package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// agentProc is one running `steward agent` process.
type agentProc struct {
	name, stateDir, deviceID string
	cmd                      *exec.Cmd
	exited                   chan struct{}
	out                      *lockedBuffer
}

type lockedBuffer struct {
	mu chan struct{}
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.b.String()
}

var agentRunning = regexp.MustCompile(`Device (dev_\w+): agent running`)

// startAgent runs `steward agent` with args and waits for it to enroll.
func startAgent(t *testing.T, bin, name string, args ...string) *agentProc {
	t.Helper()
	a := &agentProc{name: name, stateDir: filepath.Join(t.TempDir(), "state"), out: &lockedBuffer{mu: make(chan struct{}, 1)}}
	a.cmd = exec.Command(bin, append([]string{"agent", "--state-dir", a.stateDir, "--log-level", "debug"}, args...)...)
	stdout, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	a.cmd.Stderr = a.out
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.exited = make(chan struct{})
	go func() { a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.exited
		if t.Failed() {
			t.Logf("agent %s log:\n%s", a.name, a.out.String())
		}
	})
	id := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			a.out.Write([]byte("[stdout] " + sc.Text() + "\n"))
			if m := agentRunning.FindStringSubmatch(sc.Text()); m != nil {
				id <- m[1]
			}
		}
	}()
	select {
	case a.deviceID = <-id:
	case <-a.exited:
		t.Fatalf("agent %s exited: %s", name, a.out.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("agent %s did not start within 60s: %s", name, a.out.String())
	}
	return a
}

// slots reads the agent's directory A/B installer state.
func (a *agentProc) slots(t *testing.T) (active, version, lastRollback string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.stateDir, "slots", "state.json"))
	if err != nil {
		return "", "", ""
	}
	var s struct {
		Active       string            `json:"active"`
		Versions     map[string]string `json:"versions"`
		LastRollback string            `json:"last_rollback"`
	}
	json.Unmarshal(b, &s)
	return s.Active, s.Versions[s.Active], s.LastRollback
}

func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("steward %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestAgentsEndToEnd runs a real server and real agent processes: three
// enroll with bootstrap tokens and one with a claim code, connect over
// MQTT with their certificates, report their twin and telemetry, answer a
// command; then the vendor signs 2.0.0 with `steward ota`, the director
// assigns it to three of them, two install it and one, whose health check
// fails on 2.0.0, rolls back and says why. Finally a wipe erases one
// agent's identity and state.
func TestAgentsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	srv := startE2EServer(t)
	bin, n := srv.bin, srv.node
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var product, makerProduct struct{ ID string }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	tenantID, api := srv.tenant(t, ctx, "agents", "enterprise")
	must(api.Do(ctx, "POST", "/api/v1/products", map[string]string{"vendor": "Acme", "model": "Gateway"}, &product))
	_, makerAPI := srv.tenant(t, ctx, "maker", "vendor")
	must(makerAPI.Do(ctx, "POST", "/api/v1/products", map[string]string{"vendor": "Acme", "model": "Plug"}, &makerProduct))

	caFile := srv.caFile()
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	fp := fingerprintOf(t, caPEM)
	common := []string{"--server", n.est, "--mqtt", n.mqtt, "--telemetry-interval", "1s", "--poll", "2s"}
	token := func() string {
		var tok struct{ Token string }
		must(api.Do(ctx, "POST", "/api/v1/bootstrap-tokens", map[string]any{"product_id": product.ID, "name": "agent e2e"}, &tok))
		return tok.Token
	}
	var agents []*agentProc
	for i, extra := range [][]string{
		{"--ca", caFile},
		{"--ca-fingerprint", fp}, // fetches the CA and checks it
		{"--ca", caFile, "--health-cmd", `test "$STEWARD_NEW_VERSION" != 2.0.0 || { echo "service did not come up"; exit 1; }`},
	} {
		args := append(append([]string{"--serial", fmt.Sprintf("GW-%04d", i+1), "--bootstrap-token", token()}, common...), extra...)
		agents = append(agents, startAgent(t, bin, fmt.Sprintf("gw%d", i+1), args...))
	}
	// A household device: made with a claim code by the maker, claimed by
	// the owner, enrolled by the agent with serial and code.
	var plug struct{ ID string }
	must(makerAPI.Do(ctx, "POST", "/api/v1/devices", map[string]any{"product_id": makerProduct.ID, "serial": "PLUG-1"}, &plug))
	var code struct{ Code string }
	must(makerAPI.Do(ctx, "POST", "/api/v1/devices/"+plug.ID+"/claim-code", nil, &code))
	must(api.Do(ctx, "POST", "/api/v1/claims", map[string]any{"code": code.Code}, nil))
	claimed := startAgent(t, bin, "plug", append([]string{"--claim", "PLUG-1:" + code.Code, "--ca", caFile}, common...)...)
	if claimed.deviceID != plug.ID {
		t.Fatalf("claimed agent is %s, want %s", claimed.deviceID, plug.ID)
	}
	all := append(append([]*agentProc{}, agents...), claimed)

	// The key file is 0600 and nothing secret is logged.
	for _, a := range all {
		st, err := os.Stat(filepath.Join(a.stateDir, "identity.pem"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s identity.pem: %v %v", a.name, st, err)
		}
		if strings.Contains(a.out.String(), "stb_") || strings.Contains(a.out.String(), "PRIVATE KEY") || strings.Contains(a.out.String(), code.Code) {
			t.Fatalf("%s logged a secret", a.name)
		}
	}
	if out := agents[1].out.String(); !strings.Contains(out, fp) {
		t.Fatalf("the fetched CA's fingerprint was not shown: %s", out)
	}

	// Twin, telemetry and a command, for every agent.
	for _, a := range all {
		var twin struct {
			Reported struct {
				State struct {
					Agent    map[string]string `json:"agent"`
					Firmware map[string]string `json:"firmware"`
				} `json:"state"`
			} `json:"reported"`
		}
		eventually(t, 30*time.Second, a.name+" reports its twin", func() bool {
			err := api.Do(ctx, "GET", "/api/v1/devices/"+a.deviceID+"/twin", nil, &twin)
			return err == nil && twin.Reported.State.Firmware["version"] == "1.0.0" && twin.Reported.State.Agent["version"] != ""
		})
		eventually(t, 30*time.Second, a.name+" sends telemetry", func() bool {
			var latest struct{ Items []struct{ Metric string } }
			if api.Do(ctx, "GET", "/api/v1/devices/"+a.deviceID+"/telemetry/latest", nil, &latest) != nil {
				return false
			}
			for _, it := range latest.Items {
				if it.Metric == "agent_uptime_s" {
					return true
				}
			}
			return false
		})
		var cmd struct{ ID string }
		must(api.Do(ctx, "POST", "/api/v1/devices/"+a.deviceID+"/commands", map[string]any{"name": "ping", "timeout_seconds": 30}, &cmd))
		eventually(t, 30*time.Second, a.name+" answers ping", func() bool {
			var c struct {
				Status string
				Result map[string]any
			}
			return api.Do(ctx, "GET", "/api/v1/devices/"+a.deviceID+"/commands/"+cmd.ID, nil, &c) == nil &&
				c.Status == "succeeded" && c.Result["pong"] == true
		})
	}

	// The vendor signs 2.0.0 offline and pushes it; the director assigns it.
	v := srv.newVendor(t, tenantID, product.ID)
	art := v.release(t, "2.0.0", bytes.Repeat([]byte("steward firmware 2.0.0 "), 100_000)) // 2.3 MB
	start := time.Now()
	for _, a := range agents {
		must(api.Do(ctx, "PUT", "/api/v1/devices/"+a.deviceID+"/ota/assignment", map[string]any{"artifact_id": art}, nil))
	}

	type reportedUpdate struct {
		Reported struct {
			State struct {
				Firmware map[string]string `json:"firmware"`
				Update   struct {
					Status, Version, Error string
					Running                string `json:"running_version"`
				} `json:"update"`
			} `json:"state"`
		} `json:"reported"`
	}
	for i, a := range agents {
		want, status := "2.0.0", "succeeded"
		if i == 2 {
			want, status = "1.0.0", "rolled_back"
		}
		var tw reportedUpdate
		eventually(t, 90*time.Second, a.name+" ends the update "+status, func() bool {
			err := api.Do(ctx, "GET", "/api/v1/devices/"+a.deviceID+"/twin", nil, &tw)
			return err == nil && tw.Reported.State.Update.Status == status && tw.Reported.State.Firmware["version"] == want
		})
		slot, version, why := a.slots(t)
		switch i {
		case 2:
			if slot != "a" || version != "1.0.0" || !strings.Contains(why, "health check of 2.0.0 failed") ||
				!strings.Contains(tw.Reported.State.Update.Error, "service did not come up") || tw.Reported.State.Update.Running != "1.0.0" {
				t.Fatalf("%s: slot %s version %s reason %q, reported %+v", a.name, slot, version, why, tw.Reported.State.Update)
			}
		default:
			if slot != "b" || version != "2.0.0" {
				t.Fatalf("%s: slot %s version %s", a.name, slot, version)
			}
		}
	}
	t.Logf("assignment to the last agent's final state: %s", time.Since(start).Round(time.Millisecond))
	// The platform learned each outcome from the reports on ota/status.
	for i, a := range agents {
		want, fw := "succeeded", "2.0.0"
		if i == 2 {
			want, fw = "rolled_back", ""
		}
		var as struct{ Status, Detail string }
		eventually(t, 30*time.Second, a.name+"'s assignment is "+want, func() bool {
			return api.Do(ctx, "GET", "/api/v1/devices/"+a.deviceID+"/ota/assignment", nil, &as) == nil && as.Status == want
		})
		if i == 2 && !strings.Contains(as.Detail, "service did not come up") {
			t.Fatalf("%s: the platform's reason is %q", a.name, as.Detail)
		}
		if fw != "" {
			var d struct {
				FirmwareVersion string `json:"firmware_version"`
			}
			eventually(t, 30*time.Second, a.name+"'s firmware version", func() bool {
				return api.Do(ctx, "GET", "/api/v1/devices/"+a.deviceID, nil, &d) == nil && d.FirmwareVersion == fw
			})
		}
	}
	for _, a := range all {
		if strings.Contains(a.out.String(), "the platform refused a message") {
			t.Fatalf("%s: a message was refused:\n%s", a.name, a.out.String())
		}
	}
	// The rolled-back image is not tried again by the polls (2 s).
	time.Sleep(5 * time.Second)
	if _, v, _ := agents[2].slots(t); v != "1.0.0" || strings.Count(agents[2].out.String(), "installing update") != 1 {
		t.Fatalf("the failed image was installed again: %s", agents[2].out.String())
	}
	if _, v, _ := claimed.slots(t); v != "1.0.0" {
		t.Fatalf("the unassigned device changed to %s", v)
	}

	// A quarantined device keeps exactly its updates: gw1 is quarantined,
	// 2.1.0 is released and assigned to it, and it installs it.
	gw1 := agents[0]
	must(api.Do(ctx, "POST", "/api/v1/devices/"+gw1.deviceID+"/transitions", map[string]any{"to": "active", "reason": "agent e2e"}, nil))
	must(api.Do(ctx, "POST", "/api/v1/devices/"+gw1.deviceID+"/transitions", map[string]any{"to": "quarantined", "reason": "agent e2e"}, nil))
	art21 := v.release(t, "2.1.0", bytes.Repeat([]byte("steward firmware 2.1.0 "), 50_000))
	must(api.Do(ctx, "PUT", "/api/v1/devices/"+gw1.deviceID+"/ota/assignment", map[string]any{"artifact_id": art21}, nil))
	eventually(t, 60*time.Second, "the quarantined gw1 installs 2.1.0", func() bool {
		var as struct{ Status string }
		_, v, _ := gw1.slots(t)
		return api.Do(ctx, "GET", "/api/v1/devices/"+gw1.deviceID+"/ota/assignment", nil, &as) == nil && as.Status == "succeeded" && v == "2.1.0"
	})

	// Wipe: the agent answers, erases its identity and state, and exits.
	var cmd struct{ ID string }
	must(api.Do(ctx, "POST", "/api/v1/devices/"+claimed.deviceID+"/commands", map[string]any{"name": "wipe", "params": map[string]any{}}, &cmd))
	select {
	case <-claimed.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the wiped agent did not exit")
	}
	if code := claimed.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("wiped agent exit code %d", code)
	}
	if _, err := os.Stat(claimed.stateDir); !os.IsNotExist(err) {
		t.Fatalf("state folder left after the wipe: %v", err)
	}
	eventually(t, 30*time.Second, "the wipe result is recorded", func() bool {
		var c struct{ Status string }
		return api.Do(ctx, "GET", "/api/v1/devices/"+claimed.deviceID+"/commands/"+cmd.ID, nil, &c) == nil && c.Status == "succeeded"
	})
}

// fingerprintOf is the SHA-256 (hex) of the first certificate in pemBytes.
func fingerprintOf(t *testing.T, pemBytes []byte) string {
	t.Helper()
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		t.Fatal("no certificate in the CA file")
	}
	sum := sha256.Sum256(blk.Bytes)
	return hex.EncodeToString(sum[:])
}
