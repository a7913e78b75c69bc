package platform_test

import (
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/platform"
)

// The CA is made on first start in <data_dir>/pki, encrypted with the
// configured passphrase, kept across restarts, and a start without the
// passphrase (or with another CA against the same database) is refused
// with a message that says what to do.
func TestPKIOnStart(t *testing.T) {
	cfg := devConfig(t)
	cfg.PKI.Passphrase = "s3cret passphrase"
	cfg.Store.URL = "sqlite:" + filepath.Join(cfg.DataDir, "steward.db")
	s := start(t, cfg)
	fp := s.Identity.CA().Fingerprint()
	if s.ESTURL() == "" || !strings.HasPrefix(s.ESTURL(), "https://127.0.0.1:") {
		t.Fatalf("enrollment listener %q", s.ESTURL())
	}
	stop(t, s)
	dir := filepath.Join(cfg.DataDir, platform.PKIDir)
	for _, f := range []string{identity.CAKeyFile, identity.RootKeyFile} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if block, _ := pem.Decode(b); block == nil || block.Type != "STEWARD ENCRYPTED PRIVATE KEY" {
			t.Fatalf("%s is not encrypted", f)
		}
		if st, _ := os.Stat(filepath.Join(dir, f)); st.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %o", f, st.Mode().Perm())
		}
	}
	s = start(t, cfg)
	if s.Identity.CA().Fingerprint() != fp {
		t.Fatal("a restart made a new CA")
	}
	stop(t, s)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	noPass := cfg
	noPass.PKI.Passphrase = ""
	if _, err := platform.New(ctx, noPass, quiet(), "test"); err == nil || !strings.Contains(err.Error(), "STEWARD_PKI_PASSPHRASE") {
		t.Fatalf("start without the passphrase: %v", err)
	}
	// Another data folder (a fresh CA) on the same database is refused.
	other := cfg
	other.DataDir = t.TempDir()
	if _, err := platform.New(ctx, other, quiet(), "test"); err == nil || !strings.Contains(err.Error(), "another CA") {
		t.Fatalf("a node with another CA: %v", err)
	}
}
