// Command steward is the whole platform in one binary: the server, the
// admin verbs that drive its API, and the store tools.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward/internal/client"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

func main() {
	root := &cobra.Command{
		Use:   "steward",
		Short: "Steward: a self-hosted managed IoT platform",
		Long: `Steward keeps a fleet of connected devices known, authenticated, updated and watched
for their whole life, and retires them safely at the end.

Start a local platform with zero configuration:
  steward server --dev

Then drive it from another terminal (the admin key is read from ./steward-data):
  steward tenant create --name acme --kind enterprise
  steward device list --tenant <tenant-id>`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serverCmd(), versionCmd(), migrateCmd(), auditCmd(), backupCmd(), restoreCmd(),
		tenantCmd(), productCmd(), deviceCmd(), apiKeyCmd())
	root.AddCommand(identityCmds(root)...) // identity.go
	root.AddCommand(securityCmds()...)     // security.go
	root.AddCommand(otaCmd())              // ota.go
	root.AddCommand(simCmd())              // sim.go
	root.AddCommand(agentCmd())            // agent.go
	if err := root.Execute(); err != nil {
		var p *client.Problem
		if errors.As(err, &p) {
			fmt.Fprintln(os.Stderr, "error:", p.Error())
		} else {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		os.Exit(1)
	}
}

// exitCode lets a command choose its exit status.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "steward", version)
		},
	}
}
