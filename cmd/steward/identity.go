package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/platform"
)

// identityCmds are the device identity verbs: claims, bootstrap tokens,
// certificates, manufacturer CAs and the offline PKI summary. It also
// gives "steward device" its identity subcommands (claim-code, token, keys).
func identityCmds(root *cobra.Command) []*cobra.Command {
	for _, c := range root.Commands() {
		if c.Name() == "device" {
			c.AddCommand(claimCodeCmd(), deviceTokenCmd(), deviceKeysCmd())
		}
	}
	return []*cobra.Command{claimCmd(), bootstrapTokenCmd(), certCmd(), manufacturerCACmd(), pkiCmd()}
}

// inheritedAPIFlags reads the API flags a parent command declared.
func inheritedAPIFlags(cmd *cobra.Command) *apiFlags {
	fl := cmd.Flags()
	f := &apiFlags{}
	f.server, _ = fl.GetString("server")
	f.key, _ = fl.GetString("api-key")
	f.keyFile, _ = fl.GetString("api-key-file")
	f.tenant, _ = fl.GetString("tenant")
	f.caFile, _ = fl.GetString("ca-file")
	f.insecure, _ = fl.GetBool("insecure-skip-verify")
	f.asJSON, _ = fl.GetBool("json")
	return f
}

func claimCodeCmd() *cobra.Command {
	return &cobra.Command{Use: "claim-code DEVICE_ID", Short: "Make a manufactured device's one-time claim code (printed once)",
		Long: `Make the claim code of a device that is still manufactured (unowned), for its label.
The code is shown once and stored only as a hash; a new code replaces an unused one.
The owner claims the device with "steward claim --code CODE"; the device then
enrolls with its serial and the same code (HTTP Basic serial:code at simpleenroll).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return inheritedAPIFlags(cmd).call(cmd, "POST", "/devices/"+url.PathEscape(args[0])+"/claim-code", nil, nil)
		}}
}

func deviceTokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage a device's MQTT token (for devices without client certificates)"}
	create := &cobra.Command{Use: "create DEVICE_ID", Short: "Make or replace a device's token (printed once)",
		Long: `Make a device's MQTT token. It is shown once; the device uses its device ID as MQTT user
name and the token as password. A new token replaces the old one at once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return inheritedAPIFlags(cmd).call(cmd, "POST", "/devices/"+url.PathEscape(args[0])+"/token", nil, nil)
		}}
	show := &cobra.Command{Use: "get DEVICE_ID", Short: "Show a device's token record (never the secret)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return inheritedAPIFlags(cmd).call(cmd, "GET", "/devices/"+url.PathEscape(args[0])+"/token", nil, nil)
		}}
	revoke := &cobra.Command{Use: "revoke DEVICE_ID", Short: "Revoke a device's token; its token sessions are dropped", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return inheritedAPIFlags(cmd).call(cmd, "DELETE", "/devices/"+url.PathEscape(args[0])+"/token", nil, nil)
		}}
	cmd.AddCommand(create, show, revoke)
	return cmd
}

func deviceKeysCmd() *cobra.Command {
	var product, file string
	cmd := &cobra.Command{Use: "upload-keys", Short: "Upload factory public keys of devices (registers missing devices)",
		Long: `Upload the factory public keys of a batch of devices of one product. A device that
later proves its key (TLS client certificate with it) may enroll. Devices that are
not registered yet are registered as manufactured. All or nothing, up to 1000 a call.

The file is JSON: [{"serial": "SN-1", "public_key": "-----BEGIN PUBLIC KEY-----\n…"}, …]`,
		Example: "  steward device upload-keys --product prd_… --file keys.json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := readFileOrStdin(cmd, file)
			if err != nil {
				return err
			}
			var devices []map[string]string
			if err := json.Unmarshal(b, &devices); err != nil {
				return fmt.Errorf("--file: want a JSON list of {\"serial\", \"public_key\"}: %w", err)
			}
			return inheritedAPIFlags(cmd).call(cmd, "POST", "/products/"+url.PathEscape(product)+"/device-keys",
				map[string]any{"devices": devices}, printTable("serial", "device_id", "created", "algorithm", "fingerprint_sha256"))
		}}
	cmd.Flags().StringVar(&product, "product", "", "product ID (required)")
	cmd.Flags().StringVar(&file, "file", "", "JSON file of serials and PEM public keys (- for stdin; required)")
	cmd.MarkFlagRequired("product")
	cmd.MarkFlagRequired("file")
	return cmd
}

func claimCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "claim", Short: "Claim a device into your tenant with the code on its label",
		Long: `Claim an unowned device with its one-time claim code: it moves into your tenant as
claimed, and the code cannot claim again. Then power the device on: it enrolls with
its serial and the same code.`,
		Example: "  steward claim --code K7QM-2XJD-9PRT-HW4B-ABCD-EFGH",
		Args:    cobra.NoArgs}
	f := addAPIFlags(cmd)
	var code string
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return f.call(cmd, "POST", "/claims", map[string]any{"code": code}, nil)
	}
	cmd.Flags().StringVar(&code, "code", "", "the claim code (required; dashes and case do not matter)")
	cmd.MarkFlagRequired("code")
	return cmd
}

func bootstrapTokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bootstrap-token", Short: "Manage single-use enrollment tokens for devices without a factory identity"}
	f := addAPIFlags(cmd)
	var name, product, ttl string
	create := &cobra.Command{Use: "create", Short: "Create a bootstrap token (printed once)",
		Long: `Create a single-use, short-lived enrollment token in your tenant. A device sends it as
"Authorization: Bearer <token>" to /.well-known/est/simpleenroll with a CSR whose subject
serialNumber (or CN) is its serial. With --product the token only enrolls devices of that
product and registers the device if it does not exist yet.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := map[string]any{}
			for k, v := range map[string]string{"name": name, "product_id": product, "ttl": ttl} {
				if v != "" {
					body[k] = v
				}
			}
			return f.call(cmd, "POST", "/bootstrap-tokens", body, nil)
		}}
	create.Flags().StringVar(&name, "name", "", "what the token is for")
	create.Flags().StringVar(&product, "product", "", "only devices of this product ID")
	create.Flags().StringVar(&ttl, "ttl", "", "how long it is valid (default 1h, at most 168h), e.g. 30m")
	list := &cobra.Command{Use: "list", Short: "List bootstrap tokens", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, "GET", "/bootstrap-tokens?limit=1000", nil,
				printTable("id", "name", "product_id", "expires_at", "used_at", "used_by", "revoked_at"))
		}}
	revoke := &cobra.Command{Use: "revoke TOKEN_ID", Short: "Revoke an unused bootstrap token", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, "DELETE", "/bootstrap-tokens/"+url.PathEscape(args[0]), nil, nil)
		}}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func certCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "List, show and revoke device certificates"}
	f := addAPIFlags(cmd)
	list := &cobra.Command{Use: "list DEVICE_ID", Short: "A device's certificates, newest first", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, "GET", "/devices/"+url.PathEscape(args[0])+"/certificates?limit=1000", nil,
				printTable("serial", "method", "not_before", "not_after", "revoked_at", "revocation_reason", "successor"))
		}}
	var asPEM bool
	get := &cobra.Command{Use: "get SERIAL", Short: "Show a certificate", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !asPEM {
				return f.call(cmd, "GET", "/certificates/"+url.PathEscape(args[0]), nil, nil)
			}
			return f.call(cmd, "GET", "/certificates/"+url.PathEscape(args[0]), nil, func(w io.Writer, out map[string]any) {
				fmt.Fprint(w, out["pem"])
			})
		}}
	get.Flags().BoolVar(&asPEM, "pem", false, "print only the certificate (PEM)")
	var reason, note string
	revoke := &cobra.Command{Use: "revoke SERIAL", Short: "Revoke a certificate; the device is cut off at once",
		Example: "  steward cert revoke 4f1c… --reason key_compromise --note \"device stolen\"", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{"reason": reason}
			if note != "" {
				body["note"] = note
			}
			return f.call(cmd, "POST", "/certificates/"+url.PathEscape(args[0])+"/revoke", body, nil)
		}}
	revoke.Flags().StringVar(&reason, "reason", "unspecified",
		"unspecified, key_compromise, affiliation_changed, superseded, cessation_of_operation or privilege_withdrawn")
	revoke.Flags().StringVar(&note, "note", "", "why, in words (kept in the audit trail)")
	cmd.AddCommand(list, get, revoke)
	return cmd
}

func manufacturerCACmd() *cobra.Command {
	cmd := &cobra.Command{Use: "manufacturer-ca", Short: "Manage the manufacturer CAs that prove devices' factory identity"}
	f := addAPIFlags(cmd)
	var product, file, name string
	add := &cobra.Command{Use: "add", Short: "Trust a manufacturer CA for a product",
		Long: `Register a vendor CA for a product. A device whose factory certificate chains to it, with
its serial as subject serialNumber (or CN), may enroll over mutual TLS.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := readFileOrStdin(cmd, file)
			if err != nil {
				return err
			}
			return f.call(cmd, "POST", "/products/"+url.PathEscape(product)+"/manufacturer-cas",
				map[string]any{"certificate": string(b), "name": name}, nil)
		}}
	add.Flags().StringVar(&product, "product", "", "product ID (required)")
	add.Flags().StringVar(&file, "file", "", "the CA certificate, PEM (- for stdin; required)")
	add.Flags().StringVar(&name, "name", "", "a name for it (e.g. the factory)")
	add.MarkFlagRequired("product")
	add.MarkFlagRequired("file")
	var listProduct string
	list := &cobra.Command{Use: "list", Short: "A product's manufacturer CAs", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, "GET", "/products/"+url.PathEscape(listProduct)+"/manufacturer-cas", nil,
				printTable("id", "name", "subject", "not_after", "fingerprint_sha256"))
		}}
	list.Flags().StringVar(&listProduct, "product", "", "product ID (required)")
	list.MarkFlagRequired("product")
	var delProduct string
	del := &cobra.Command{Use: "delete CA_ID", Short: "Stop trusting a manufacturer CA", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, "DELETE", "/products/"+url.PathEscape(delProduct)+"/manufacturer-cas/"+url.PathEscape(args[0]), nil, nil)
		}}
	del.Flags().StringVar(&delProduct, "product", "", "product ID (required)")
	del.MarkFlagRequired("product")
	cmd.AddCommand(add, list, del)
	return cmd
}

func pkiCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "pki", Short: "The platform CA (offline, from the data folder)"}
	var dataDir string
	info := &cobra.Command{Use: "info", Short: "Show the CA chain and the fingerprint devices can pin",
		Long: `Print the issuing CA and its trust anchor from <data-dir>/pki, with the SHA-256
fingerprint of the anchor: give it to devices (or compare it with what
/.well-known/est/cacerts returns) before they trust the enrollment server.
Reads only certificates, never the private keys.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir := filepath.Join(dataDir, platform.PKIDir)
			var chain []*x509.Certificate
			for _, name := range []string{identity.CACertFile, identity.RootCertFile} {
				b, err := os.ReadFile(filepath.Join(dir, name))
				if os.IsNotExist(err) && name == identity.RootCertFile {
					continue
				}
				if err != nil {
					return fmt.Errorf("%w (has the server started once with --data-dir %s?)", err, dataDir)
				}
				for rest := b; ; {
					var block *pem.Block
					if block, rest = pem.Decode(rest); block == nil {
						break
					}
					c, err := x509.ParseCertificate(block.Bytes)
					if err != nil {
						return fmt.Errorf("%s: %w", name, err)
					}
					chain = append(chain, c)
				}
			}
			if len(chain) == 0 {
				return fmt.Errorf("no certificate in %s", dir)
			}
			w := cmd.OutOrStdout()
			for i, c := range chain {
				role := "issuing CA"
				if i == len(chain)-1 {
					role = "trust anchor"
				} else if i > 0 {
					role = "intermediate"
				}
				sum := sha256.Sum256(c.Raw)
				fmt.Fprintf(w, "%-13s %s\n  valid        %s – %s\n  sha256       %s\n", role, c.Subject,
					c.NotBefore.UTC().Format("2006-01-02"), c.NotAfter.UTC().Format("2006-01-02"), hex.EncodeToString(sum[:]))
			}
			return nil
		}}
	info.Flags().StringVar(&dataDir, "data-dir", envOr("STEWARD_DATA_DIR", "./steward-data"), "the server's data folder (env: STEWARD_DATA_DIR)")
	cmd.AddCommand(info)
	return cmd
}

func readFileOrStdin(cmd *cobra.Command, path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(cmd.InOrStdin())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return b, nil
}
