package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/steward-iot/steward/internal/client"
	"github.com/steward-iot/steward/internal/ota/tufmeta"
)

// otaCmd holds the update verbs: the vendor's offline signing (keygen,
// root, sign, cosign) and the API calls (upload, push, assign).
func otaCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ota", Short: "Update images and their signed metadata",
		Long: `Update images and their signed metadata (TUF/Uptane model, see docs/ota.md).

The vendor's keys stay off the server: keygen, root, sign and cosign work on local files.
upload, push, assign, campaign and invalidate drive the API.

  steward ota keygen --out root.key
  steward ota keygen --out targets.key
  steward ota root init --out root.json --root-key root.key --targets-key targets.pub
  steward ota upload fw-1.4.2.bin --product <id> --hardware-id board-a --version 1.4.2
  steward ota sign fw-1.4.2.bin --targets targets.json --key targets.key --version 1.4.2 --hardware-id board-a
  steward ota push root.json && steward ota push targets.json
  steward ota assign <device-id> --artifact <artifact-id>
  steward ota campaign create --name "1.4.2" --artifact <artifact-id> --product <id> --canary 5 --wave-size 500`}
	cmd.AddCommand(otaKeygenCmd(), otaRootCmd(), otaSignCmd(), otaCosignCmd())
	cmd.AddCommand(otaAPICmds()...)
	cmd.AddCommand(campaignCmd(), otaInvalidateCmd())
	return cmd
}

func otaKeygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{Use: "keygen", Short: "Make a signing key (ed25519): <out> (0600) and <out>.pub",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := tufmeta.GenerateKey()
			if err != nil {
				return err
			}
			if err := tufmeta.WriteKeyFile(out, k); err != nil {
				return err
			}
			pub, err := tufmeta.MarshalPublicKey(k)
			if err != nil {
				return err
			}
			if err := os.WriteFile(pubPath(out), pub, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key %s\nprivate key: %s (keep it offline)\npublic key:  %s\n", k.ID, out, pubPath(out))
			return nil
		}}
	cmd.Flags().StringVar(&out, "out", "", "private key file to write (must not exist)")
	cmd.MarkFlagRequired("out")
	return cmd
}

func pubPath(keyPath string) string {
	return strings.TrimSuffix(keyPath, filepath.Ext(keyPath)) + ".pub"
}

func loadSigners(paths []string) ([]*tufmeta.Key, error) {
	var out []*tufmeta.Key
	for _, p := range paths {
		k, err := tufmeta.LoadKeyFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

func loadPublics(paths []string) ([]*metadata.Key, error) {
	var out []*metadata.Key
	for _, p := range paths {
		k, err := tufmeta.LoadPublicKeyFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// writeSigned writes a metadata file (0644; it holds no secret).
func writeSigned[T metadata.Roles](path string, m *metadata.Metadata[T]) error {
	b, err := m.ToBytes(true)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func otaRootCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "root", Short: "Make the vendor root metadata (keys and thresholds) or its next rotation"}
	var out, in string
	var rootKeys, targetKeys, signKeys []string
	var rootThreshold, targetsThreshold int
	var expires time.Duration
	build := func(version int64) (*metadata.Metadata[metadata.RootType], error) {
		rk, err := loadPublics(rootKeys)
		if err != nil {
			return nil, err
		}
		tk, err := loadPublics(targetKeys)
		if err != nil {
			return nil, err
		}
		return tufmeta.NewRoot(version, time.Now().Add(expires), tufmeta.RoleKeys{Keys: rk, Threshold: rootThreshold},
			tufmeta.RoleKeys{Keys: tk, Threshold: targetsThreshold})
	}
	// signWith signs with every private key among the new root keys and
	// the extra --sign-key files.
	signWith := func(m *metadata.Metadata[metadata.RootType], extra []string) error {
		var keys []*tufmeta.Key
		for _, p := range append(append([]string{}, rootKeys...), extra...) {
			if k, err := tufmeta.LoadKeyFile(p); err == nil {
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 {
			return errors.New("no private root key to sign with: pass key files, not only .pub files")
		}
		return tufmeta.Sign(m, keys...)
	}
	flags := func(c *cobra.Command) {
		c.Flags().StringVar(&out, "out", "root.json", "root metadata file to write")
		c.Flags().StringSliceVar(&rootKeys, "root-key", nil, "root key file (private to sign, or .pub); repeat for several")
		c.Flags().StringSliceVar(&targetKeys, "targets-key", nil, "targets key file (.pub or private); repeat for several")
		c.Flags().IntVar(&rootThreshold, "root-threshold", 1, "signatures needed on a root")
		c.Flags().IntVar(&targetsThreshold, "targets-threshold", 1, "signatures needed on targets")
		c.Flags().DurationVar(&expires, "expires", 365*24*time.Hour, "validity")
		c.MarkFlagRequired("root-key")
		c.MarkFlagRequired("targets-key")
	}
	initCmd := &cobra.Command{Use: "init", Short: "Make root metadata version 1", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := build(1)
			if err != nil {
				return err
			}
			if err := signWith(m, nil); err != nil {
				return err
			}
			if err := writeSigned(out, m); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: root version %d, %d signature(s)\n", out, m.Signed.Version, len(m.Signatures))
			return nil
		}}
	flags(initCmd)
	rotateCmd := &cobra.Command{Use: "rotate", Short: "Make the next root version with new keys or thresholds",
		Long: "The next root must be signed by a threshold of the current root keys (--sign-key) and of its own " +
			"root keys. Holders of other keys add theirs with `steward ota cosign`.", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := os.ReadFile(in)
			if err != nil {
				return err
			}
			cur, err := metadata.Root().FromBytes(b)
			if err != nil {
				return fmt.Errorf("%s: %w", in, err)
			}
			m, err := build(cur.Signed.Version + 1)
			if err != nil {
				return err
			}
			if err := signWith(m, signKeys); err != nil {
				return err
			}
			if err := writeSigned(out, m); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: root version %d, %d signature(s)\n", out, m.Signed.Version, len(m.Signatures))
			return nil
		}}
	flags(rotateCmd)
	rotateCmd.Flags().StringVar(&in, "in", "root.json", "current root metadata")
	rotateCmd.Flags().StringSliceVar(&signKeys, "sign-key", nil, "current root key file(s) that sign the rotation")
	cmd.AddCommand(initCmd, rotateCmd)
	return cmd
}

// progress reports how far a long copy got, on stderr, every 10%.
type progress struct {
	w        io.Writer
	what     string
	total, n int64
	step     int64
	start    time.Time
}

func newProgress(w io.Writer, what string, total int64) *progress {
	return &progress{w: w, what: what, total: total, start: time.Now()}
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if p.total > 8<<20 {
		if s := p.n * 10 / p.total; s > p.step && s < 10 {
			p.step = s
			fmt.Fprintf(p.w, "%s: %d%% (%s of %s)\n", p.what, s*10, size(p.n), size(p.total))
		}
	}
	return len(b), nil
}

func (p *progress) done() {
	el := time.Since(p.start)
	rate := float64(p.n) / max(el.Seconds(), 1e-6)
	fmt.Fprintf(p.w, "%s: 100%% (%s in %s, %s/s)\n", p.what, size(p.n), el.Round(time.Millisecond), size(int64(rate)))
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// hashFile returns a file's hex SHA-256 and length, showing progress.
func hashFile(stderr io.Writer, path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	p := newProgress(stderr, "hashing "+filepath.Base(path), st.Size())
	n, err := io.Copy(io.MultiWriter(h, p), f)
	if err != nil {
		return "", 0, err
	}
	p.done()
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func otaSignCmd() *cobra.Command {
	var targetsPath, name, version, sbomRef string
	var keys, hardware []string
	var expires time.Duration
	cmd := &cobra.Command{Use: "sign IMAGE", Short: "Add an image to the vendor targets metadata and sign it (offline)",
		Long: `Hashes IMAGE, adds it to the targets metadata file (created when missing) with its version and
hardware IDs, raises the metadata version and signs with each --key. When the root asks for more
than one signature, other key holders add theirs with ` + "`steward ota cosign`" + `. Push the result
with ` + "`steward ota push`" + `.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			signers, err := loadSigners(keys)
			if err != nil {
				return err
			}
			if version == "" || len(hardware) == 0 {
				return errors.New("--version and --hardware-id are required")
			}
			if _, err := tufmeta.CompareVersions(version, version); err != nil {
				return err
			}
			m := tufmeta.NewTargets(1, time.Now().Add(expires))
			if b, err := os.ReadFile(targetsPath); err == nil {
				cur, err := metadata.Targets().FromBytes(b)
				if err != nil {
					return fmt.Errorf("%s: %w", targetsPath, err)
				}
				m.Signed.Version = cur.Signed.Version + 1
				m.Signed.Targets = cur.Signed.Targets
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
			digest, n, err := hashFile(cmd.ErrOrStderr(), args[0])
			if err != nil {
				return err
			}
			if name == "" {
				name = filepath.Base(args[0])
			}
			if err := tufmeta.AddTarget(m, name, n, digest, tufmeta.ImageInfo{Version: version, HardwareIDs: hardware, SBOMRef: sbomRef}); err != nil {
				return err
			}
			if err := tufmeta.Sign(m, signers...); err != nil {
				return err
			}
			if err := writeSigned(targetsPath, m); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "image %s: sha256 %s, %d bytes, version %s\n%s: targets version %d, %d signature(s), expires %s\n",
				name, digest, n, version, targetsPath, m.Signed.Version, len(m.Signatures), m.Signed.Expires.Format(time.RFC3339))
			return nil
		}}
	cmd.Flags().StringVar(&targetsPath, "targets", "targets.json", "targets metadata file")
	cmd.Flags().StringSliceVar(&keys, "key", nil, "targets key file; repeat for several")
	cmd.Flags().StringVar(&name, "name", "", "target name (default: the file name)")
	cmd.Flags().StringVar(&version, "version", "", "firmware version the image installs")
	cmd.Flags().StringSliceVar(&hardware, "hardware-id", nil, "hardware ID the image fits; repeat for several")
	cmd.Flags().StringVar(&sbomRef, "sbom-ref", "", "where the image's SBOM is")
	cmd.Flags().DurationVar(&expires, "expires", 90*24*time.Hour, "validity of the metadata")
	cmd.MarkFlagRequired("key")
	return cmd
}

// metaType reads the _type of a metadata file.
func metaType(b []byte) (string, int64, error) {
	var doc struct {
		Signed struct {
			Type    string `json:"_type"`
			Version int64  `json:"version"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return "", 0, err
	}
	return doc.Signed.Type, doc.Signed.Version, nil
}

func otaCosignCmd() *cobra.Command {
	var keys []string
	cmd := &cobra.Command{Use: "cosign FILE", Short: "Add signatures to a root or targets metadata file (threshold signing)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			signers, err := loadSigners(keys)
			if err != nil {
				return err
			}
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			typ, _, err := metaType(b)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			var n int
			var v int64
			switch typ {
			case metadata.ROOT:
				m, err := metadata.Root().FromBytes(b)
				if err != nil {
					return err
				}
				if err := tufmeta.Sign(m, signers...); err != nil {
					return err
				}
				n, v = len(m.Signatures), m.Signed.Version
				err = writeSigned(args[0], m)
				if err != nil {
					return err
				}
			case metadata.TARGETS:
				m, err := metadata.Targets().FromBytes(b)
				if err != nil {
					return err
				}
				if err := tufmeta.Sign(m, signers...); err != nil {
					return err
				}
				n, v = len(m.Signatures), m.Signed.Version
				if err := writeSigned(args[0], m); err != nil {
					return err
				}
			default:
				return fmt.Errorf("%s: %q metadata cannot be signed here", args[0], typ)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s version %d, %d signature(s)\n", args[0], typ, v, n)
			return nil
		}}
	cmd.Flags().StringSliceVar(&keys, "key", nil, "key file; repeat for several")
	cmd.MarkFlagRequired("key")
	return cmd
}

func otaAPICmds() []*cobra.Command {
	upload := &cobra.Command{Use: "upload IMAGE", Short: "Upload an update image (streamed, with progress)", Args: cobra.ExactArgs(1)}
	uf := addAPIFlags(upload)
	var products, hardware []string
	var version, name, notes, sbomRef string
	upload.Flags().StringSliceVar(&products, "product", nil, "product ID the image is for; repeat for several")
	upload.Flags().StringSliceVar(&hardware, "hardware-id", nil, "hardware ID the image fits; repeat for several")
	upload.Flags().StringVar(&version, "version", "", "firmware version the image installs")
	upload.Flags().StringVar(&name, "name", "", "file name (default: the file's)")
	upload.Flags().StringVar(&notes, "notes", "", "release notes")
	upload.Flags().StringVar(&sbomRef, "sbom-ref", "", "where the image's SBOM is")
	upload.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := uf.client()
		if err != nil {
			return err
		}
		digest, n, err := hashFile(cmd.ErrOrStderr(), args[0])
		if err != nil {
			return err
		}
		if name == "" {
			name = filepath.Base(args[0])
		}
		var art struct {
			ID     string `json:"id"`
			SHA256 string `json:"sha256"`
			Length int64  `json:"length"`
		}
		if err := c.Do(cmd.Context(), http.MethodPost, "/api/v1/artifacts", map[string]any{"name": name, "version": version,
			"product_ids": products, "hardware_ids": hardware, "release_notes": notes, "sbom_ref": sbomRef}, &art); err != nil {
			return err
		}
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		p := newProgress(cmd.ErrOrStderr(), "uploading "+name, n)
		if err := putStream(cmd.Context(), c, "/api/v1/artifacts/"+art.ID+"/content?sha256="+url.QueryEscape(digest),
			io.TeeReader(f, p), n, &art); err != nil {
			return err
		}
		p.done()
		fmt.Fprintf(cmd.OutOrStdout(), "artifact %s: sha256 %s, %d bytes\n", art.ID, art.SHA256, art.Length)
		return nil
	}

	push := &cobra.Command{Use: "push FILE", Short: "Store signed vendor root or targets metadata on the server", Args: cobra.ExactArgs(1)}
	pf := addAPIFlags(push)
	push.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := pf.client()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		typ, _, err := metaType(b)
		if err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		path := map[string]string{metadata.ROOT: "/api/v1/ota/vendor/root", metadata.TARGETS: "/api/v1/ota/vendor/targets"}[typ]
		if path == "" {
			return fmt.Errorf("%s: %q metadata is not pushed", args[0], typ)
		}
		var out struct {
			Version int64     `json:"version"`
			Expires time.Time `json:"expires"`
		}
		if err := putStream(cmd.Context(), c, path, bytes.NewReader(b), int64(len(b)), &out, "Content-Type", "application/json"); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: %s version %d stored, expires %s\n", args[0], typ, out.Version, out.Expires.Format(time.RFC3339))
		return nil
	}

	assign := &cobra.Command{Use: "assign DEVICE", Short: "Tell a device to install an image (the director signs it)", Args: cobra.ExactArgs(1)}
	af := addAPIFlags(assign)
	var artifact string
	assign.Flags().StringVar(&artifact, "artifact", "", "artifact ID")
	assign.MarkFlagRequired("artifact")
	assign.RunE = func(cmd *cobra.Command, args []string) error {
		return af.call(cmd, http.MethodPut, "/devices/"+url.PathEscape(args[0])+"/ota/assignment", map[string]any{"artifact_id": artifact}, nil)
	}
	return []*cobra.Command{upload, push, assign}
}

// putStream sends body with PUT without the client's overall timeout (a
// large image takes as long as it takes) and decodes the JSON answer.
func putStream(ctx context.Context, c *client.Client, path string, body io.Reader, n int64, out any, hdr ...string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.BaseURL+path, body)
	if err != nil {
		return err
	}
	req.ContentLength = n
	req.Header.Set("Content-Type", "application/octet-stream")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.Key)
	if c.Tenant != "" {
		req.Header.Set("X-Steward-Tenant", c.Tenant)
	}
	hc := *c.HTTP
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the server at %s: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		p := &client.Problem{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode)}
		if json.Unmarshal(data, p) != nil || p.Status == 0 {
			p.Status, p.Detail = resp.StatusCode, strings.TrimSpace(string(data))
		}
		return p
	}
	return json.Unmarshal(data, out)
}
