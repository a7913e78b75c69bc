package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward/internal/auditlog"
	"github.com/steward-iot/steward/internal/backup"
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

// openStore loads the configuration and opens (and migrates) its store.
func (f *serverFlags) openStore(cmd *cobra.Command) (*sqlstore.DB, error) {
	cfg, err := f.load(cmd)
	if err != nil {
		return nil, err
	}
	return sqlstore.Open(cmd.Context(), cfg.Store.URL, sqlstore.Options{})
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
		db, err := f.openStore(cmd)
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
		db, err := f.openStore(cmd)
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

func backupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Write a consistent snapshot of the database to a file",
		Long: `Read the whole database in one read-only transaction (one point in time, while the
server keeps running) and write it as a portable, compressed file. A backup of a SQLite
store restores into PostgreSQL and back.

  steward backup --out steward-$(date +%F).backup
  steward backup --store-url postgres://steward@db/steward --out nightly.backup`,
		Args: cobra.NoArgs,
	}
	f := storeConfig(cmd)
	var out string
	cmd.Flags().StringVarP(&out, "out", "o", "", "file to write (required; - for standard output)")
	cmd.MarkFlagRequired("out")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		db, err := f.openStore(cmd)
		if err != nil {
			return err
		}
		defer db.Close()
		w := cmd.OutOrStdout()
		var file *os.File
		if out != "-" {
			// Write next to the target and rename, so a failed backup never
			// leaves a truncated file under the final name.
			if file, err = os.CreateTemp(filepath.Dir(out), ".steward-backup-*"); err != nil {
				return err
			}
			defer os.Remove(file.Name())
			w = file
		}
		h, err := backup.Write(cmd.Context(), db, w, tableProgress(cmd.ErrOrStderr()))
		if err != nil {
			return err
		}
		if file != nil {
			if err := file.Sync(); err != nil {
				return err
			}
			if err := file.Close(); err != nil {
				return err
			}
			if err := os.Rename(file.Name(), out); err != nil {
				return err
			}
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "backup of %d tables (%s, schema %d) written to %s\n", len(h.Tables), h.Backend, h.SchemaVersion, out)
		return nil
	}
	return cmd
}

func restoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Load a backup into a new, empty database",
		Long: `Load a file written by 'steward backup' into an empty database (it is migrated
first). The restore runs in one transaction: if anything is wrong, the target stays
empty. Run 'steward audit verify' afterwards.

  steward restore --in nightly.backup --store-url postgres://steward@newdb/steward`,
		Args: cobra.NoArgs,
	}
	f := storeConfig(cmd)
	var in string
	cmd.Flags().StringVarP(&in, "in", "i", "", "backup file to read (required)")
	cmd.MarkFlagRequired("in")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := f.load(cmd)
		if err != nil {
			return err
		}
		file, err := os.Open(in)
		if err != nil {
			return err
		}
		defer file.Close()
		db, err := sqlstore.Open(cmd.Context(), cfg.Store.URL, sqlstore.Options{})
		if err != nil {
			return err
		}
		defer db.Close()
		h, err := backup.Restore(cmd.Context(), db, file, tableProgress(cmd.ErrOrStderr()))
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "restored %d tables from a %s backup of %s into %s\n", len(h.Tables), h.Backend,
			h.CreatedAt.Format("2006-01-02 15:04:05Z"), db.Backend())
		return nil
	}
	return cmd
}

func tableProgress(w io.Writer) backup.Progress {
	return func(table string, n int64) { fmt.Fprintf(w, "  %-24s %d rows\n", table, n) }
}
