package web

import (
	"html/template"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
)

// stateColors give each lifecycle state one colour everywhere (badges and
// charts); each has at least 4.5:1 contrast with white text.
var stateColors = map[model.State]string{
	model.StateManufactured:   "#4b5563",
	model.StateClaimed:        "#6d28d9",
	model.StateProvisioned:    "#1d4ed8",
	model.StateActive:         "#15803d",
	model.StateQuarantined:    "#c2410c",
	model.StateSuspended:      "#a16207",
	model.StateEndOfSupport:   "#9f1239",
	model.StateDecommissioned: "#1f2937",
}

// firmwareColors cycle through the firmware chart's bars.
var firmwareColors = []string{"#1d4ed8", "#0f766e", "#7c3aed", "#b45309", "#be185d", "#0369a1", "#4d7c0f", "#9333ea"}

type fleetData struct {
	Total, Seen24h, SeenOlder, NeverSeen int64
	Active, Quarantined, Products        int64
	States, Firmware, Seen               template.HTML
	Recent                               []auditRow
}

type auditRow struct {
	model.AuditRecord
	ActorName string
}

func (d *Dashboard) fleetPage(w http.ResponseWriter, r *http.Request) {
	if !d.inTenant(w, r) || !d.allowed(w, r, authz.DevicesRead) {
		return
	}
	ctx := r.Context()
	v := visitFrom(ctx)
	tid := v.tenantID()
	data, err := d.overview.get(tid, func() (fleetData, error) { return d.fleetFigures(r, tid) })
	if err != nil {
		d.internal(w, r, err)
		return
	}
	if v.can(authz.AuditRead) {
		data.Recent = d.recentAudit(r, tid, 8)
	}
	d.render(w, r, http.StatusOK, "fleet", d.live(r, &view{Title: "Fleet overview", Nav: "fleet", Data: data}))
}

// fleetFigures counts the tenant's fleet and draws the charts.
func (d *Dashboard) fleetFigures(r *http.Request, tid string) (fleetData, error) {
	ctx := r.Context()
	var data fleetData
	byState, err := d.Store.CountDevicesByState(ctx, tid)
	if err != nil {
		return data, err
	}
	stateBars := make([]bar, 0, len(allStates))
	for _, s := range allStates {
		data.Total += byState[s]
		stateBars = append(stateBars, bar{Label: stateLabel(s), Value: byState[s], Color: stateColors[s],
			Href: "/devices?state=" + url.QueryEscape(string(s))})
	}
	data.Active, data.Quarantined = byState[model.StateActive], byState[model.StateQuarantined]
	since := time.Now().Add(-24 * time.Hour)
	if data.Seen24h, err = d.Store.CountDevices(ctx, tid, model.DeviceQuery{SeenAfter: &since}); err != nil {
		return data, err
	}
	if data.NeverSeen, err = d.Store.CountDevices(ctx, tid, model.DeviceQuery{NeverSeen: true}); err != nil {
		return data, err
	}
	data.SeenOlder = max(0, data.Total-data.Seen24h-data.NeverSeen)
	versions, err := d.Store.CountDevicesByFirmware(ctx, tid, 8)
	if err != nil {
		return data, err
	}
	var fwBars []bar
	var counted int64
	for i, vc := range versions {
		label, href := vc.Version, "/devices?firmware_version="+url.QueryEscape(vc.Version)
		if label == "" {
			label, href = "not reported", ""
		}
		fwBars = append(fwBars, bar{Label: label, Value: vc.Count, Color: firmwareColors[i%len(firmwareColors)], Href: href})
		counted += vc.Count
	}
	if rest := data.Total - counted; rest > 0 {
		fwBars = append(fwBars, bar{Label: "other versions", Value: rest, Color: "#6b7280"})
	}
	if ps, _, err := d.Store.ListProducts(ctx, tid, listAll); err == nil {
		data.Products = int64(len(ps))
	}
	data.States = barChart("chart-states", "Devices by lifecycle state", stateBars)
	data.Firmware = barChart("chart-firmware", "Devices by firmware version", fwBars)
	data.Seen = ringChart("chart-seen", "Devices seen in the last 24 hours", "seen in 24 h", []share{
		{Label: "seen in the last 24 hours", Value: data.Seen24h, Color: "#15803d"},
		{Label: "seen before", Value: data.SeenOlder, Color: "#b45309"},
		{Label: "never seen", Value: data.NeverSeen, Color: "#9ca3af"},
	})
	return data, nil
}

// figureCache keeps each tenant's overview figures for ten times as long
// as they took to count: a fleet of a few devices is counted afresh on
// every visit, a million-device fleet (a second of counting on SQLite) at
// most every ten seconds however many people look.
type figureCache struct {
	mu sync.Mutex
	m  map[string]cachedFigures
}

type cachedFigures struct {
	data  fleetData
	until time.Time
}

func (c *figureCache) get(tenant string, count func() (fleetData, error)) (fleetData, error) {
	c.mu.Lock()
	e, ok := c.m[tenant]
	c.mu.Unlock()
	if ok && time.Now().Before(e.until) {
		return e.data, nil
	}
	start := time.Now()
	data, err := count()
	if err != nil {
		return data, err
	}
	took := time.Since(start)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) > 10_000 {
		c.m = map[string]cachedFigures{}
	}
	c.m[tenant] = cachedFigures{data: data, until: time.Now().Add(10 * took)}
	return data, nil
}

// recentAudit is the newest n records of a tenant's trail, newest first.
func (d *Dashboard) recentAudit(r *http.Request, tid string, n int64) []auditRow {
	ctx := r.Context()
	head := d.auditHead(r, tid)
	recs, err := d.Store.ListAudit(ctx, tid, max(0, head-n), int(n))
	if err != nil {
		d.Log.Warn("reading recent audit records", "err", err)
		return nil
	}
	names := newActors(ctx, d.Store, tid)
	out := make([]auditRow, 0, len(recs))
	for i := len(recs) - 1; i >= 0; i-- {
		out = append(out, auditRow{AuditRecord: recs[i], ActorName: names.Name(recs[i].Actor)})
	}
	return out
}

func (d *Dashboard) auditHead(r *http.Request, tid string) int64 {
	h, err := d.Store.GetAuditHead(r.Context(), tid)
	if err != nil {
		d.Log.Warn("reading the audit head", "err", err)
	}
	return h.Seq
}

// live marks a page as updating itself: its event stream continues from
// the bus position when the page was made, so nothing that happens in
// between is missed.
func (d *Dashboard) live(r *http.Request, vw *view) *view {
	if d.Bus == nil {
		return vw
	}
	seq, err := d.Bus.LastEventSeq(r.Context())
	if err != nil {
		d.Log.Warn("reading the event bus position", "err", err)
		return vw
	}
	vw.Live, vw.LiveAfter = true, seq
	return vw
}

func (d *Dashboard) internal(w http.ResponseWriter, r *http.Request, err error) {
	d.Log.Error("dashboard page failed", "path", r.URL.Path, "err", err)
	d.fail(w, r, http.StatusInternalServerError, "The server could not make this page. The log has the details.")
}
