package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// cli runs the identity verbs (and the device command they extend) in
// process against srv, as the platform admin acting in tenant.
func cli(t *testing.T, srv *testserver.Server, tenant string, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "steward", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(deviceCmd())
	root.AddCommand(identityCmds(root)...)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	full := append([]string(nil), args...)
	if args[0] != "pki" {
		full = append(full, "--server", srv.URL, "--api-key", srv.AdminKey, "--tenant", tenant)
	}
	root.SetArgs(full)
	err := root.Execute()
	return out.String(), err
}

func mustCLI(t *testing.T, srv *testserver.Server, tenant string, args ...string) string {
	t.Helper()
	out, err := cli(t, srv, tenant, args...)
	if err != nil {
		t.Fatalf("steward %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func jsonField(t *testing.T, out, field string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	s, _ := m[field].(string)
	return s
}

// TestIdentityVerbs drives the device identity verbs against a real server.
func TestIdentityVerbs(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	vendor := srv.CreateTenant(t, "vendor").ID
	home := srv.CreateTenant(t, "home").ID
	product := srv.CreateProduct(t, vendor).ID
	dev := srv.CreateDevice(t, vendor, product)

	// Claim code, then the claim from the other tenant.
	code := jsonField(t, mustCLI(t, srv, vendor, "device", "claim-code", dev.ID), "code")
	if len(strings.ReplaceAll(code, "-", "")) != 24 {
		t.Fatalf("claim code %q", code)
	}
	out := mustCLI(t, srv, home, "claim", "--code", code)
	if jsonField(t, out, "tenant_id") != home || jsonField(t, out, "state") != "claimed" {
		t.Fatalf("claim: %s", out)
	}
	if out, err := cli(t, srv, home, "claim", "--code", code); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("claiming twice: %v %s", err, out)
	}

	// Manufacturer CAs.
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, []byte(testserver.NewCAPEM()), 0o600)
	caID := jsonField(t, mustCLI(t, srv, vendor, "manufacturer-ca", "add", "--product", product, "--file", caFile, "--name", "line 1"), "id")
	if out := mustCLI(t, srv, vendor, "manufacturer-ca", "list", "--product", product); !strings.Contains(out, caID) || !strings.Contains(out, "line 1") {
		t.Fatalf("manufacturer-ca list: %s", out)
	}
	mustCLI(t, srv, vendor, "manufacturer-ca", "delete", "--product", product, caID)

	// Factory keys.
	keys, _ := json.Marshal([]map[string]string{{"serial": "K-1", "public_key": testserver.NewPublicKeyPEM()}})
	keyFile := filepath.Join(t.TempDir(), "keys.json")
	os.WriteFile(keyFile, keys, 0o600)
	if out := mustCLI(t, srv, vendor, "device", "upload-keys", "--product", product, "--file", keyFile); !strings.Contains(out, "K-1") {
		t.Fatalf("upload-keys: %s", out)
	}

	// Bootstrap tokens, enrollment, certificates.
	homeProduct := srv.CreateProduct(t, home).ID
	tok := mustCLI(t, srv, home, "bootstrap-token", "create", "--product", homeProduct, "--ttl", "10m", "--name", "line")
	if !strings.HasPrefix(jsonField(t, tok, "token"), "stb_") {
		t.Fatalf("bootstrap-token create: %s", tok)
	}
	if out := mustCLI(t, srv, home, "bootstrap-token", "list"); !strings.Contains(out, jsonField(t, tok, "id")) {
		t.Fatalf("bootstrap-token list: %s", out)
	}
	mustCLI(t, srv, home, "bootstrap-token", "revoke", jsonField(t, tok, "id"))
	e := srv.EnrollWithToken(t, home, homeProduct, "E-1")
	if out := mustCLI(t, srv, home, "cert", "list", e.DeviceID); !strings.Contains(out, e.Serial) || !strings.Contains(out, "bootstrap_token") {
		t.Fatalf("cert list: %s", out)
	}
	if out := mustCLI(t, srv, home, "cert", "get", e.Serial, "--pem"); !strings.HasPrefix(out, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("cert get --pem: %s", out)
	}
	out = mustCLI(t, srv, home, "cert", "revoke", e.Serial, "--reason", "key_compromise", "--note", "lost")
	if jsonField(t, out, "revocation_reason") != "key_compromise" {
		t.Fatalf("cert revoke: %s", out)
	}
	if _, err := cli(t, srv, home, "cert", "revoke", e.Serial, "--reason", "nonsense"); err == nil {
		t.Fatal("a revocation reason that does not exist was accepted")
	}

	// Device tokens.
	out = mustCLI(t, srv, home, "device", "token", "create", e.DeviceID)
	if !strings.HasPrefix(jsonField(t, out, "token"), "sdt_") {
		t.Fatalf("device token create: %s", out)
	}
	mustCLI(t, srv, home, "device", "token", "get", e.DeviceID)
	mustCLI(t, srv, home, "device", "token", "revoke", e.DeviceID)
	srv.Must(t, http.StatusNotFound, testserver.Req{Method: http.MethodDelete, Path: "/api/v1/devices/" + e.DeviceID + "/token",
		Key: srv.AdminKey, Tenant: home})

	// The offline CA summary.
	out = mustCLI(t, srv, "", "pki", "info", "--data-dir", srv.Platform.Config.DataDir)
	if !strings.Contains(out, "Steward Issuing CA") || !strings.Contains(out, srv.Platform.Identity.CA().Fingerprint()) {
		t.Fatalf("pki info: %s", out)
	}
}

// Every identity verb explains itself in --help.
func TestIdentityHelp(t *testing.T) {
	root := &cobra.Command{Use: "steward"}
	root.AddCommand(deviceCmd())
	cmds := identityCmds(root)
	root.AddCommand(cmds...)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Short == "" {
			t.Errorf("steward %s has no short help", c.CommandPath())
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	for _, c := range cmds {
		walk(c)
	}
	for _, name := range []string{"claim-code", "token", "upload-keys"} {
		found := false
		for _, c := range root.Commands() {
			if c.Name() == "device" {
				for _, s := range c.Commands() {
					found = found || s.Name() == name
				}
			}
		}
		if !found {
			t.Errorf("steward device %s is missing", name)
		}
	}
}
