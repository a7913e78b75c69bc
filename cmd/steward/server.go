package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/config"
	"github.com/steward-iot/steward/internal/platform"
)

// serverFlags are the command-line overrides of the configuration.
type serverFlags struct {
	configFile, dataDir, listen, storeURL, busURL, logLevel string
	dev, demo                                               bool
}

func (f *serverFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.configFile, "config", "c", "", "YAML configuration file (env: STEWARD_CONFIG)")
	fl.StringVar(&f.dataDir, "data-dir", "", "data folder (default ./steward-data; env: STEWARD_DATA_DIR)")
	fl.StringVar(&f.listen, "listen", "", "HTTP listen address (default 127.0.0.1:8080; env: STEWARD_HTTP_LISTEN)")
	fl.StringVar(&f.storeURL, "store-url", "", "sqlite:PATH or postgres://… (default: SQLite in the data folder; env: STEWARD_STORE_URL)")
	fl.StringVar(&f.busURL, "bus-url", "", "external NATS with JetStream, nats://host:port (default: embedded; env: STEWARD_BUS_URL)")
	fl.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (env: STEWARD_LOG_LEVEL)")
	fl.BoolVar(&f.dev, "dev", false, "zero-config local run: SQLite and embedded NATS in the data folder, plain HTTP on loopback")
	fl.BoolVar(&f.demo, "demo", false, "with --dev: run a simulated fleet of about 1,000 devices in-process (tenant \"Demo fleet\")")
}

// load builds the configuration: defaults < file < environment < flags.
func (f *serverFlags) load(cmd *cobra.Command) (config.Config, error) {
	cfg := config.Default()
	file := f.configFile
	if file == "" {
		file = os.Getenv("STEWARD_CONFIG")
	}
	if file != "" {
		if err := cfg.LoadFile(file); err != nil {
			return cfg, err
		}
	}
	if err := cfg.LoadEnv(os.LookupEnv); err != nil {
		return cfg, err
	}
	set := func(name string, dst *string, v string) {
		if cmd.Flags().Changed(name) {
			*dst = v
		}
	}
	set("data-dir", &cfg.DataDir, f.dataDir)
	set("listen", &cfg.HTTP.Listen, f.listen)
	set("store-url", &cfg.Store.URL, f.storeURL)
	set("bus-url", &cfg.Bus.URL, f.busURL)
	set("log-level", &cfg.Log.Level, f.logLevel)
	if cmd.Flags().Changed("dev") {
		cfg.Dev = f.dev
	}
	if !cfg.Dev && file == "" && os.Getenv("STEWARD_CONFIG") == "" && !cmd.Flags().Changed("store-url") &&
		os.Getenv("STEWARD_STORE_URL") == "" && cmd.Name() == "server" {
		return cfg, fmt.Errorf("no configuration: pass --config FILE (see docs/configuration.md) or use --dev for a local trial")
	}
	return cfg, cfg.Validate()
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serverCmd() *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the platform: REST API, event bus, webhooks",
		Long: `Run the Steward platform.

  steward server --dev               zero-config local run (SQLite + embedded NATS in ./steward-data)
  steward server --config steward.yaml

Configuration comes from defaults, then the YAML file, then STEWARD_* environment
variables, then flags. Everything is checked before start-up; a bad value stops the
server with the name of the field. On first start a platform admin API key is
written to <data-dir>/admin-api-key (mode 0600); it is never logged.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.load(cmd)
			if err != nil {
				return err
			}
			if f.demo && !cfg.Dev {
				return fmt.Errorf("--demo runs only with --dev (a local trial)")
			}
			log := newLogger(cfg, os.Stderr)
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			srv, err := platform.New(ctx, cfg, log, version)
			if err != nil {
				return err
			}
			if err := srv.Start(ctx); err != nil {
				srv.Shutdown(context.Background())
				return err
			}
			printBanner(cmd.OutOrStdout(), srv)
			if f.demo {
				stopDemo, err := startDemo(ctx, srv, log, cmd.ErrOrStderr())
				if err != nil {
					srv.Shutdown(context.Background())
					return err
				}
				defer stopDemo() // runs after Shutdown below: the fleet sees the server go away
				fmt.Fprintf(cmd.OutOrStdout(), "  Demo       %d simulated devices in tenant %q\n\n", demoDevices, demoTenant)
			}
			<-ctx.Done()
			log.Info("shutting down")
			sctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.ShutdownTimeout)
			defer cancel()
			return srv.Shutdown(sctx)
		},
	}
	f.register(cmd)
	return cmd
}

func printBanner(w io.Writer, srv *platform.Server) {
	u := srv.URL()
	keyFile := filepath.Join(srv.Config.DataDir, platform.AdminKeyFile)
	fmt.Fprintf(w, "\nSteward %s is running (store: %s, bus: %s)\n\n", version, srv.Store.Backend(), busKind(srv))
	fmt.Fprintf(w, "  Dashboard  %s/\n", u)
	if srv.Config.Dev {
		fmt.Fprintf(w, "  Sign in    %s", filepath.Join(srv.Config.DataDir, platform.AdminCredentialsFile))
		if srv.AdminCredentialsPath != "" {
			fmt.Fprint(w, "   (created now)")
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  API        %s/api/v1   (docs: %s/api/v1/docs)\n", u, u)
	if e := srv.ESTURL(); e != "" {
		fmt.Fprintf(w, "  Enroll     %s/.well-known/est   (CA sha256 %s)\n", e, srv.Identity.CA().Fingerprint())
	}
	if m := srv.MQTTAddr(broker.ListenerCert); m != "" {
		fmt.Fprintf(w, "  MQTT       mqtts://%s   (device certificates; topics in docs/protocol.md)\n", m)
	}
	fmt.Fprintf(w, "  Admin key  %s", keyFile)
	if srv.AdminKeyPath != "" {
		fmt.Fprint(w, "   (created now)")
	}
	ca := ""
	if srv.Config.TLS() && srv.Config.HTTP.CertFile == "" {
		ca = "--cacert " + filepath.Join(srv.Config.DataDir, "tls", "server.crt") + " "
	}
	fmt.Fprintf(w, "\n\nTry:  curl %s-H \"Authorization: Bearer $(cat %s)\" %s/api/v1/tenants\n\n", ca, keyFile, u)
}

func busKind(srv *platform.Server) string {
	if srv.Bus.Embedded() {
		return "embedded NATS"
	}
	return "external NATS"
}
