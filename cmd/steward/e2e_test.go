package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/steward-iot/steward/internal/client"
	"github.com/steward-iot/steward/internal/identity"
)

// e2eServer is a real `steward server --dev` process on ephemeral ports,
// for the end-to-end tests that run agents against it.
type e2eServer struct {
	bin, dataDir, key string
	*node
	admin *client.Client
}

func startE2EServer(t *testing.T) *e2eServer {
	t.Helper()
	s := &e2eServer{bin: buildBinary(t), dataDir: t.TempDir()}
	s.node = &node{name: "server", dataDir: s.dataDir, bin: s.bin,
		args: []string{"server", "--dev", "--data-dir", s.dataDir, "--listen", "127.0.0.1:0", "--log-level", "warn"},
		env:  append(os.Environ(), "STEWARD_MQTT_LISTEN=127.0.0.1:0", "STEWARD_EST_LISTEN=127.0.0.1:0")}
	s.node.start(t)
	b, err := os.ReadFile(filepath.Join(s.dataDir, "admin-api-key"))
	if err != nil {
		t.Fatal(err)
	}
	s.key = strings.TrimSpace(string(b))
	s.admin, _ = client.New(s.api, s.key, "", client.Options{})
	return s
}

// caFile is the platform CA the agents trust.
func (s *e2eServer) caFile() string { return filepath.Join(s.dataDir, "pki", identity.RootCertFile) }

// tenant makes a tenant of kind and returns its ID and an API client in it.
func (s *e2eServer) tenant(t *testing.T, ctx context.Context, name, kind string) (string, *client.Client) {
	t.Helper()
	var ten struct{ ID string }
	if err := s.admin.Do(ctx, "POST", "/api/v1/tenants", map[string]string{"name": name, "kind": kind}, &ten); err != nil {
		t.Fatal(err)
	}
	c, _ := client.New(s.api, s.key, ten.ID, client.Options{})
	return ten.ID, c
}

// vendor signs releases offline with `steward ota` and pushes them, as a
// device maker does: its keys stay in a folder of its own.
type vendor struct {
	s                 *e2eServer
	dir               string
	product, apiFlags []string
	rootPushed        bool
}

func (s *e2eServer) newVendor(t *testing.T, tenantID, productID string) *vendor {
	t.Helper()
	v := &vendor{s: s, dir: t.TempDir(), product: []string{"--product", productID, "--hardware-id", productID},
		apiFlags: []string{"--server", s.api, "--api-key", s.key, "--tenant", tenantID}}
	run(t, s.bin, "ota", "keygen", "--out", v.in("root.key"))
	run(t, s.bin, "ota", "keygen", "--out", v.in("targets.key"))
	run(t, s.bin, "ota", "root", "init", "--out", v.in("root.json"), "--root-key", v.in("root.key"), "--targets-key", v.in("targets.pub"))
	return v
}

func (v *vendor) in(f string) string { return filepath.Join(v.dir, f) }

var uploadedArtifact = regexp.MustCompile(`artifact (art_\w+)`)

// release uploads image as version, signs it into the vendor targets and
// pushes them (and the root, the first time); it returns the artifact ID.
func (v *vendor) release(t *testing.T, version string, image []byte) string {
	t.Helper()
	file := v.in("fw-" + version + ".bin")
	if err := os.WriteFile(file, image, 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, v.s.bin, append(append([]string{"ota", "upload", file, "--version", version}, v.product...), v.apiFlags...)...)
	m := uploadedArtifact.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("upload: %s", out)
	}
	run(t, v.s.bin, "ota", "sign", file, "--targets", v.in("targets.json"), "--key", v.in("targets.key"), "--version", version,
		"--hardware-id", v.product[3])
	if !v.rootPushed {
		run(t, v.s.bin, append([]string{"ota", "push", v.in("root.json")}, v.apiFlags...)...)
		v.rootPushed = true
	}
	run(t, v.s.bin, append([]string{"ota", "push", v.in("targets.json")}, v.apiFlags...)...)
	return m[1]
}
