package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/client"
	"github.com/steward-iot/steward/internal/testutil/pgtest"
)

// buildBinary compiles steward once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "steward")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("building steward: %v", err)
	}
	return bin
}

var apiURL = regexp.MustCompile(`API\s+(http://\S+)/api/v1`)

// startServer runs `steward server --dev` and waits for its banner.
func startServer(t *testing.T, bin, dataDir string, extra ...string) (*exec.Cmd, string) {
	t.Helper()
	args := append([]string{"server", "--dev", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--log-level", "warn"}, extra...)
	cmd := exec.Command(bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := apiURL.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	select {
	case u := <-found:
		return cmd, u
	case <-time.After(60 * time.Second):
		t.Fatal("server did not print its URL within 60s")
	}
	return nil, ""
}

// TestKill9KeepsAcknowledgedWrites creates devices through the API, kills
// the server with SIGKILL right after the last answer, restarts it on the
// same data and checks that every acknowledged device and its audit record
// is there and the audit chain verifies.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	backends := []struct {
		name  string
		extra func(t *testing.T) []string
	}{
		{"sqlite", func(*testing.T) []string { return nil }},
		{"postgres", func(t *testing.T) []string { return []string{"--store-url", pgtest.URL(t)} }},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			extra := be.extra(t)
			dataDir := t.TempDir()
			srv, base := startServer(t, bin, dataDir, extra...)
			key, err := os.ReadFile(filepath.Join(dataDir, "admin-api-key"))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			admin, _ := client.New(base, strings.TrimSpace(string(key)), "", client.Options{})
			var tenant struct{ ID string }
			if err := admin.Do(ctx, "POST", "/api/v1/tenants", map[string]string{"name": "durable", "kind": "enterprise"}, &tenant); err != nil {
				t.Fatal(err)
			}
			c, _ := client.New(base, strings.TrimSpace(string(key)), tenant.ID, client.Options{})
			var product struct{ ID string }
			if err := c.Do(ctx, "POST", "/api/v1/products", map[string]string{"vendor": "Acme", "model": "K9"}, &product); err != nil {
				t.Fatal(err)
			}
			// Writers run concurrently so the kill lands among in-flight
			// transactions; only answered requests count as acknowledged.
			const writers, perWriter = 4, 50
			acked := make(chan string, writers*perWriter)
			done := make(chan struct{})
			for w := 0; w < writers; w++ {
				go func(w int) {
					defer func() { done <- struct{}{} }()
					for i := 0; i < perWriter; i++ {
						var d struct{ ID string }
						err := c.Do(ctx, "POST", "/api/v1/devices", map[string]any{"product_id": product.ID,
							"serial": fmt.Sprintf("K9-%d-%04d", w, i)}, &d)
						if err != nil {
							return // the server is gone
						}
						acked <- d.ID
					}
				}(w)
			}
			// Kill once most writes are acknowledged, while others run.
			deadline := time.Now().Add(60 * time.Second)
			for len(acked) < writers*perWriter*3/4 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if err := srv.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			srv.Wait()
			for w := 0; w < writers; w++ {
				<-done
			}
			close(acked)
			var ids []string
			for id := range acked {
				ids = append(ids, id)
			}
			t.Logf("%d devices acknowledged before kill -9", len(ids))

			_, base2 := startServer(t, bin, dataDir, extra...)
			c2, _ := client.New(base2, strings.TrimSpace(string(key)), tenant.ID, client.Options{})
			for _, id := range ids {
				var d struct{ ID, Serial string }
				if err := c2.Do(ctx, "GET", "/api/v1/devices/"+id, nil, &d); err != nil {
					t.Fatalf("acknowledged device %s lost after kill -9: %v", id, err)
				}
			}
			// Every acknowledged device has its audit record.
			created := map[string]bool{}
			after := int64(0)
			for {
				var page struct {
					Items []struct {
						Seq    int64  `json:"seq"`
						Action string `json:"action"`
						Target string `json:"target"`
					} `json:"items"`
				}
				if err := c2.Do(ctx, "GET", fmt.Sprintf("/api/v1/audit?after=%d&limit=1000", after), nil, &page); err != nil {
					t.Fatal(err)
				}
				if len(page.Items) == 0 {
					break
				}
				for _, r := range page.Items {
					if r.Action == "device.create" {
						created[r.Target] = true
					}
					after = r.Seq
				}
			}
			for _, id := range ids {
				if !created[id] {
					t.Errorf("audit record of acknowledged device %s is missing", id)
				}
			}
			// And the chain verifies offline with the CLI.
			args := []string{"audit", "verify", "--data-dir", dataDir}
			if len(extra) > 0 {
				args = append(args, extra...)
			}
			out, err := exec.Command(bin, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("audit verify after kill -9: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "chains verified") {
				t.Fatalf("audit verify output: %s", out)
			}
		})
	}
}
