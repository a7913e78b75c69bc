package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward/internal/sim"
)

// simCmd is `steward sim`: a fleet of simulated devices against a server.
func simCmd() *cobra.Command {
	var (
		n                                  int
		api, keyFile, tenant, product, est string
		mqtt, caFile, mix, prefix          string
		interval, duration                 time.Duration
		connectRate                        float64
		enrollConc                         int
		seed                               uint64
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulate a fleet of devices against a running server",
		Long: `Simulate N devices against a running Steward platform. Each device makes a key,
enrolls over EST with its own bootstrap token (created through the API for --product),
connects to the MQTT certificate listener, reports its twin and telemetry every
--interval, and answers commands. Behaviours are mixed (--mix): well-behaved, flaky
network, outdated firmware, compromised. With several --mqtt endpoints a device moves
to the next one when its connection fails. A progress line is printed every second;
the run ends after --duration (0 = until interrupted).

  steward sim --api http://127.0.0.1:8080 --api-key-file steward-data/admin-api-key \
    --tenant ten_… --product prd_… --est https://127.0.0.1:8443 --mqtt 127.0.0.1:8883 \
    --ca steward-data/pki/root.crt -n 1000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if api == "" || keyFile == "" || tenant == "" || product == "" || est == "" || mqtt == "" || caFile == "" {
				return errors.New("--api, --api-key-file, --tenant, --product, --est, --mqtt and --ca are required")
			}
			key, err := os.ReadFile(keyFile)
			if err != nil {
				return err
			}
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return err
			}
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				return fmt.Errorf("%s: no PEM certificate", caFile)
			}
			m, err := sim.ParseMix(mix)
			if err != nil {
				return err
			}
			tokens, err := sim.APITokens(strings.TrimSuffix(api, "/"), strings.TrimSpace(string(key)), tenant, product)
			if err != nil {
				return err
			}
			var endpoints []string
			for _, e := range strings.Split(mqtt, ",") {
				if e = strings.TrimSpace(e); e != "" {
					endpoints = append(endpoints, e)
				}
			}
			s, err := sim.New(sim.Config{Devices: n, ESTURL: est, Tokens: tokens, MQTT: endpoints, Roots: roots,
				SerialPrefix: prefix, Interval: interval, Mix: m, EnrollConcurrency: enrollConc, ConnectRate: connectRate,
				Progress: cmd.ErrOrStderr(), Seed: seed})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			return s.Run(ctx)
		},
	}
	fl := cmd.Flags()
	fl.IntVarP(&n, "devices", "n", 100, "number of simulated devices")
	fl.StringVar(&api, "api", "", "server base URL, e.g. http://127.0.0.1:8080")
	fl.StringVar(&keyFile, "api-key-file", "", "file holding an API key allowed to create bootstrap tokens")
	fl.StringVar(&tenant, "tenant", "", "tenant ID of the devices")
	fl.StringVar(&product, "product", "", "product ID of the devices")
	fl.StringVar(&est, "est", "", "enrollment base URL, e.g. https://127.0.0.1:8443")
	fl.StringVar(&mqtt, "mqtt", "", "MQTT certificate listener(s), host:port, comma separated (failover order)")
	fl.StringVar(&caFile, "ca", "", "platform CA certificate (data_dir/pki/root.crt)")
	fl.StringVar(&mix, "mix", "well=85,flaky=10,outdated=4.9,compromised=0.1", "behaviour weights")
	fl.StringVar(&prefix, "serial-prefix", "SIM", "device serial numbers are PREFIX-000001 …")
	fl.DurationVar(&interval, "interval", 10*time.Second, "telemetry interval per device")
	fl.DurationVar(&duration, "duration", 0, "stop after this long (0 = until interrupted)")
	fl.Float64Var(&connectRate, "connect-rate", 1000, "new connections per second at most")
	fl.IntVar(&enrollConc, "enroll-concurrency", 32, "parallel enrollments")
	fl.Uint64Var(&seed, "seed", 0, "seed for behaviours and jitter (0 = random)")
	return cmd
}
