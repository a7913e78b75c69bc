package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// otaCLI runs `steward ota …` in process; API verbs go to srv as the
// platform admin acting in tenant.
func otaCLI(t *testing.T, srv *testserver.Server, tenant string, args ...string) string {
	t.Helper()
	root := &cobra.Command{Use: "steward", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(otaCmd())
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	full := append([]string{"ota"}, args...)
	switch args[0] {
	case "upload", "push", "assign":
		full = append(full, "--server", srv.URL, "--api-key", srv.AdminKey, "--tenant", tenant)
	}
	root.SetArgs(full)
	if err := root.Execute(); err != nil {
		t.Fatalf("steward ota %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String() + errOut.String()
}

// TestOTAVerbs: the vendor makes keys and a root needing two of three
// targets signatures, uploads an image, signs it offline in two steps,
// pushes root and targets, and assigns the image to a device.
func TestOTAVerbs(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	tn := srv.CreateTenant(t, "vendor")
	p := srv.CreateProduct(t, tn.ID)
	d := srv.CreateDevice(t, tn.ID, p.ID)
	dir := t.TempDir()
	in := func(name string) string { return filepath.Join(dir, name) }
	for _, k := range []string{"root", "t1", "t2", "t3"} {
		out := otaCLI(t, srv, tn.ID, "keygen", "--out", in(k+".key"))
		if !strings.Contains(out, "private key: "+in(k+".key")) {
			t.Fatalf("keygen: %s", out)
		}
		if st, _ := os.Stat(in(k + ".key")); st.Mode().Perm() != 0o600 {
			t.Fatalf("key file mode %v", st.Mode().Perm())
		}
	}
	out := otaCLI(t, srv, tn.ID, "root", "init", "--out", in("root.json"), "--root-key", in("root.key"),
		"--targets-key", in("t1.pub"), "--targets-key", in("t2.pub"), "--targets-key", in("t3.pub"), "--targets-threshold", "2")
	if !strings.Contains(out, "root version 1, 1 signature(s)") {
		t.Fatalf("root init: %s", out)
	}
	image := in("fw-2.0.0.bin")
	content := bytes.Repeat([]byte{0xA5, 0x5A, 0x00, 0xFF}, 3<<20) // 12 MiB: progress lines
	if err := os.WriteFile(image, content, 0o644); err != nil {
		t.Fatal(err)
	}
	out = otaCLI(t, srv, tn.ID, "upload", image, "--product", p.ID, "--hardware-id", p.ID, "--version", "2.0.0")
	m := regexp.MustCompile(`artifact (art_\w+): sha256 ([0-9a-f]{64}), 12582912 bytes`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "uploading fw-2.0.0.bin: 50%") {
		t.Fatalf("upload: %s", out)
	}
	artID, digest := m[1], m[2]

	out = otaCLI(t, srv, tn.ID, "sign", image, "--targets", in("targets.json"), "--key", in("t1.key"), "--version", "2.0.0", "--hardware-id", p.ID)
	if !strings.Contains(out, "sha256 "+digest) || !strings.Contains(out, "targets version 1, 1 signature(s)") || !strings.Contains(out, "hashing fw-2.0.0.bin: 100%") {
		t.Fatalf("sign: %s", out)
	}
	otaCLI(t, srv, tn.ID, "push", in("root.json"))
	// One signature of the two the root asks for: refused.
	root := &cobra.Command{Use: "steward", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(otaCmd())
	root.SetOut(new(bytes.Buffer))
	root.SetArgs([]string{"ota", "push", in("targets.json"), "--server", srv.URL, "--api-key", srv.AdminKey, "--tenant", tn.ID})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "not enough signatures, got 1, want 2") {
		t.Fatalf("push with one signature: %v", err)
	}
	out = otaCLI(t, srv, tn.ID, "cosign", in("targets.json"), "--key", in("t3.key"))
	if !strings.Contains(out, "targets version 1, 2 signature(s)") {
		t.Fatalf("cosign: %s", out)
	}
	out = otaCLI(t, srv, tn.ID, "push", in("targets.json"))
	if !strings.Contains(out, "targets version 1 stored") {
		t.Fatalf("push: %s", out)
	}
	out = otaCLI(t, srv, tn.ID, "assign", d.ID, "--artifact", artID)
	if !strings.Contains(out, `"director_version": 1`) {
		t.Fatalf("assign: %s", out)
	}

	// Key rotation: a new root drops t1; signed by the old and new root keys.
	otaCLI(t, srv, tn.ID, "keygen", "--out", in("root2.key"))
	out = otaCLI(t, srv, tn.ID, "root", "rotate", "--in", in("root.json"), "--out", in("root2.json"), "--sign-key", in("root.key"),
		"--root-key", in("root2.key"), "--targets-key", in("t2.pub"), "--targets-key", in("t3.pub"), "--targets-threshold", "1")
	if !strings.Contains(out, "root version 2, 2 signature(s)") {
		t.Fatalf("rotate: %s", out)
	}
	out = otaCLI(t, srv, tn.ID, "push", in("root2.json"))
	if !strings.Contains(out, "root version 2 stored") {
		t.Fatalf("push rotation: %s", out)
	}
	res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: "/api/v1/ota/vendor/root", Key: srv.AdminKey, Tenant: tn.ID})
	if !regexp.MustCompile(`"version":\s*2\b`).Match(res.Raw) {
		t.Fatalf("stored root: %s", res.Raw)
	}
}
