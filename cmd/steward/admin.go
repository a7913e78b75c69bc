package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward/internal/client"
	"github.com/steward-iot/steward/internal/platform"
)

// apiFlags are shared by every verb that calls the API.
type apiFlags struct {
	server, key, keyFile, tenant, caFile string
	insecure, asJSON                     bool
}

func addAPIFlags(cmd *cobra.Command) *apiFlags {
	f := &apiFlags{}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.server, "server", envOr("STEWARD_SERVER", "http://127.0.0.1:8080"), "server base URL (env: STEWARD_SERVER)")
	pf.StringVar(&f.key, "api-key", "", "API key (env: STEWARD_API_KEY; default: the admin key file in ./steward-data)")
	pf.StringVar(&f.keyFile, "api-key-file", "", "read the API key from this file")
	pf.StringVar(&f.tenant, "tenant", os.Getenv("STEWARD_TENANT"), "tenant to act in, for platform admin keys (env: STEWARD_TENANT)")
	pf.StringVar(&f.caFile, "ca-file", "", "trust this CA certificate (PEM) for an https server")
	pf.BoolVar(&f.insecure, "insecure-skip-verify", false, "accept any server certificate (only for self-signed test servers)")
	pf.BoolVar(&f.asJSON, "json", false, "print the raw JSON answer")
	return f
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (f *apiFlags) client() (*client.Client, error) {
	key := f.key
	if key == "" {
		key = os.Getenv("STEWARD_API_KEY")
	}
	if key == "" {
		path := f.keyFile
		if path == "" {
			path = filepath.Join(envOr("STEWARD_DATA_DIR", "./steward-data"), platform.AdminKeyFile)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("no API key: pass --api-key, set STEWARD_API_KEY, or run next to the server's data folder (%v)", err)
		}
		key = strings.TrimSpace(string(b))
	}
	return client.New(f.server, key, f.tenant, client.Options{CAFile: f.caFile, InsecureSkipVerify: f.insecure})
}

// call runs one API request and prints the answer.
func (f *apiFlags) call(cmd *cobra.Command, method, path string, body any, table func(io.Writer, map[string]any)) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	var out map[string]any
	if err := c.Do(cmd.Context(), method, "/api/v1"+path, body, &out); err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if f.asJSON || table == nil {
		if out == nil {
			return nil
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	table(w, out)
	return nil
}

// printTable prints the items of a list answer in columns.
func printTable(cols ...string) func(io.Writer, map[string]any) {
	return func(w io.Writer, out map[string]any) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.ToUpper(strings.Join(cols, "\t")))
		items, _ := out["items"].([]any)
		for _, it := range items {
			m, _ := it.(map[string]any)
			vals := make([]string, len(cols))
			for i, c := range cols {
				vals[i] = cell(m[c])
			}
			fmt.Fprintln(tw, strings.Join(vals, "\t"))
		}
		tw.Flush()
		if next, _ := out["next_cursor"].(string); next != "" {
			fmt.Fprintf(w, "\nmore: --cursor %s\n", next)
		}
	}
}

func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case []any:
		s := make([]string, len(x))
		for i, e := range x {
			s[i] = fmt.Sprint(e)
		}
		return strings.Join(s, ",")
	case float64:
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprint(v)
}

func tenantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tenant", Short: "Manage tenants (through the API)"}
	f := addAPIFlags(cmd)
	var name, kind string
	create := &cobra.Command{Use: "create", Short: "Create a tenant (platform admin)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, "POST", "/tenants", map[string]any{"name": name, "kind": kind}, nil)
		}}
	create.Flags().StringVar(&name, "name", "", "tenant name (required)")
	create.Flags().StringVar(&kind, "kind", "enterprise", "enterprise, household or vendor")
	create.MarkFlagRequired("name")
	list := &cobra.Command{Use: "list", Short: "List tenants", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, "GET", "/tenants?limit=1000", nil, printTable("id", "name", "kind", "created_at"))
		}}
	get := &cobra.Command{Use: "get TENANT_ID", Short: "Show a tenant", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, "GET", "/tenants/"+url.PathEscape(args[0]), nil, nil)
		}}
	cmd.AddCommand(create, list, get)
	return cmd
}

func productCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "product", Short: "Manage products (device models)"}
	f := addAPIFlags(cmd)
	var vendor, model, hw, eos string
	create := &cobra.Command{Use: "create", Short: "Define a product", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := map[string]any{"vendor": vendor, "model": model}
			if hw != "" {
				body["hardware_revision"] = hw
			}
			if eos != "" {
				body["end_of_support"] = eos
			}
			return f.call(cmd, "POST", "/products", body, nil)
		}}
	create.Flags().StringVar(&vendor, "vendor", "", "vendor name (required)")
	create.Flags().StringVar(&model, "model", "", "model name (required)")
	create.Flags().StringVar(&hw, "hardware-revision", "", "hardware revision")
	create.Flags().StringVar(&eos, "end-of-support", "", "end of support, RFC 3339 (e.g. 2030-12-31T00:00:00Z)")
	create.MarkFlagRequired("vendor")
	create.MarkFlagRequired("model")
	list := &cobra.Command{Use: "list", Short: "List products", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, "GET", "/products?limit=1000", nil, printTable("id", "vendor", "model", "hardware_revision", "end_of_support"))
		}}
	get := &cobra.Command{Use: "get PRODUCT_ID", Short: "Show a product", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, "GET", "/products/"+url.PathEscape(args[0]), nil, nil)
		}}
	del := &cobra.Command{Use: "delete PRODUCT_ID", Short: "Delete a product no device uses", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, "DELETE", "/products/"+url.PathEscape(args[0]), nil, nil)
		}}
	cmd.AddCommand(create, list, get, del)
	return cmd
}

func deviceCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "device", Short: "Manage devices and their lifecycle"}
	f := addAPIFlags(cmd)
	var product, serial, name, state, fw string
	var tags []string
	create := &cobra.Command{Use: "create", Short: "Register a device", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := map[string]any{"product_id": product, "serial": serial}
			for k, v := range map[string]string{"name": name, "state": state, "firmware_version": fw} {
				if v != "" {
					body[k] = v
				}
			}
			if len(tags) > 0 {
				body["tags"] = tags
			}
			return f.call(cmd, "POST", "/devices", body, nil)
		}}
	create.Flags().StringVar(&product, "product", "", "product ID (required)")
	create.Flags().StringVar(&serial, "serial", "", "serial number (required)")
	create.Flags().StringVar(&name, "name", "", "display name")
	create.Flags().StringVar(&state, "state", "", "initial state: manufactured (default), claimed, provisioned or active")
	create.Flags().StringVar(&fw, "firmware", "", "firmware version")
	create.Flags().StringSliceVar(&tags, "tag", nil, "tag (repeatable)")
	create.MarkFlagRequired("product")
	create.MarkFlagRequired("serial")

	var q struct{ product, state, tag, minV, maxV, sort, order, cursor string }
	var limit int
	list := &cobra.Command{Use: "list", Short: "Query the fleet", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := url.Values{}
			for k, s := range map[string]string{"product_id": q.product, "state": q.state, "tag": q.tag,
				"min_version": q.minV, "max_version": q.maxV, "sort": q.sort, "order": q.order, "cursor": q.cursor} {
				if s != "" {
					v.Set(k, s)
				}
			}
			v.Set("limit", fmt.Sprint(limit))
			return f.call(cmd, "GET", "/devices?"+v.Encode(), nil,
				printTable("id", "serial", "state", "firmware_version", "tags", "last_seen"))
		}}
	lf := list.Flags()
	lf.StringVar(&q.product, "product", "", "only this product ID")
	lf.StringVar(&q.state, "state", "", "comma-separated states")
	lf.StringVar(&q.tag, "tag", "", "comma-separated tags (all must match)")
	lf.StringVar(&q.minV, "min-version", "", "firmware at least this version")
	lf.StringVar(&q.maxV, "max-version", "", "firmware below this version")
	lf.StringVar(&q.sort, "sort", "", "id, serial, last_seen, firmware_version or created_at")
	lf.StringVar(&q.order, "order", "", "asc or desc")
	lf.StringVar(&q.cursor, "cursor", "", "continue after a previous page")
	lf.IntVar(&limit, "limit", 50, "page size (1-1000)")

	get := &cobra.Command{Use: "get DEVICE_ID", Short: "Show a device and its allowed transitions", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, "GET", "/devices/"+url.PathEscape(args[0]), nil, nil)
		}}
	var to, reason string
	transition := &cobra.Command{Use: "transition DEVICE_ID", Short: "Move a device to another lifecycle state",
		Example: "  steward device transition dev_… --to quarantined --reason \"suspicious traffic\"", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, "POST", "/devices/"+url.PathEscape(args[0])+"/transitions", map[string]any{"to": to, "reason": reason}, nil)
		}}
	transition.Flags().StringVar(&to, "to", "", "target state (required)")
	transition.Flags().StringVar(&reason, "reason", "", "why (required; kept in the audit trail)")
	transition.MarkFlagRequired("to")
	transition.MarkFlagRequired("reason")
	del := &cobra.Command{Use: "delete DEVICE_ID", Short: "Erase a manufactured or decommissioned device", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, "DELETE", "/devices/"+url.PathEscape(args[0]), nil, nil)
		}}
	cmd.AddCommand(create, list, get, transition, del)
	return cmd
}

func apiKeyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "apikey", Short: "Manage API keys"}
	f := addAPIFlags(cmd)
	var name, role string
	create := &cobra.Command{Use: "create", Short: "Create an API key (the secret is printed once)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, "POST", "/api-keys", map[string]any{"name": name, "role": role}, nil)
		}}
	create.Flags().StringVar(&name, "name", "", "what the key is for (required)")
	create.Flags().StringVar(&role, "role", "viewer", "tenant-admin, operator, viewer, vendor (or platform-admin without --tenant)")
	create.MarkFlagRequired("name")
	list := &cobra.Command{Use: "list", Short: "List API keys", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, "GET", "/api-keys?limit=1000", nil, printTable("id", "name", "prefix", "role", "last_used", "revoked_at"))
		}}
	revoke := &cobra.Command{Use: "revoke KEY_ID", Short: "Revoke an API key", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, "DELETE", "/api-keys/"+url.PathEscape(args[0]), nil, nil)
		}}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
