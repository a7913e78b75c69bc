package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward/internal/auditlog"
	"github.com/steward-iot/steward/internal/store/sqlstore"
)

// storeFlags name the database for verbs that work on it directly (they
// also work while the server is down).
func storeConfig(cmd *cobra.Command) *serverFlags {
	f := &serverFlags{}
	fl := cmd.Flags()
	fl.StringVarP(&f.configFile, "config", "c", "", "server configuration file (env: STEWARD_CONFIG)")
	fl.StringVar(&f.dataDir, "data-dir", "", "data folder (default ./steward-data)")
	fl.StringVar(&f.storeURL, "store-url", "", "sqlite:PATH or postgres://… (default: SQLite in the data folder)")
	return f
}

func migrateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the embedded database migrations and print the schema version",
		Long: `Apply every embedded migration the database does not have yet. The server does
this on start as well; run it by hand before an upgrade to see it succeed first.`,
		Args: cobra.NoArgs,
	}
	f := storeConfig(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := f.load(cmd)
		if err != nil {
			return err
		}
		db, err := sqlstore.Open(cmd.Context(), cfg.Store.URL, sqlstore.Options{})
		if err != nil {
			return err
		}
		defer db.Close()
		v, err := db.SchemaVersion(cmd.Context())
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s store is at schema version %d\n", db.Backend(), v)
		return nil
	}
	return cmd
}

func auditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Work with the hash-chained audit log"}
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check every audit chain and name the first broken record",
		Long: `Walk each tenant's audit chain from its first record, recompute every hash and
compare it with the stored one and with the next record's link. Exits 0 when all
chains hold, 2 when one is broken (naming the tenant and the record).`,
		Args: cobra.NoArgs,
	}
	f := storeConfig(verify)
	var tenant string
	var asJSON bool
	verify.Flags().StringVar(&tenant, "tenant", "", "check only this tenant's chain")
	verify.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	verify.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := f.load(cmd)
		if err != nil {
			return err
		}
		db, err := sqlstore.Open(cmd.Context(), cfg.Store.URL, sqlstore.Options{})
		if err != nil {
			return err
		}
		defer db.Close()
		var only *string
		if cmd.Flags().Changed("tenant") {
			only = &tenant
		}
		w := cmd.OutOrStdout()
		progress := func(t string, n int64) {
			if !asJSON && n%50000 == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "  %s: %d records checked\n", chainName(t), n)
			}
		}
		reps, err := auditlog.Verify(cmd.Context(), db, only, progress)
		if err != nil {
			return err
		}
		ok := printVerify(w, reps, asJSON)
		if !ok {
			return exitCode(2)
		}
		return nil
	}
	cmd.AddCommand(verify)
	return cmd
}

func chainName(t string) string {
	if t == "" {
		return "platform"
	}
	return t
}

func printVerify(w io.Writer, reps []auditlog.ChainReport, asJSON bool) bool {
	ok := true
	for _, r := range reps {
		ok = ok && r.OK
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{"ok": ok, "chains": reps})
		return ok
	}
	for _, r := range reps {
		if r.OK {
			fmt.Fprintf(w, "ok      %-32s %d records\n", chainName(r.TenantID), r.Records)
		} else {
			fmt.Fprintf(w, "BROKEN  %-32s %s\n", chainName(r.TenantID), r.Error)
		}
	}
	if ok {
		fmt.Fprintf(w, "all %d chains verified\n", len(reps))
	} else {
		fmt.Fprintln(w, "the audit log has been altered: restore the database from a backup and investigate the named record")
	}
	return ok
}
