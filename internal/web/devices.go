package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/lifecycle"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/store"
)

// filter is the device list's filter bar: the fleet query as form fields.
// With no state chosen the list leaves decommissioned devices out (the
// live fleet); "any" as the state asks for every state.
type filter struct {
	States          []string
	AnyState        bool
	Product         string
	Tag             string
	FirmwareVersion string
	MinVersion      string
	MaxVersion      string
	Serial          string
	Seen            string // "", "24h", "stale", "never"
	Sort            string
	Order           string
	Limit           int
}

var seenChoices = []struct{ Value, Label string }{
	{"", "any time"}, {"24h", "in the last 24 hours"}, {"stale", "not in 24 hours"}, {"never", "never"},
}

var sortChoices = []struct{ Value, Label string }{
	{"id", "registration order"}, {"serial", "serial"}, {"last_seen", "last seen"},
	{"firmware_version", "firmware version"}, {"created_at", "created"},
}

var limitChoices = []int{25, 50, 100, 200}

// anyState is the filter bar's choice of every state, decommissioned too.
const anyState = "any"

// liveStates are the states the device list shows when no state is
// chosen and nothing else narrows it: all but decommissioned. The list
// then walks the (tenant_id, id) index and reads just the page's rows.
var liveStates = slices.DeleteFunc(slices.Clone(allStates), func(s model.State) bool { return s == model.StateDecommissioned })

func parseFilter(q url.Values) filter {
	f := filter{Product: q.Get("product_id"), Tag: q.Get("tag"), FirmwareVersion: q.Get("firmware_version"),
		MinVersion: q.Get("min_version"), MaxVersion: q.Get("max_version"), Serial: q.Get("serial_prefix"),
		Seen: q.Get("seen"), Sort: q.Get("sort"), Order: q.Get("order"), Limit: 50}
	for _, s := range q["state"] {
		for _, part := range strings.Split(s, ",") {
			switch part = strings.TrimSpace(part); {
			case part == anyState:
				f.AnyState = true
			case part != "" && !slices.Contains(f.States, part):
				f.States = append(f.States, part)
			}
		}
	}
	// Chosen states say exactly what to show.
	if len(f.States) > 0 {
		f.AnyState = false
	}
	// A serial search lists its matches in serial order unless asked
	// otherwise: the serial index then serves the page directly, where
	// registration order would sort every match of a short prefix.
	if f.Sort == "" && strings.TrimSpace(f.Serial) != "" {
		f.Sort = "serial"
	}
	if !model.SortField(f.Sort).Valid() {
		f.Sort = "id"
	}
	if f.Order != "desc" {
		f.Order = "asc"
	}
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && slices.Contains(limitChoices, n) {
		f.Limit = n
	}
	return f
}

// query turns the filter into a fleet query, or says what is wrong.
func (f filter) query(now time.Time) (model.DeviceQuery, error) {
	q := model.DeviceQuery{ProductID: f.Product, FirmwareVersion: strings.TrimSpace(f.FirmwareVersion),
		MinVersion: strings.TrimSpace(f.MinVersion), MaxVersion: strings.TrimSpace(f.MaxVersion),
		SerialPrefix: strings.TrimSpace(f.Serial)}
	for _, s := range f.States {
		if !model.State(s).Known() {
			return q, fmt.Errorf("%q is not a lifecycle state", s)
		}
		q.States = append(q.States, model.State(s))
	}
	if f.HidesRetired() && !f.narrowed() {
		q.States = slices.Clone(liveStates)
	}
	for _, t := range strings.FieldsFunc(f.Tag, func(r rune) bool { return r == ',' || r == ' ' }) {
		q.Tags = append(q.Tags, t)
	}
	day := now.Add(-24 * time.Hour)
	switch f.Seen {
	case "24h":
		q.SeenAfter = &day
	case "stale":
		q.SeenBefore = &day
	case "never":
		q.NeverSeen = true
	}
	return q, q.Validate()
}

// values is the filter as query parameters (for page links).
func (f filter) values() url.Values {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	if len(f.States) > 0 {
		v.Set("state", strings.Join(f.States, ","))
	} else if f.AnyState {
		v.Set("state", anyState)
	}
	set("product_id", f.Product)
	set("tag", f.Tag)
	set("firmware_version", f.FirmwareVersion)
	set("min_version", f.MinVersion)
	set("max_version", f.MaxVersion)
	set("serial_prefix", f.Serial)
	set("seen", f.Seen)
	if f.Sort != "id" {
		v.Set("sort", f.Sort)
	}
	if f.Order != "asc" {
		v.Set("order", f.Order)
	}
	if f.Limit != 50 {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	return v
}

// Active reports whether the filter differs from the default view.
func (f filter) Active() bool {
	return len(f.States) > 0 || f.AnyState || f.narrowed()
}

// narrowed reports whether a filter other than the state is set.
func (f filter) narrowed() bool {
	return f.Product != "" || f.Tag != "" || f.FirmwareVersion != "" || f.MinVersion != "" ||
		f.MaxVersion != "" || f.Serial != "" || f.Seen != ""
}

// HidesRetired reports whether decommissioned devices are left out: no
// state was chosen.
func (f filter) HidesRetired() bool { return len(f.States) == 0 && !f.AnyState }

// withState is the list's address with the other filters kept and the
// state set to state.
func (f filter) withState(state string) string {
	v := f.values()
	v.Set("state", state)
	return "/devices?" + v.Encode()
}

type deviceRow struct {
	model.Device
	Product string
}

type devicesData struct {
	Filter   filter
	Products []model.Product
	Rows     []deviceRow
	Error    string
	NextURL  string
	FirstURL string // set when this is not the first page
	Seen     any
	Sorts    any
	Limits   []int
	States   []model.State
	// Decommissioned devices left out (no state chosen): links that show
	// them, and how many there are when no other filter is set.
	HidesRetired bool
	Hidden       int64
	OnlyRetired  string
	AlsoRetired  string
}

func (d *Dashboard) devicesPage(w http.ResponseWriter, r *http.Request) {
	if !d.inTenant(w, r) || !d.allowed(w, r, authz.DevicesRead) {
		return
	}
	ctx := r.Context()
	tid := visitFrom(ctx).tenantID()
	f := parseFilter(r.URL.Query())
	data := devicesData{Filter: f, Seen: seenChoices, Sorts: sortChoices, Limits: limitChoices, States: allStates}
	products, _, err := d.Store.ListProducts(ctx, tid, listAll)
	if err != nil {
		d.internal(w, r, err)
		return
	}
	data.Products = products
	names := make(map[string]string, len(products))
	for _, p := range products {
		names[p.ID] = productName(&p)
	}
	status := http.StatusOK
	q, err := f.query(time.Now())
	if err != nil {
		data.Error, status = capitalize(err.Error())+".", http.StatusUnprocessableEntity
	} else {
		cursor := r.URL.Query().Get("cursor")
		items, next, err := d.queryDevices(r, tid, f, q, model.Page{Limit: f.Limit, Cursor: cursor,
			Sort: model.SortField(f.Sort), Desc: f.Order == "desc"})
		switch {
		case errors.Is(err, store.ErrBadCursor):
			data.Error, status = "This page link is out of date (the sort order changed). Start again from the first page.", http.StatusBadRequest
		case errors.Is(err, store.ErrBadQuery):
			data.Error, status = capitalize(strings.TrimPrefix(err.Error(), store.ErrBadQuery.Error()+": "))+".", http.StatusUnprocessableEntity
		case err != nil:
			d.internal(w, r, err)
			return
		}
		data.Rows = make([]deviceRow, len(items))
		for i := range items {
			data.Rows[i] = deviceRow{Device: items[i], Product: names[items[i].ProductID]}
		}
		if err == nil && f.HidesRetired() {
			data.HidesRetired = true
			data.OnlyRetired, data.AlsoRetired = f.withState(string(model.StateDecommissioned)), f.withState(anyState)
			// The kept per-state counts answer at once; counting what another
			// filter matches would read every matching row at a million devices.
			if !f.narrowed() {
				byState, err := d.Store.CountDevicesByState(ctx, tid)
				if err != nil {
					d.internal(w, r, err)
					return
				}
				data.Hidden = byState[model.StateDecommissioned]
			}
		}
		base := f.values()
		data.NextURL = nextPage("/devices", base, next)
		if cursor != "" {
			data.FirstURL = "/devices"
			if len(base) > 0 {
				data.FirstURL += "?" + base.Encode()
			}
		}
	}
	d.render(w, r, status, "devices", d.live(r, &view{Title: "Devices", Nav: "devices", Data: data}))
}

// refills bounds the extra reads that fill a page whose decommissioned
// devices were dropped; a fleet mostly retired may get a shorter page
// (its Next link goes on from there).
const refills = 3

// queryDevices reads one page of the list. When no state is chosen but
// other filters are, decommissioned devices are dropped from the page and
// it is filled from where it ended, rather than excluded in the query: a
// state condition would make SQLite read every row a firmware range
// matches (the firmware indexes do not hold the state: at a million
// devices a range's p95 went from 90 ms to 700 ms), where the query alone
// walks the index.
func (d *Dashboard) queryDevices(r *http.Request, tid string, f filter, q model.DeviceQuery, p model.Page) ([]model.Device, string, error) {
	items, next, err := d.Store.QueryDevices(r.Context(), tid, q, p)
	if err != nil || !f.HidesRetired() || !f.narrowed() {
		return items, next, err
	}
	want, live := p.Limit, slices.DeleteFunc(items, retired)
	for range refills {
		if len(live) >= want || next == "" {
			break
		}
		p.Cursor, p.Limit = next, want-len(live)
		if items, next, err = d.Store.QueryDevices(r.Context(), tid, q, p); err != nil {
			return nil, "", err
		}
		live = append(live, slices.DeleteFunc(items, retired)...)
	}
	return live, next, nil
}

func retired(d model.Device) bool { return d.State == model.StateDecommissioned }

func productName(p *model.Product) string {
	n := p.Vendor + " " + p.Model
	if p.HardwareRevision != "" {
		n += " (rev " + p.HardwareRevision + ")"
	}
	return n
}

type deviceData struct {
	Device      *model.Device
	Product     *model.Product
	Allowed     []model.State
	Transitions []transitionRow
	Audit       []auditRow
	Parts       *deviceParts
	TagsText    string
	AttrsText   string
	Update      *deviceUpdate // its update status (campaigns.go)
	History     []updateStep  // its update steps (updatehistory.go)
}

type transitionRow struct {
	model.Transition
	ActorName string
}

func (d *Dashboard) devicePage(w http.ResponseWriter, r *http.Request) {
	if !d.inTenant(w, r) || !d.allowed(w, r, authz.DevicesRead) {
		return
	}
	ctx := r.Context()
	v := visitFrom(ctx)
	tid := v.tenantID()
	dev, err := d.Store.GetDevice(ctx, tid, chi.URLParam(r, "deviceID"))
	if errors.Is(err, store.ErrNotFound) {
		d.notFound(w, r)
		return
	}
	if err != nil {
		d.internal(w, r, err)
		return
	}
	data := deviceData{Device: dev, Allowed: lifecycle.Next(dev.State), TagsText: strings.Join(dev.Tags, ", ")}
	var attrs []string
	for _, kv := range sortedPairs(dev.Attributes) {
		attrs = append(attrs, kv.Key+"="+kv.Value)
	}
	data.AttrsText = strings.Join(attrs, "\n")
	if p, err := d.Store.GetProduct(ctx, tid, dev.ProductID); err == nil {
		data.Product = p
	}
	names := newActors(ctx, d.Store, tid)
	trs, _, err := d.Store.ListTransitions(ctx, tid, dev.ID, store.ListOptions{Limit: 1000})
	if err != nil {
		d.internal(w, r, err)
		return
	}
	for i := len(trs) - 1; i >= 0 && len(data.Transitions) < 50; i-- {
		data.Transitions = append(data.Transitions, transitionRow{Transition: trs[i], ActorName: names.Name(trs[i].Actor)})
	}
	if v.can(authz.AuditRead) {
		recs, err := d.Store.ListAuditByTarget(ctx, tid, dev.ID, 0, 50)
		if err != nil {
			d.internal(w, r, err)
			return
		}
		for _, rec := range recs {
			data.Audit = append(data.Audit, auditRow{AuditRecord: rec, ActorName: names.Name(rec.Actor)})
		}
	}
	if data.Parts, err = d.loadDeviceParts(ctx, tid, dev, r.URL.Query()); err != nil {
		d.internal(w, r, err)
		return
	}
	data.Update = d.deviceUpdateOf(ctx, tid, dev.ID)
	if d.OTA != nil {
		if data.History, err = d.updateHistory(ctx, tid, dev.ID, names); err != nil {
			d.internal(w, r, err)
			return
		}
	}
	title := dev.Serial
	if dev.Name != "" {
		title = dev.Name + " (" + dev.Serial + ")"
	}
	d.render(w, r, http.StatusOK, "device", d.live(r, &view{Title: title, Nav: "devices", Data: data}))
}

func (d *Dashboard) deviceTransition(w http.ResponseWriter, r *http.Request) {
	if !d.inTenant(w, r) || !d.allowed(w, r, authz.DevicesLifecycle) {
		return
	}
	ctx := r.Context()
	v := visitFrom(ctx)
	id := chi.URLParam(r, "deviceID")
	back := "/devices/" + url.PathEscape(id)
	to := model.State(r.PostFormValue("to"))
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		d.redirect(w, r, back, "error", "Give a reason: it is kept in the audit trail.")
		return
	}
	if to == model.StateDecommissioned {
		// Decommissioning cannot be undone: the serial must be typed.
		dev, err := d.Store.GetDevice(ctx, v.tenantID(), id)
		if err != nil {
			d.redirect(w, r, back, "error", d.explain(err))
			return
		}
		if strings.TrimSpace(r.PostFormValue("confirm")) != dev.Serial {
			d.redirect(w, r, back, "error", "To decommission, type the device's serial ("+dev.Serial+") in the confirmation field.")
			return
		}
	}
	dev, _, err := d.Registry.Transition(ctx, v.p, v.tenantID(), id, to, reason)
	if errors.Is(err, store.ErrNotFound) {
		d.notFound(w, r)
		return
	}
	if err != nil {
		d.redirect(w, r, back, "error", d.explain(err))
		return
	}
	d.redirect(w, r, back, "ok", fmt.Sprintf("%s is now %s.", dev.Serial, stateLabel(dev.State)))
}

func (d *Dashboard) deviceEdit(w http.ResponseWriter, r *http.Request) {
	if !d.inTenant(w, r) || !d.allowed(w, r, authz.DevicesWrite) {
		return
	}
	ctx := r.Context()
	v := visitFrom(ctx)
	id := chi.URLParam(r, "deviceID")
	back := "/devices/" + url.PathEscape(id)
	name := strings.TrimSpace(r.PostFormValue("name"))
	tags := strings.FieldsFunc(r.PostFormValue("tags"), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' })
	if tags == nil {
		tags = []string{}
	}
	attrs := map[string]string{}
	for _, line := range strings.Split(r.PostFormValue("attributes"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, val, ok := strings.Cut(line, "=")
		if !ok {
			d.redirect(w, r, back, "error", fmt.Sprintf("Attribute line %q must be key=value.", line))
			return
		}
		attrs[strings.TrimSpace(k)] = strings.TrimSpace(val)
	}
	version, _ := strconv.ParseInt(r.PostFormValue("version"), 10, 64)
	_, err := d.Registry.UpdateDevice(ctx, v.p, v.tenantID(), id, registry.DevicePatch{Name: &name, Tags: &tags, Attributes: &attrs}, version)
	if errors.Is(err, store.ErrStale) {
		d.redirect(w, r, back, "error", "Someone changed this device while you were editing. Here it is as it is now; make your change again.")
		return
	}
	if err != nil {
		d.redirect(w, r, back, "error", d.explain(err))
		return
	}
	d.redirect(w, r, back, "ok", "Saved.")
}
