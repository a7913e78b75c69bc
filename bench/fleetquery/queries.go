package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/steward-iot/steward/bench/internal/fleet"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// workload is one fleet query with parameters drawn per repetition.
type workload struct {
	key, name string
	// draw returns the query and first page to run.
	draw func(r *rand.Rand, ds *fleet.Dataset) (model.DeviceQuery, model.Page)
}

const pageSize = 50

// workloads are the five typical fleet queries of the dashboard and API.
var workloads = []workload{
	{"q1", "state, by id (70% active)", func(r *rand.Rand, ds *fleet.Dataset) (model.DeviceQuery, model.Page) {
		// The device list filtered by state: mostly "active", sometimes one
		// of the states an operator checks on (quarantined …).
		s := model.StateActive
		if r.IntN(10) >= 7 {
			s = []model.State{model.StateQuarantined, model.StateSuspended, model.StateEndOfSupport,
				model.StateDecommissioned, model.StateProvisioned}[r.IntN(5)]
		}
		return model.DeviceQuery{States: []model.State{s}}, model.Page{Limit: pageSize, Sort: model.SortID}
	}},
	{"q2", "product + firmware range, by id", func(r *rand.Rand, ds *fleet.Dataset) (model.DeviceQuery, model.Page) {
		// Campaign targeting: devices of product X with min <= fw < max.
		lo := r.IntN(len(fleet.FirmwareVersions) - 1)
		hi := min(lo+1+r.IntN(8), len(fleet.FirmwareVersions)-1)
		return model.DeviceQuery{ProductID: ds.T1Prods[r.IntN(len(ds.T1Prods))],
				MinVersion: fleet.FirmwareVersions[lo], MaxVersion: fleet.FirmwareVersions[hi]},
			model.Page{Limit: pageSize, Sort: model.SortID}
	}},
	{"q3", `tag "prod" + attr site=site-N, by id`, func(r *rand.Rand, ds *fleet.Dataset) (model.DeviceQuery, model.Page) {
		return model.DeviceQuery{Tags: []string{"prod"}, Attrs: map[string]string{"site": fmt.Sprintf("site-%d", r.IntN(1000))}},
			model.Page{Limit: pageSize, Sort: model.SortID}
	}},
	{"q4", "stale: last_seen < now-3..14d, by last_seen", func(r *rand.Rand, ds *fleet.Dataset) (model.DeviceQuery, model.Page) {
		before := ds.Now.Add(-time.Duration(3+r.IntN(12)) * 24 * time.Hour)
		return model.DeviceQuery{SeenBefore: &before},
			model.Page{Limit: pageSize, Sort: model.SortLastSeen, Desc: r.IntN(2) == 0}
	}},
	{"q5", "serial prefix search, by serial", func(r *rand.Rand, ds *fleet.Dataset) (model.DeviceQuery, model.Page) {
		// The search box: a prefix of a real serial (code-YYWW-NNNNNN), from
		// "the whole year" down to the full serial.
		d := &ds.Devices[ds.T1[r.IntN(len(ds.T1))]]
		dash := strings.IndexByte(d.Serial, '-')
		var cut int
		switch x := r.IntN(10); {
		case x < 1:
			cut = dash + 3 // TH200-24: a product's year
		case x < 4:
			cut = dash + 5 // TH200-2419: a manufacturing week
		case x < 7:
			cut = dash + 9 // TH200-2419-0004: ~100 serials
		default:
			cut = len(d.Serial) // the whole serial
		}
		return model.DeviceQuery{SerialPrefix: d.Serial[:cut]}, model.Page{Limit: pageSize, Sort: model.SortSerial}
	}},
}

// countName is the dashboard summary's row.
const countName = "CountDevicesByState (summary)"

// result is the latency distribution of one measured operation.
type result struct {
	Key, Name string
	Samples   []time.Duration
	Rows      int // rows returned in total, for the average page size
	Truncated bool
	// Target overrides the backend's p95 target (dashboard renders).
	Target time.Duration
}

// target is the p95 this result is held to.
func (r *result) target(br *backendRun) time.Duration {
	if r.Target > 0 {
		return r.Target
	}
	return br.Target
}

func (r *result) pct(p float64) time.Duration {
	if len(r.Samples) == 0 {
		return 0
	}
	s := slices.Clone(r.Samples)
	slices.Sort(s)
	// Nearest rank.
	i := int(float64(len(s))*p+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func (r *result) avgRows() float64 {
	if len(r.Samples) == 0 {
		return 0
	}
	return float64(r.Rows) / float64(len(r.Samples))
}

type benchOpts struct {
	reps    int
	pages   int           // cursors to follow after the first page
	maxTime time.Duration // per workload, so a pathological plan cannot stall the run
	seed    uint64
	// dashboard also renders the device list through the web handler.
	dashboard bool
}

// measure runs every workload and the state count through the store API,
// first untimed (warm-up), then timed. Each workload gets two rows: the
// first page, and the later pages reached by following cursors.
func measure(ctx context.Context, st store.Store, ds *fleet.Dataset, o benchOpts, label string, logw io.Writer) ([]*result, error) {
	tenant := ds.Tenants[0].ID
	var out []*result
	warm := min(20, max(2, o.reps/10))
	for wi, w := range workloads {
		// The same seed per workload gives both backends the same parameters.
		r := rand.New(rand.NewPCG(o.seed, uint64(wi)+1))
		first := &result{Key: w.key, Name: w.name + " — page 1"}
		later := &result{Key: w.key + "+", Name: w.name + fmt.Sprintf(" — pages 2–%d", o.pages+1)}
		start := time.Now()
		for i := -warm; i < o.reps; i++ {
			if i >= 0 && time.Since(start) > o.maxTime {
				first.Truncated, later.Truncated = true, true
				break
			}
			if i == 0 {
				start = time.Now()
			}
			q, p := w.draw(r, ds)
			for page := 0; page <= o.pages; page++ {
				t0 := time.Now()
				items, next, err := st.QueryDevices(ctx, tenant, q, p)
				el := time.Since(t0)
				if err != nil {
					return nil, fmt.Errorf("%s %s: %w", label, w.key, err)
				}
				for j := range items {
					if items[j].TenantID != tenant {
						return nil, fmt.Errorf("%s %s: device %s of another tenant in the result", label, w.key, items[j].ID)
					}
				}
				if i >= 0 {
					res := first
					if page > 0 {
						res = later
					}
					res.Samples = append(res.Samples, el)
					res.Rows += len(items)
				}
				if next == "" {
					break
				}
				p.Cursor = next
			}
		}
		fmt.Fprintf(logw, "%s: %-50s n=%-4d p95=%7.2f ms\n", label, w.name, len(first.Samples), ms(first.pct(0.95)))
		out = append(out, first, later)
	}

	c := &result{Key: "count", Name: countName}
	start := time.Now()
	for i := -warm; i < o.reps; i++ {
		if i >= 0 && time.Since(start) > o.maxTime {
			c.Truncated = true
			break
		}
		if i == 0 {
			start = time.Now()
		}
		t0 := time.Now()
		m, err := st.CountDevicesByState(ctx, tenant)
		el := time.Since(t0)
		if err != nil {
			return nil, fmt.Errorf("%s count: %w", label, err)
		}
		if i >= 0 {
			c.Samples = append(c.Samples, el)
			c.Rows += len(m)
		}
	}
	fmt.Fprintf(logw, "%s: %-50s n=%-4d p95=%7.2f ms\n", label, c.Name, len(c.Samples), ms(c.pct(0.95)))
	return append(out, c), nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
