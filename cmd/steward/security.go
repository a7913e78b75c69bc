package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/user"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward/internal/store/sqlstore"
	"github.com/steward-iot/steward/internal/vuln"
)

// securityCmds are the security engine's verbs: the offline advisory
// import, SBOM and MUD imports, and findings.
func securityCmds() []*cobra.Command {
	return []*cobra.Command{vulnCmd(), sbomCmd(), mudCmd(), findingsCmd()}
}

func vulnCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "vuln", Short: "Vulnerability advisories (OSV)"}
	imp := &cobra.Command{
		Use:   "import PATH...",
		Short: "Import OSV advisories from files, folders or zip exports into the store (offline)",
		Long: `Read OSV records from JSON files, folders (every *.json below them) and zip archives
such as the per-ecosystem exports the OSV project publishes (e.g. Debian/all.zip),
and store them in the database directly: the platform needs no network, and this
works while the server is down. A record replaces a stored one only when its
modified time is newer. Any bad record stops the import before anything is
stored, naming the file.

Advisories are platform-wide (every tenant sees them) unless --tenant names the
tenant they belong to.`,
		Args: cobra.MinimumNArgs(1),
	}
	f := storeConfig(imp)
	var tenant string
	imp.Flags().StringVar(&tenant, "tenant", "", "import as this tenant's own advisories (default: platform-wide)")
	imp.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := f.load(cmd)
		if err != nil {
			return err
		}
		parsed, err := vuln.LoadAdvisoryFiles(args)
		if err != nil {
			return err
		}
		db, err := sqlstore.Open(cmd.Context(), cfg.Store.URL, sqlstore.Options{})
		if err != nil {
			return err
		}
		defer db.Close()
		if tenant != "" {
			if _, err := db.GetTenant(cmd.Context(), tenant); err != nil {
				return fmt.Errorf("tenant %s: %w", tenant, err)
			}
		}
		actor := "cli:steward vuln import"
		if u, err := user.Current(); err == nil {
			actor += " (" + u.Username + ")"
		}
		res, err := vuln.New(db).ImportAdvisories(cmd.Context(), actor, tenant, parsed)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%d records read: %d added, %d updated, %d unchanged\n", len(parsed), res.Added, res.Updated, res.Unchanged)
		return nil
	}
	cmd.AddCommand(imp)

	api := &cobra.Command{Use: "device DEVICE_ID", Short: "Which advisories affect a device (through the API)", Args: cobra.ExactArgs(1)}
	af := addAPIFlags(api)
	api.RunE = func(cmd *cobra.Command, args []string) error {
		return af.call(cmd, "GET", "/devices/"+url.PathEscape(args[0])+"/vulnerabilities", nil,
			printTable("advisory_id", "severity", "fixed_firmware_version", "summary"))
	}
	exposed := &cobra.Command{Use: "exposed ADVISORY_OR_CVE", Short: "Which devices an advisory affects (through the API)", Args: cobra.ExactArgs(1)}
	ef := addAPIFlags(exposed)
	exposed.RunE = func(cmd *cobra.Command, args []string) error {
		return ef.call(cmd, "GET", "/advisories/"+url.PathEscape(args[0])+"/devices?limit=1000", nil,
			printTable("id", "serial", "product_id", "firmware_version", "state"))
	}
	cmd.AddCommand(api, exposed)
	return cmd
}

// readJSONDocument reads a JSON document to send as a raw body.
func readJSONDocument(cmd *cobra.Command, path string) (json.RawMessage, error) {
	b, err := readFileOrStdin(cmd, path)
	if err != nil {
		return nil, err
	}
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '<' {
		return nil, errors.New(path + " is XML: the CLI sends JSON documents; PUT it to the API with Content-Type application/xml")
	}
	if !json.Valid(b) {
		return nil, errors.New(path + " is not valid JSON")
	}
	return json.RawMessage(b), nil
}

func sbomCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "sbom", Short: "SBOMs of product firmware versions (through the API)"}
	f := addAPIFlags(cmd)
	var product, firmware string
	imp := &cobra.Command{Use: "import FILE", Short: "Import the SBOM (CycloneDX or SPDX JSON) of a firmware version", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc, err := readJSONDocument(cmd, args[0])
			if err != nil {
				return err
			}
			return f.call(cmd, "PUT", "/products/"+url.PathEscape(product)+"/sboms/"+url.PathEscape(firmware), doc, nil)
		}}
	imp.Flags().StringVar(&product, "product", "", "product ID (required)")
	imp.Flags().StringVar(&firmware, "firmware", "", "firmware version the SBOM describes (required)")
	imp.MarkFlagRequired("product")
	imp.MarkFlagRequired("firmware")
	list := &cobra.Command{Use: "list PRODUCT_ID", Short: "List a product's SBOMs", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, "GET", "/products/"+url.PathEscape(args[0])+"/sboms?limit=1000", nil,
				printTable("firmware_version", "format", "spec_version", "components", "components_without_purl", "imported_at"))
		}}
	cmd.AddCommand(imp, list)
	return cmd
}

func mudCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "mud", Short: "MUD (RFC 8520) network profiles of products (through the API)"}
	f := addAPIFlags(cmd)
	var product string
	imp := &cobra.Command{Use: "import FILE", Short: "Import a product's MUD file", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc, err := readJSONDocument(cmd, args[0])
			if err != nil {
				return err
			}
			return f.call(cmd, "PUT", "/products/"+url.PathEscape(product)+"/mud", doc, func(w io.Writer, out map[string]any) {
				flows, _ := out["allowed_flows"].([]any)
				fmt.Fprintf(w, "imported %s: %d allowed flows\n", out["mud_url"], len(flows))
			})
		}}
	imp.Flags().StringVar(&product, "product", "", "product ID (required)")
	imp.MarkFlagRequired("product")
	nft := &cobra.Command{Use: "nftables PRODUCT_ID", Short: "Print a product's profile as nftables rules for a gateway", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet,
				c.BaseURL+"/api/v1/products/"+url.PathEscape(args[0])+"/mud/nftables", nil)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+c.Key)
			if c.Tenant != "" {
				req.Header.Set("X-Steward-Tenant", c.Tenant)
			}
			resp, err := c.HTTP.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
			}
			_, err = cmd.OutOrStdout().Write(body)
			return err
		}}
	cmd.AddCommand(imp, nft)
	return cmd
}

func findingsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "findings", Short: "Security findings of the audit checks (through the API)"}
	f := addAPIFlags(cmd)
	var status string
	list := &cobra.Command{Use: "list", Short: "List findings (open and not suppressed by default)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, "GET", "/findings?limit=1000&status="+url.QueryEscape(status), nil,
				printTable("id", "severity", "check", "resource_id", "title"))
		}}
	list.Flags().StringVar(&status, "status", "open", "open, resolved or all")
	run := &cobra.Command{Use: "run [CHECK...]", Short: "Run the audit checks now", Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, "POST", "/findings/run", map[string]any{"checks": args}, nil)
		}}
	cmd.AddCommand(list, run)
	return cmd
}
