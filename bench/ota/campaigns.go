package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/steward-iot/steward/bench/internal/fleet"
	"github.com/steward-iot/steward/bench/internal/summary"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/ota"
	"github.com/steward-iot/steward/internal/ota/tufmeta"
	"github.com/steward-iot/steward/internal/store/sqlstore"
)

// The campaign measurement: a generated fleet bulk-loaded as bench/fleetquery
// does it, a signed release for all of the big tenant's products, then
// ota.Service.CreateCampaign (the real domain call through the real store)
// timed for a few fresh campaigns per query, and the scheduler's first
// wave after creation (StepCampaigns).

// campaignTarget is the target for creating a campaign over
// 1,000,000 devices.
const campaignTarget = 10 * time.Second

type campaignOptions struct {
	Devices  int    // devices of the measured tenant (0 = no campaign measurement)
	Backend  string // sqlite, postgres or both
	Rounds   int    // fresh campaigns per query
	WaveSize int
	PG       string
	Dir      string
	Keep     bool
	Seed     uint64
	Log      io.Writer
}

// allStates are every lifecycle state: a query naming them all targets
// every device of the artifact's products.
var allStates = []model.State{model.StateManufactured, model.StateClaimed, model.StateProvisioned, model.StateActive,
	model.StateQuarantined, model.StateSuspended, model.StateEndOfSupport, model.StateDecommissioned}

// updatable are the states a campaign targets when its query names none
// (sqlstore's default; repeated here to count the expected devices).
var updatable = []model.State{model.StateClaimed, model.StateProvisioned, model.StateActive, model.StateQuarantined,
	model.StateEndOfSupport}

// campaignQuery is one campaign's device query.
type campaignQuery struct {
	name  string
	query model.DeviceQuery
	// wave: the first wave is measured on these campaigns.
	wave bool
}

var campaignQueries = []campaignQuery{
	{"every device (all states)", model.DeviceQuery{States: allStates}, true},
	{"default query (updatable states)", model.DeviceQuery{}, false},
	{`tag "prod" + firmware < 2.0.0`, model.DeviceQuery{Tags: []string{"prod"}, MaxVersion: "2.0.0"}, false},
}

// expected counts the generated devices of tenant one that q targets.
func expected(ds *fleet.Dataset, q model.DeviceQuery) (int64, error) {
	states := q.States
	if len(states) == 0 {
		states = updatable
	}
	var maxKey string
	if q.MaxVersion != "" {
		k, err := model.VersionKey(q.MaxVersion)
		if err != nil {
			return 0, err
		}
		maxKey = k
	}
	var n int64
	for _, i := range ds.T1 {
		d := &ds.Devices[i]
		if !slices.Contains(states, d.State) || !slices.Contains(ds.T1Prods, d.ProductID) {
			continue
		}
		if !slices.ContainsFunc(q.Tags, func(t string) bool { return !slices.Contains(d.Tags, t) }) {
			if maxKey != "" {
				if d.FirmwareVersion == "" {
					continue
				}
				k, err := model.VersionKey(d.FirmwareVersion)
				if err != nil {
					return 0, err
				}
				if k >= maxKey {
					continue
				}
			}
			n++
		}
	}
	return n, nil
}

// campaignResult is one query's creations on one backend.
type campaignResult struct {
	Name     string
	Want     int64 // devices the query selects in the generated fleet
	Targeted int64 // the campaigns' totals (all the same)
	Samples  []time.Duration
	// CPU is this process's CPU time (user + system) per creation: on
	// SQLite that is the database's work too, whatever else the machine
	// runs (PostgreSQL works in its own processes: not reported).
	CPU []time.Duration
}

// waveResult is the first wave started after creation.
type waveResult struct {
	WaveSize int
	Told     int64 // devices notified in the first wave
	Samples  []time.Duration
}

type campaignRun struct {
	Backend string
	Version string
	Devices int
	Load    fleet.LoadStats
	Results []*campaignResult
	Wave    *waveResult
}

type campaignReport struct {
	Options  campaignOptions
	Started  time.Time
	Generate time.Duration
	Runs     []*campaignRun
}

func runCampaigns(ctx context.Context, o campaignOptions) (*campaignReport, error) {
	backends, err := fleet.Backends(o.Backend)
	if err != nil {
		return nil, err
	}
	if o.Rounds < 1 || o.WaveSize < 1 || o.WaveSize > ota.MaxWaveSize {
		return nil, fmt.Errorf("-campaign-rounds must be positive and -wave-size between 1 and %d", ota.MaxWaveSize)
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	rep := &campaignReport{Options: o, Started: time.Now()}
	// A second, small tenant with look-alike devices: the campaign must
	// take none of them.
	n2 := min(10_000, max(o.Devices/10, 1))
	fmt.Fprintf(o.Log, "generating %d + %d devices …\n", o.Devices, n2)
	t0 := time.Now()
	ds, err := fleet.Generate(o.Seed, o.Devices, n2, time.Now())
	if err != nil {
		return nil, err
	}
	rep.Generate = time.Since(t0)
	for _, b := range backends {
		run, err := campaignBackend(ctx, o, b, ds)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b, err)
		}
		rep.Runs = append(rep.Runs, run)
	}
	return rep, nil
}

func campaignBackend(ctx context.Context, o campaignOptions, backend string, ds *fleet.Dataset) (*campaignRun, error) {
	tg, err := fleet.NewTarget(ctx, backend, o.Dir, o.PG, o.Keep, o.Log)
	if err != nil {
		return nil, err
	}
	defer tg.Close()
	db, ld, err := tg.Load(ctx, ds)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	run := &campaignRun{Backend: backend, Version: tg.Version, Devices: o.Devices, Load: ld}
	if tg.Kept != "" {
		fmt.Fprintf(o.Log, "%s: kept at %s\n", backend, tg.Kept)
	}

	work, err := os.MkdirTemp(o.Dir, "steward-bench-ota-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	svc, artID, err := release(ctx, db, ds, work)
	if err != nil {
		return nil, fmt.Errorf("preparing the release: %w", err)
	}
	tenant := ds.Tenants[0].ID
	noConsent := false
	var every []string // the campaigns over every device, for the wave
	for _, q := range campaignQueries {
		res := &campaignResult{Name: q.name}
		if res.Want, err = expected(ds, q.query); err != nil {
			return nil, err
		}
		for r := range o.Rounds {
			in := ota.CampaignInput{Name: fmt.Sprintf("bench %s #%d", q.name, r+1), ArtifactID: artID, Query: q.query,
				WaveSize: o.WaveSize, RequireConsent: &noConsent}
			cpu0, t0 := cpuTime(), time.Now()
			c, err := svc.CreateCampaign(ctx, "bench", tenant, in)
			took, cpu := time.Since(t0), cpuTime()-cpu0
			if err != nil {
				return nil, fmt.Errorf("CreateCampaign (%s): %w", q.name, err)
			}
			res.Samples, res.CPU = append(res.Samples, took), append(res.CPU, cpu)
			if c.Total != res.Want {
				return nil, fmt.Errorf("%s: campaign %d targeted %d devices, the fleet has %d that match", q.name, r+1, c.Total, res.Want)
			}
			res.Targeted = c.Total
			fmt.Fprintf(o.Log, "%s: %s, round %d: %d devices in %v (CPU %v)\n", backend, q.name, r+1, c.Total,
				took.Round(time.Millisecond), cpu.Round(time.Millisecond))
			// Paused at once, so that the scheduler steps below only
			// move the campaign being measured.
			if _, err := svc.PauseCampaign(ctx, "bench", tenant, c.ID, "benchmark"); err != nil {
				return nil, err
			}
			if q.wave {
				every = append(every, c.ID)
			}
		}
		run.Results = append(run.Results, res)
	}

	// The first wave: the scheduler's round right after creation takes
	// wave_size devices and signs each one's assignment.
	run.Wave = &waveResult{WaveSize: o.WaveSize}
	for i, id := range every {
		if _, err := svc.ResumeCampaign(ctx, "bench", tenant, id); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if err := svc.StepCampaigns(ctx); err != nil {
			return nil, fmt.Errorf("StepCampaigns: %w", err)
		}
		took := time.Since(t0)
		counts, err := db.CampaignCounts(ctx, tenant, id, 1)
		if err != nil {
			return nil, err
		}
		told := counts[model.UpdateNotified]
		if i > 0 && told != run.Wave.Told {
			return nil, fmt.Errorf("first wave of campaign %d told %d devices, an earlier one %d", i+1, told, run.Wave.Told)
		}
		run.Wave.Told = told
		run.Wave.Samples = append(run.Wave.Samples, took)
		fmt.Fprintf(o.Log, "%s: first wave, round %d: %d devices told in %v\n", backend, i+1, told, took.Round(time.Millisecond))
		if _, err := svc.PauseCampaign(ctx, "bench", tenant, id, "benchmark"); err != nil {
			return nil, err
		}
	}
	return run, nil
}

// release sets up the tenant's OTA state as a vendor would: an uploaded
// artifact for every product of the big tenant, a vendor root and vendor
// targets, signed with fresh keys, that list it. It returns the update
// service (with a director, so waves can be assigned) and the artifact.
func release(ctx context.Context, db *sqlstore.DB, ds *fleet.Dataset, dir string) (*ota.Service, string, error) {
	blobs, err := ota.OpenBlobs(filepath.Join(dir, "artifacts"))
	if err != nil {
		return nil, "", err
	}
	svc := ota.New(db, blobs)
	dir2, err := ota.OpenDirector(filepath.Join(dir, "pki"))
	if err != nil {
		return nil, "", err
	}
	svc.UseDirector(dir2)

	tenant, actor, version := ds.Tenants[0].ID, "bench", "4.0.0"
	// The devices' hardware ID is their product ID (no hardware revision,
	// no hardware_id attribute).
	hw := slices.Clone(ds.T1Prods)
	name := "fw-" + version + ".bin"
	art, err := svc.CreateArtifact(ctx, actor, tenant, ota.ArtifactInput{Name: name, Version: version, ProductIDs: ds.T1Prods, HardwareIDs: hw})
	if err != nil {
		return nil, "", err
	}
	image := make([]byte, 64<<10)
	rand.Read(image)
	sum := sha256.Sum256(image)
	digest := hex.EncodeToString(sum[:])
	if _, err := svc.Upload(ctx, actor, tenant, art.ID, strings.NewReader(string(image)), digest); err != nil {
		return nil, "", err
	}

	rootKey, err := tufmeta.GenerateKey()
	if err != nil {
		return nil, "", err
	}
	targetsKey, err := tufmeta.GenerateKey()
	if err != nil {
		return nil, "", err
	}
	root, err := tufmeta.NewRoot(1, time.Now().AddDate(1, 0, 0), tufmeta.RoleKeys{Keys: []*metadata.Key{rootKey.Public}, Threshold: 1},
		tufmeta.RoleKeys{Keys: []*metadata.Key{targetsKey.Public}, Threshold: 1})
	if err != nil {
		return nil, "", err
	}
	if err := tufmeta.Sign(root, rootKey); err != nil {
		return nil, "", err
	}
	rootBody, err := tufmeta.Encode(root)
	if err != nil {
		return nil, "", err
	}
	if _, err := svc.PutVendorRoot(ctx, actor, tenant, rootBody); err != nil {
		return nil, "", fmt.Errorf("vendor root: %w", err)
	}
	targets := tufmeta.NewTargets(1, time.Now().AddDate(0, 1, 0))
	if err := tufmeta.AddTarget(targets, name, int64(len(image)), digest, tufmeta.ImageInfo{Version: version, HardwareIDs: hw}); err != nil {
		return nil, "", err
	}
	if err := tufmeta.Sign(targets, targetsKey); err != nil {
		return nil, "", err
	}
	targetsBody, err := tufmeta.Encode(targets)
	if err != nil {
		return nil, "", err
	}
	if _, err := svc.PutVendorTargets(ctx, actor, tenant, targetsBody); err != nil {
		return nil, "", fmt.Errorf("vendor targets: %w", err)
	}
	return svc, art.ID, nil
}

// cpuTime is the CPU time (user + system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func medianDur(v []time.Duration) time.Duration {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// cpuCell is the median CPU time of an in-process database (SQLite).
func cpuCell(backend string, v []time.Duration) string {
	if backend != "sqlite" {
		return "–"
	}
	return secs(medianDur(v))
}

func verdict(d time.Duration) string {
	if d < campaignTarget {
		return "PASS"
	}
	return "FAIL"
}

func (rep *campaignReport) print(w io.Writer, markdown bool) {
	o := rep.Options
	fmt.Fprintf(w, "update campaigns: %d devices in the measured tenant, %d fresh campaigns per query, wave_size %d (target: creation < %v)\n",
		o.Devices, o.Rounds, o.WaveSize, campaignTarget)
	for _, r := range rep.Runs {
		fmt.Fprintf(w, "- %s: %s; fleet loaded in %s (%d devices, %d tag rows, %d attribute rows)\n", r.Backend, r.Version,
			secs(r.Load.Total()), r.Load.Devices, r.Load.Tags, r.Load.Attrs)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "backend\tmeasurement\tdevices targeted\tn\tmedian\tmax\tSQLite CPU (median)\ttarget\tresult\t")
	for _, r := range rep.Runs {
		for _, c := range r.Results {
			m := slices.Max(c.Samples)
			fmt.Fprintf(tw, "%s\tCreateCampaign: %s\t%d\t%d\t%s\t%s\t%s\t< 10 s\t%s\t\n", r.Backend, c.Name, c.Targeted, len(c.Samples),
				secs(medianDur(c.Samples)), secs(m), cpuCell(r.Backend, c.CPU), verdict(m))
		}
		if wv := r.Wave; wv != nil && len(wv.Samples) > 0 {
			fmt.Fprintf(tw, "%s\tfirst wave (StepCampaigns, wave_size %d)\t%d\t%d\t%s\t%s\t–\t–\t–\t\n", r.Backend, wv.WaveSize, wv.Told,
				len(wv.Samples), secs(medianDur(wv.Samples)), secs(slices.Max(wv.Samples)))
		}
	}
	tw.Flush()
	if markdown {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| backend | measurement | devices targeted | n | median | max | SQLite CPU (median) | target | result |")
		fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
		for _, r := range rep.Runs {
			for _, c := range r.Results {
				m := slices.Max(c.Samples)
				fmt.Fprintf(w, "| %s | CreateCampaign: %s | %d | %d | %s | %s | %s | < 10 s | %s |\n", r.Backend, c.Name, c.Targeted,
					len(c.Samples), secs(medianDur(c.Samples)), secs(m), cpuCell(r.Backend, c.CPU), verdict(m))
			}
			if wv := r.Wave; wv != nil && len(wv.Samples) > 0 {
				fmt.Fprintf(w, "| %s | first wave (StepCampaigns, wave_size %d) | %d | %d | %s | %s | – | – | – |\n", r.Backend, wv.WaveSize,
					wv.Told, len(wv.Samples), secs(medianDur(wv.Samples)), secs(slices.Max(wv.Samples)))
			}
		}
	}
	summary.Print(w, rep.summary()...)
}

// summary is one row per query and backend: the slowest creation, which
// the target holds (the first wave has no target and is left out).
func (rep *campaignReport) summary() []summary.Row {
	var rows []summary.Row
	for _, r := range rep.Runs {
		for _, c := range r.Results {
			rows = append(rows, summary.Row{Benchmark: "ota",
				Measurement: fmt.Sprintf("CreateCampaign, %s, %s, %d devices targeted, slowest of %d", c.Name, r.Backend, c.Targeted, len(c.Samples)),
				Value:       slices.Max(c.Samples).Seconds(), Unit: "s",
				Target: &summary.Target{Op: "<", Bound: campaignTarget.Seconds()}})
		}
	}
	return rows
}
