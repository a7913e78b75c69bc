package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward/internal/agent"
)

// agentCmd is `steward agent`: the device-side agent.
func agentCmd() *cobra.Command {
	var (
		cfg                                 agent.Config
		claim, slotsDir, script             string
		initialVersion, versionFile, logLvl string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the device agent: enroll, renew, twin, commands, telemetry and verified A/B updates",
		Long: `Run the Steward device agent on a device.

On first start it trusts the platform CA (--ca, or fetched from --server and checked
against --ca-fingerprint), makes an ECDSA P-256 key on the device and enrolls with
one of a bootstrap token, a claim code or a factory certificate. The key and the
certificate are kept in <state-dir>/identity.pem (mode 0600); later starts reuse them
and the enrollment flags are ignored. The certificate is renewed at 2/3 of its
lifetime.

The agent connects to the MQTT certificate listener with the device ID as client ID,
reports its twin (agent and firmware version, slot, uptime, telemetry interval),
honours the desired telemetry_interval (seconds), sends telemetry (uptime, load,
memory) every --telemetry-interval, and answers commands: ping, reboot,
update_check, wipe (erases the identity and state, then exits), and any other
through --command-hook.

Updates: on d/{id}/ota/assignment, at start-up and every --poll, the agent fetches
the signed metadata over mutual TLS, verifies it (vendor and director roles),
downloads the image with resume, checks its hash, installs it into the inactive slot,
switches, restarts, runs --health-cmd, then commits or rolls back, reporting each
step on d/{id}/ota/status.

  # simulation: a directory A/B installer in <state-dir>/slots
  steward agent --server https://steward.example:8443 --mqtt steward.example:8883 \
    --ca ca.crt --state-dir /var/lib/steward-agent --serial SN-0001 \
    --bootstrap-token "$(cat token)"

  # a real device: an installer script and a health check
  steward agent ... --install-script /usr/lib/steward/install \
    --health-cmd 'systemctl is-active myapp'

See docs/agent.md for the installer script contract and the key storage.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLvl)); err != nil {
				return fmt.Errorf("--log-level %q: use debug, info, warn or error", logLvl)
			}
			cfg.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lvl}))
			cfg.Out = cmd.OutOrStdout()
			cfg.AgentVersion = version
			if cfg.Enroll.BootstrapToken == "" {
				cfg.Enroll.BootstrapToken = os.Getenv("STEWARD_BOOTSTRAP_TOKEN")
			}
			if claim == "" {
				claim = os.Getenv("STEWARD_CLAIM")
			}
			if claim != "" {
				serial, code, ok := strings.Cut(claim, ":")
				if !ok || serial == "" || code == "" {
					return errors.New("--claim wants SERIAL:CODE (the device serial and its claim code)")
				}
				cfg.Enroll.ClaimSerial, cfg.Enroll.ClaimCode = serial, code
			}
			if cfg.StateDir == "" {
				return errors.New("--state-dir is required: the folder where the agent keeps its key, certificate and update state")
			}
			inst, err := installer(cfg.StateDir, slotsDir, script, initialVersion, versionFile)
			if err != nil {
				return err
			}
			cfg.Installer = inst
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			a, err := agent.New(ctx, cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Device %s: agent running (state in %s)\n", a.DeviceID(), cfg.StateDir)
			switch err := a.Run(ctx); {
			case errors.Is(err, agent.ErrWiped):
				fmt.Fprintln(cmd.OutOrStdout(), "Device wiped: identity and state erased.")
				return nil
			case errors.Is(err, agent.ErrRebooting):
				fmt.Fprintln(cmd.OutOrStdout(), "Device rebooting.")
				return nil
			default:
				return err
			}
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Server, "server", "", "enrollment and device HTTPS base URL, e.g. https://steward.example:8443")
	fl.StringVar(&cfg.MQTT, "mqtt", "", "MQTT certificate listener, host:port (e.g. steward.example:8883)")
	fl.StringVar(&cfg.CAFile, "ca", "", "platform CA (PEM); default: kept in the state folder, or fetched from --server on first run")
	fl.StringVar(&cfg.CAFingerprint, "ca-fingerprint", "", "SHA-256 (hex) of the platform root certificate, checked when the CA is fetched")
	fl.StringVar(&cfg.StateDir, "state-dir", "", "folder for the key (0600), certificate, CA, trusted update metadata and slots")
	fl.StringVar(&cfg.Enroll.BootstrapToken, "bootstrap-token", "", "enroll with this bootstrap token (stb_…; env STEWARD_BOOTSTRAP_TOKEN keeps it out of the process list)")
	fl.StringVar(&claim, "claim", "", "enroll with SERIAL:CODE, the device serial and its claim code (env STEWARD_CLAIM)")
	fl.StringVar(&cfg.Enroll.FactoryCert, "factory-cert", "", "enroll with this factory certificate (PEM), issued by a manufacturer CA registered for the product")
	fl.StringVar(&cfg.Enroll.FactoryKey, "factory-key", "", "private key (PEM) of --factory-cert")
	fl.StringVar(&cfg.Enroll.Serial, "serial", "", "device serial number named in the enrollment request (required with --bootstrap-token)")
	fl.StringVar(&slotsDir, "slots-dir", "", "directory A/B installer (simulation and tests; default <state-dir>/slots)")
	fl.StringVar(&script, "install-script", "", "installer hook for real devices, called as <script> current|install|switch|restart|commit|rollback (docs/agent.md)")
	fl.StringVar(&initialVersion, "initial-version", "1.0.0", "firmware version of a new --slots-dir")
	fl.StringVar(&versionFile, "version-file", "", "file holding the firmware version of a new --slots-dir (instead of --initial-version)")
	fl.StringVar(&cfg.HardwareID, "hardware-id", "", "hardware ID images must list (default: the one the platform names for the device)")
	fl.StringVar(&cfg.HealthCmd, "health-cmd", "", "health check after an update's restart, run with sh -c (STEWARD_NEW_VERSION is set); non-zero exit rolls back")
	fl.DurationVar(&cfg.HealthTimeout, "health-timeout", time.Minute, "how long the health check may take")
	fl.StringVar(&cfg.CommandHook, "command-hook", "", "program for commands the agent does not know: <hook> NAME, params JSON on stdin, result on stdout")
	fl.DurationVar(&cfg.TelemetryInterval, "telemetry-interval", time.Minute, "how often telemetry is sent (the twin's desired telemetry_interval overrides it)")
	fl.DurationVar(&cfg.SecurityInterval, "security-interval", 5*time.Minute, "how often listening ports, outbound connections, process count and ARP neighbours are reported (0 = never)")
	fl.DurationVar(&cfg.Poll, "poll", time.Hour, "how often to check for an update assignment that a missed message announced")
	fl.StringVar(&logLvl, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// installer is the script hook when given, else a directory A/B installer.
func installer(stateDir, slotsDir, script, initialVersion, versionFile string) (agent.Installer, error) {
	if script != "" {
		if slotsDir != "" {
			return nil, errors.New("pass --slots-dir or --install-script, not both")
		}
		if st, err := os.Stat(script); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("--install-script %s must be an executable file", script)
		}
		return &agent.ScriptInstaller{Hook: script, Env: []string{"STEWARD_STATE_DIR=" + stateDir}}, nil
	}
	if slotsDir == "" {
		slotsDir = filepath.Join(stateDir, "slots")
	}
	v := initialVersion
	if versionFile != "" {
		b, err := os.ReadFile(versionFile)
		if err != nil {
			return nil, fmt.Errorf("--version-file: %w", err)
		}
		v = strings.TrimSpace(string(b))
	}
	if v == "" {
		return nil, errors.New("the initial firmware version is empty: set --initial-version or --version-file")
	}
	if err := os.MkdirAll(slotsDir, 0o700); err != nil {
		return nil, err
	}
	return agent.NewDirInstaller(slotsDir, v)
}
