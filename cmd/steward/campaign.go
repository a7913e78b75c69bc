package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward/internal/model"
)

// campaignCmd drives update campaigns through the API.
func campaignCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "campaign", Short: "Roll an update out to a fleet: create, watch, pause, resume, cancel",
		Long: `Update campaigns (see docs/ota.md#campaigns): a canary step, then waves, with a success gate
between waves and a failure threshold that aborts (or pauses) the campaign on its own.

  steward ota campaign create --name "thermostat 2.0.0" --artifact <art-id> --product <prd-id> \
      --canary 5 --wave-size 500 --interval 30m --max-failure 0.05 --window 02:00-05:00@Europe/Berlin
  steward ota campaign show <cmp-id> --watch
  steward ota campaign pause <cmp-id> --reason "weekend"
  steward ota campaign resume <cmp-id>
  steward ota campaign cancel <cmp-id> --reason "wrong build"
  steward ota invalidate <art-id> --reason "bricks the radio"`}
	cmd.AddCommand(campaignCreateCmd(), campaignListCmd(), campaignShowCmd())
	for _, verb := range []string{"pause", "resume", "cancel"} {
		cmd.AddCommand(campaignActionCmd(verb))
	}
	return cmd
}

func campaignCreateCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "create", Short: "Start a campaign of an artifact over a fleet query", Args: cobra.NoArgs}
	f := addAPIFlags(cmd)
	var name, artifact, product, group, firmware, minVersion, maxVersion, interval, window string
	var tags, states []string
	var canary, waveSize int
	var success, maxFailure float64
	var dynamic, pause, consent, noConsent bool
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "campaign name (required)")
	fl.StringVar(&artifact, "artifact", "", "artifact ID: a signed, uploaded image (required)")
	fl.StringVar(&product, "product", "", "target devices of this product")
	fl.StringVar(&group, "group", "", "target the devices of this group")
	fl.StringSliceVar(&tags, "tag", nil, "target devices carrying this tag; repeat for several (all must match)")
	fl.StringSliceVar(&states, "state", nil, "target devices in this state; repeat (default: every state that can update)")
	fl.StringVar(&firmware, "firmware", "", "target devices running exactly this version")
	fl.StringVar(&minVersion, "min-version", "", "target devices running this version or newer")
	fl.StringVar(&maxVersion, "max-version", "", "target devices running a version older than this")
	fl.IntVar(&canary, "canary", 0, "devices in the canary step (0 = none)")
	fl.IntVar(&waveSize, "wave-size", 0, "devices per wave (default 100)")
	fl.StringVar(&interval, "interval", "", "least time between two waves, e.g. 30m")
	fl.Float64Var(&success, "success", 0.9, "share of a wave that must succeed before the next starts (0–1)")
	fl.Float64Var(&maxFailure, "max-failure", 0.1, "share of failed or rolled back devices that stops the campaign (0–1)")
	fl.BoolVar(&pause, "pause-on-failure", false, "pause instead of aborting when the failure threshold is crossed")
	fl.BoolVar(&dynamic, "dynamic", false, "devices that match later join (the campaign stays open)")
	fl.StringVar(&window, "window", "", "maintenance window START-END[@TIMEZONE][/DAYS], e.g. 02:00-05:00@Europe/Berlin/mon,tue")
	fl.BoolVar(&consent, "consent", false, "ask the owner before each device installs (the default for households)")
	fl.BoolVar(&noConsent, "no-consent", false, "do not ask the owner, even in a household tenant")
	cmd.MarkFlagRequired("name")
	cmd.MarkFlagRequired("artifact")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		q := map[string]any{}
		set := func(k string, v any, ok bool) {
			if ok {
				q[k] = v
			}
		}
		set("product_id", product, product != "")
		set("group_id", group, group != "")
		set("tags", tags, len(tags) > 0)
		set("states", states, len(states) > 0)
		set("firmware_version", firmware, firmware != "")
		set("min_version", minVersion, minVersion != "")
		set("max_version", maxVersion, maxVersion != "")
		body := map[string]any{"name": name, "artifact_id": artifact, "query": q, "canary": canary, "wave_size": waveSize,
			"dynamic": dynamic, "pause_on_failure": pause}
		if interval != "" {
			body["wave_interval"] = interval
		}
		body["success_ratio"], body["max_failure_ratio"] = success, maxFailure
		if consent && noConsent {
			return fmt.Errorf("--consent and --no-consent contradict each other: pick one")
		}
		if consent || noConsent {
			body["require_consent"] = consent
		}
		if window != "" {
			w, err := parseWindow(window)
			if err != nil {
				return err
			}
			body["maintenance_window"] = w
		}
		return f.call(cmd, http.MethodPost, "/campaigns", body, printCampaign)
	}
	return cmd
}

// parseWindow reads START-END[@TIMEZONE][/DAYS].
func parseWindow(s string) (*model.MaintenanceWindow, error) {
	bad := func(why string) error {
		return fmt.Errorf("--window %q: %s (want START-END[@TIMEZONE][/DAYS], e.g. 02:00-05:00@Europe/Berlin/mon,tue)", s, why)
	}
	var w model.MaintenanceWindow
	rest := s
	if i := strings.Index(rest, "@"); i >= 0 {
		zone := rest[i+1:]
		rest = rest[:i]
		// The days follow the last slash when it is not part of the zone.
		if j := strings.LastIndex(zone, "/"); j >= 0 && !strings.ContainsAny(zone[j+1:], "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") {
			w.Days = strings.Split(zone[j+1:], ",")
			zone = zone[:j]
		}
		w.TimeZone = zone
	} else if j := strings.Index(rest, "/"); j >= 0 {
		w.Days = strings.Split(rest[j+1:], ",")
		rest = rest[:j]
	}
	start, end, ok := strings.Cut(rest, "-")
	if !ok {
		return nil, bad("no START-END")
	}
	w.Start, w.End = start, end
	if err := w.Validate(); err != nil {
		return nil, bad(err.Error())
	}
	return &w, nil
}

func campaignListCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "list", Short: "List campaigns, newest first", Args: cobra.NoArgs}
	f := addAPIFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return f.call(cmd, http.MethodGet, "/campaigns?limit=100", nil, func(w io.Writer, out map[string]any) {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tVERSION\tSTATE\tWAVE\tDEVICES")
			items, _ := out["items"].([]any)
			for _, it := range items {
				c, _ := it.(map[string]any)
				fmt.Fprintf(tw, "%v\t%v\t%v\t%v\t%v\t%v\n", c["id"], c["name"], c["version"], c["state"], c["wave"], c["total"])
			}
			tw.Flush()
		})
	}
	return cmd
}

func campaignShowCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "show CAMPAIGN", Short: "Show a campaign's progress (--watch follows it until it ends)", Args: cobra.ExactArgs(1)}
	f := addAPIFlags(cmd)
	var watch bool
	var every time.Duration
	cmd.Flags().BoolVar(&watch, "watch", false, "print the progress again until the campaign ends")
	cmd.Flags().DurationVar(&every, "every", 2*time.Second, "how often --watch looks")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		path := "/campaigns/" + url.PathEscape(args[0])
		for {
			var state string
			if err := f.call(cmd, http.MethodGet, path, nil, func(w io.Writer, out map[string]any) {
				state, _ = out["state"].(string)
				printCampaign(w, out)
			}); err != nil {
				return err
			}
			if !watch || (state != string(model.CampaignRunning) && state != string(model.CampaignPaused)) {
				return nil
			}
			select {
			case <-cmd.Context().Done():
				return nil
			case <-time.After(every):
			}
		}
	}
	return cmd
}

func campaignActionCmd(verb string) *cobra.Command {
	short := map[string]string{"pause": "Pause a campaign (devices already told go on)", "resume": "Resume a paused campaign",
		"cancel": "Cancel a campaign: unfinished devices are cancelled and their assignments withdrawn"}[verb]
	cmd := &cobra.Command{Use: verb + " CAMPAIGN", Short: short, Args: cobra.ExactArgs(1)}
	if verb == "resume" {
		cmd.Long = `Resume a paused campaign.

When its failure threshold is crossed (the failure gate paused it, or would at once), resuming
accepts what happened so far and re-arms the gates: the failures and devices told up to now no
longer count against the threshold, and the wave in progress is taken as passed, so the next
wave starts once the wave interval has passed. A campaign paused by hand while healthy resumes as it
was: the wave in progress must still pass its success gate.`
	}
	f := addAPIFlags(cmd)
	var reason string
	if verb != "resume" {
		cmd.Flags().StringVar(&reason, "reason", "", "why (kept in the audit log)")
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return f.call(cmd, http.MethodPost, "/campaigns/"+url.PathEscape(args[0])+"/"+verb, map[string]any{"reason": reason}, printCampaign)
	}
	return cmd
}

func otaInvalidateCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "invalidate ARTIFACT", Short: "Mark a release bad: cancel its campaigns, withdraw it, list who runs it",
		Args: cobra.ExactArgs(1)}
	f := addAPIFlags(cmd)
	var reason string
	cmd.Flags().StringVar(&reason, "reason", "", "why the release is bad (required)")
	cmd.MarkFlagRequired("reason")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return f.call(cmd, http.MethodPost, "/artifacts/"+url.PathEscape(args[0])+"/invalidate", map[string]any{"reason": reason},
			func(w io.Writer, out map[string]any) {
				cancelled, _ := out["cancelled_campaigns"].([]any)
				fmt.Fprintf(w, "release %s invalidated: %d campaign(s) cancelled, %v assignment(s) withdrawn, %v device(s) already run it\n",
					args[0], len(cancelled), out["withdrawn"], out["installed"])
				if q, ok := out["follow_up_query"].(map[string]any); ok {
					fmt.Fprintf(w, "follow-up: steward ota campaign create --artifact <fixed> --firmware %v", q["firmware_version"])
					if p, ok := q["product_id"].(string); ok && p != "" {
						fmt.Fprintf(w, " --product %s", p)
					}
					fmt.Fprintln(w, " --name …")
				}
			})
	}
	return cmd
}

// printCampaign prints one campaign with a progress line per status.
func printCampaign(w io.Writer, c map[string]any) {
	fmt.Fprintf(w, "%v  %v  (release %v)\n", c["id"], c["name"], c["version"])
	fmt.Fprintf(w, "state %v, wave %v, %v device(s)", c["state"], c["wave"], c["total"])
	if r, _ := c["reason"].(string); r != "" {
		fmt.Fprintf(w, " — %s", r)
	}
	fmt.Fprintln(w)
	counts, _ := c["counts"].(map[string]any)
	total, _ := c["total"].(float64)
	var keys []string
	for k := range counts {
		keys = append(keys, k)
	}
	order := map[model.UpdateStatus]int{}
	for i, s := range model.UpdateStatuses {
		order[s] = i
	}
	sort.Slice(keys, func(i, j int) bool { return order[model.UpdateStatus(keys[i])] < order[model.UpdateStatus(keys[j])] })
	for _, k := range keys {
		n, _ := counts[k].(float64)
		bar := ""
		if total > 0 {
			bar = strings.Repeat("█", int(n/total*30+0.5))
		}
		fmt.Fprintf(w, "  %-12s %6.0f %s\n", k, n, bar)
	}
}
