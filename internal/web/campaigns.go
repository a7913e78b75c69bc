package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/ota"
	"github.com/steward-iot/steward/internal/store"
)

// Update campaigns: the list with each campaign's progress, a campaign's
// page (state, gates, a chart of its devices per status and the devices
// themselves, following the event stream), a form for a new campaign,
// pause / resume / cancel, invalidating a release, and the owner's consent
// from My home. Everything goes through the update service, as the API
// does; the dashboard only adds forms and pictures.

func (d *Dashboard) campaignRoutes(r chi.Router) {
	r.Get("/campaigns", d.signedIn(d.campaignsPage))
	r.Get("/campaigns/new", d.signedIn(d.campaignNewPage))
	r.Post("/campaigns", d.signedIn(d.campaignCreate))
	r.Get("/campaigns/{campaignID}", d.signedIn(d.campaignPage))
	r.Get("/campaigns/{campaignID}/live", d.signedIn(d.campaignLive))
	r.Post("/campaigns/{campaignID}/pause", d.signedIn(d.campaignAction("pause")))
	r.Post("/campaigns/{campaignID}/resume", d.signedIn(d.campaignAction("resume")))
	r.Post("/campaigns/{campaignID}/cancel", d.signedIn(d.campaignAction("cancel")))
	r.Post("/campaigns/{campaignID}/devices/{deviceID}/consent", d.signedIn(d.consentSubmit))
	r.Post("/artifacts/{artifactID}/invalidate", d.signedIn(d.artifactInvalidate))
}

// hasOTA answers 404 when the update service is not wired in.
func (d *Dashboard) hasOTA(w http.ResponseWriter, r *http.Request) bool {
	if d.OTA == nil {
		d.notFound(w, r)
		return false
	}
	return true
}

// ---- statuses, progress and charts ----

// updateColors give each update status one colour (chart bars).
var updateColors = map[model.UpdateStatus]string{
	model.UpdatePending:     "#9ca3af",
	model.UpdateNotified:    "#1d4ed8",
	model.UpdateDownloading: "#0369a1",
	model.UpdateVerifying:   "#0f766e",
	model.UpdateInstalling:  "#7c3aed",
	model.UpdateRebooting:   "#6d28d9",
	model.UpdateSucceeded:   "#15803d",
	model.UpdateFailed:      "#b91c1c",
	model.UpdateRolledBack:  "#c2410c",
	model.UpdateCancelled:   "#4b5563",
	model.UpdateRefused:     "#a16207",
}

func updateLabel(s model.UpdateStatus) string {
	switch s {
	case model.UpdateRolledBack:
		return "rolled back"
	case "":
		return "none"
	}
	return string(s)
}

// progress sums a campaign's devices into the five parts its bar shows.
type progress struct {
	Total, Succeeded, Failed, InProgress, Pending, Ended int64
	Bar                                                  template.HTML
}

// Done is the share of devices that finished (any way), in percent.
func (p progress) Done() int64 {
	if p.Total == 0 {
		return 0
	}
	return (p.Succeeded + p.Failed + p.Ended) * 100 / p.Total
}

func campaignProgress(id string, c *model.Campaign) progress {
	var p progress
	for s, n := range c.Counts {
		switch {
		case s == model.UpdateSucceeded:
			p.Succeeded += n
		case s.Failure():
			p.Failed += n
		case s == model.UpdatePending:
			p.Pending += n
		case s == model.UpdateCancelled || s == model.UpdateRefused:
			p.Ended += n
		default:
			p.InProgress += n
		}
	}
	p.Total = max(c.Total, p.Succeeded+p.Failed+p.InProgress+p.Pending+p.Ended)
	p.Bar = progressBar(id, []share{
		{Label: "succeeded", Value: p.Succeeded, Color: "#15803d"},
		{Label: "failed or rolled back", Value: p.Failed, Color: "#b91c1c"},
		{Label: "in progress", Value: p.InProgress, Color: "#1d4ed8"},
		{Label: "pending", Value: p.Pending, Color: "#d1d5db"},
		{Label: "cancelled or declined", Value: p.Ended, Color: "#6b7280"},
	}, p.Total)
	return p
}

// progressBar draws parts of a whole as one stacked bar (inline SVG, as
// the other charts).
func progressBar(id string, parts []share, total int64) template.HTML {
	const width, height = 240, 14
	var s strings.Builder
	bars := make([]bar, len(parts))
	for i, p := range parts {
		bars[i] = bar{Label: p.Label, Value: p.Value}
	}
	fmt.Fprintf(&s, `<svg class="progress" id="%s" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-labelledby="%s-t" xmlns="http://www.w3.org/2000/svg">`,
		id, width, height, width, height, id)
	fmt.Fprintf(&s, `<title id="%s-t">%s</title>`, id, esc(describe(bars, total)))
	fmt.Fprintf(&s, `<rect x="0" y="0" width="%d" height="%d" rx="3" fill="#f3f4f6" stroke="#d1d5db"/>`, width, height)
	x := 0.0
	for _, p := range parts {
		if total == 0 || p.Value == 0 {
			continue
		}
		w := float64(p.Value) / float64(total) * width
		fmt.Fprintf(&s, `<rect x="%.2f" y="0" width="%.2f" height="%d" fill="%s" data-part="%s" data-value="%d"/>`, x, w, height, esc(p.Color), esc(p.Label), p.Value)
		x += w
	}
	s.WriteString(`</svg>`)
	return template.HTML(s.String())
}

// statusChart draws a campaign's devices per status; each bar lists them.
func statusChart(c *model.Campaign) template.HTML {
	bars := make([]bar, 0, len(model.UpdateStatuses))
	for _, s := range model.UpdateStatuses {
		bars = append(bars, bar{Label: updateLabel(s), Value: c.Counts[s], Color: updateColors[s],
			Href: "/campaigns/" + url.PathEscape(c.ID) + "?status=" + string(s) + "#h-devices"})
	}
	return barChart("chart-update-status", "Devices by update status", bars)
}

// ---- the list ----

type campaignRow struct {
	model.Campaign
	Progress progress
}

type campaignsData struct {
	Rows     []campaignRow
	NextURL  string
	FirstURL string
	CanNew   bool
}

const campaignsPerPage = 20

func (d *Dashboard) campaignsPage(w http.ResponseWriter, r *http.Request) {
	if !d.hasOTA(w, r) || !d.inTenant(w, r) || !d.allowed(w, r, authz.DevicesRead) {
		return
	}
	ctx := r.Context()
	tid := visitFrom(ctx).tenantID()
	cursor := r.URL.Query().Get("cursor")
	items, next, err := d.Store.ListCampaigns(ctx, tid, store.ListOptions{Limit: campaignsPerPage, Cursor: cursor})
	if errors.Is(err, store.ErrBadCursor) {
		d.redirect(w, r, "/campaigns", "error", "That page link is out of date; here is the first page.")
		return
	}
	if err != nil {
		d.internal(w, r, err)
		return
	}
	data := campaignsData{CanNew: visitFrom(ctx).can(authz.DevicesLifecycle)}
	for i := range items {
		c := &items[i]
		if err := d.OTA.Count(ctx, c); err != nil {
			d.internal(w, r, err)
			return
		}
		data.Rows = append(data.Rows, campaignRow{Campaign: *c, Progress: campaignProgress("progress-"+c.ID, c)})
	}
	if next != "" {
		data.NextURL = "/campaigns?cursor=" + url.QueryEscape(next)
	}
	if cursor != "" {
		data.FirstURL = "/campaigns"
	}
	d.render(w, r, http.StatusOK, "campaigns", d.live(r, &view{Title: "Update campaigns", Nav: "campaigns", Data: data}))
}

// ---- one campaign ----

type campaignDeviceRow struct {
	model.CampaignDevice
	Serial, Name string
}

type campaignData struct {
	C         *model.Campaign
	Artifact  *model.Artifact
	Progress  progress
	Chart     template.HTML
	Target    string
	Window    string
	Devices   []campaignDeviceRow
	Status    model.UpdateStatus // the device table's filter
	Statuses  []model.UpdateStatus
	NextURL   string
	FirstURL  string
	LiveURL   string
	Error     string
	Installed int64  // devices on an invalidated release
	FollowUp  string // a new-campaign link for them
	Rearmed   string // the gate baseline of a resume after a failure pause
}

const campaignDevicesPerPage = 50

// loadCampaign reads everything the campaign page shows; found is false
// when there is no such campaign in the tenant.
func (d *Dashboard) loadCampaign(r *http.Request) (data *campaignData, found bool, err error) {
	ctx := r.Context()
	tid := visitFrom(ctx).tenantID()
	c, err := d.OTA.GetCampaign(ctx, tid, chi.URLParam(r, "campaignID"))
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	data = &campaignData{C: c, Progress: campaignProgress("campaign-progress", c), Chart: statusChart(c),
		Statuses: model.UpdateStatuses, Rearmed: rearmedLine(c)}
	if a, err := d.Store.GetArtifact(ctx, tid, c.ArtifactID); err == nil {
		data.Artifact = a
		if a.InvalidatedAt != nil {
			q := model.DeviceQuery{FirmwareVersion: a.Version}
			if len(a.ProductIDs) == 1 {
				q.ProductID = a.ProductIDs[0]
			}
			if data.Installed, err = d.Store.CountDevices(ctx, tid, q); err != nil {
				return nil, true, err
			}
			v := url.Values{"firmware_version": {q.FirmwareVersion}}
			if q.ProductID != "" {
				v.Set("product_id", q.ProductID)
			}
			data.FollowUp = "/campaigns/new?" + v.Encode()
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, true, err
	}
	data.Target = d.describeTarget(ctx, tid, &c.Query)
	data.Window = describeWindow(c.Window)

	q := r.URL.Query()
	status := model.UpdateStatus(q.Get("status"))
	if status != "" && !status.Valid() {
		data.Error, status = fmt.Sprintf("%q is not an update status; showing every device.", string(status)), ""
	}
	data.Status = status
	cursor := q.Get("cursor")
	items, next, err := d.Store.ListCampaignDevices(ctx, tid, c.ID, status, store.ListOptions{Limit: campaignDevicesPerPage, Cursor: cursor})
	if errors.Is(err, store.ErrBadCursor) {
		data.Error, cursor = "That page link is out of date; here is the first page.", ""
		items, next, err = d.Store.ListCampaignDevices(ctx, tid, c.ID, status, store.ListOptions{Limit: campaignDevicesPerPage})
	}
	if err != nil {
		return nil, true, err
	}
	for _, it := range items {
		row := campaignDeviceRow{CampaignDevice: it, Serial: it.DeviceID}
		if dev, err := d.Store.GetDevice(ctx, tid, it.DeviceID); err == nil {
			row.Serial, row.Name = dev.Serial, dev.Name
		}
		data.Devices = append(data.Devices, row)
	}
	base := "/campaigns/" + url.PathEscape(c.ID)
	pageQ := url.Values{}
	if status != "" {
		pageQ.Set("status", string(status))
	}
	if next != "" {
		nq := url.Values{"cursor": {next}}
		if status != "" {
			nq.Set("status", string(status))
		}
		data.NextURL = base + "?" + nq.Encode() + "#h-devices"
	}
	if cursor != "" {
		data.FirstURL = base
		if len(pageQ) > 0 {
			data.FirstURL += "?" + pageQ.Encode()
		}
		data.FirstURL += "#h-devices"
		pageQ.Set("cursor", cursor)
	}
	data.LiveURL = base + "/live"
	if len(pageQ) > 0 {
		data.LiveURL += "?" + pageQ.Encode()
	}
	return data, true, nil
}

func (d *Dashboard) campaignPage(w http.ResponseWriter, r *http.Request) {
	if !d.hasOTA(w, r) || !d.inTenant(w, r) || !d.allowed(w, r, authz.DevicesRead) {
		return
	}
	data, found, err := d.loadCampaign(r)
	switch {
	case err != nil:
		d.internal(w, r, err)
		return
	case !found:
		d.notFound(w, r)
		return
	}
	d.render(w, r, http.StatusOK, "campaign", d.live(r, &view{Title: "Campaign " + data.C.Name, Nav: "campaigns", Data: data}))
}

// campaignLive is the changing part of a campaign's page alone, which the
// page fetches again when the event stream says the campaign moved.
func (d *Dashboard) campaignLive(w http.ResponseWriter, r *http.Request) {
	v := visitFrom(r.Context())
	if d.OTA == nil || v.tenant == nil || !v.can(authz.DevicesRead) {
		http.Error(w, "not available", http.StatusNotFound)
		return
	}
	data, found, err := d.loadCampaign(r)
	if err != nil {
		d.Log.Error("campaign live part", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if !found {
		http.Error(w, "no such campaign", http.StatusNotFound)
		return
	}
	vw := &view{Visit: v, CSRF: v.sess.CSRF, Version: d.Version, HasCampaigns: true, Path: r.URL.RequestURI(), Data: data}
	var buf bytes.Buffer
	if err := d.pages.sets["campaign"].ExecuteTemplate(&buf, "campaign-live", vw); err != nil {
		d.Log.Error("rendering the campaign live part", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

// describeTarget says in words which devices a campaign's query selects.
func (d *Dashboard) describeTarget(ctx context.Context, tid string, q *model.DeviceQuery) string {
	var parts []string
	if q.GroupID != "" {
		name := q.GroupID
		if g, err := d.Store.GetGroup(ctx, tid, q.GroupID); err == nil {
			name = g.Name
		}
		parts = append(parts, "group “"+name+"”")
	}
	if q.ProductID != "" {
		name := q.ProductID
		if p, err := d.Store.GetProduct(ctx, tid, q.ProductID); err == nil {
			name = productName(p)
		}
		parts = append(parts, "product "+name)
	}
	if len(q.States) > 0 {
		var ss []string
		for _, s := range q.States {
			ss = append(ss, stateLabel(s))
		}
		parts = append(parts, "state "+strings.Join(ss, " or "))
	}
	if len(q.Tags) > 0 {
		parts = append(parts, "tagged "+strings.Join(q.Tags, " and "))
	}
	if q.FirmwareVersion != "" {
		parts = append(parts, "on firmware "+q.FirmwareVersion)
	}
	if q.MinVersion != "" {
		parts = append(parts, "firmware from "+q.MinVersion)
	}
	if q.MaxVersion != "" {
		parts = append(parts, "firmware below "+q.MaxVersion)
	}
	if q.SerialPrefix != "" {
		parts = append(parts, "serials starting "+q.SerialPrefix)
	}
	for _, kv := range sortedPairs(q.Attrs) {
		parts = append(parts, kv.Key+"="+kv.Value)
	}
	if len(parts) == 0 {
		return "every device of the release's products"
	}
	return "devices: " + strings.Join(parts, ", ")
}

func describeWindow(w *model.MaintenanceWindow) string {
	if w == nil {
		return "any time"
	}
	days := "every day"
	if len(w.Days) > 0 {
		days = strings.Join(w.Days, ", ")
	}
	tz := w.TimeZone
	if tz == "" {
		tz = "UTC"
	}
	return fmt.Sprintf("%s, %s–%s %s", days, w.Start, w.End, tz)
}

// ---- operator actions ----

func (d *Dashboard) campaignAction(verb string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !d.hasOTA(w, r) || !d.inTenant(w, r) || !d.allowed(w, r, authz.DevicesLifecycle) {
			return
		}
		ctx := r.Context()
		v := visitFrom(ctx)
		id := chi.URLParam(r, "campaignID")
		back := "/campaigns/" + url.PathEscape(id)
		reason := strings.TrimSpace(r.PostFormValue("reason"))
		if len(reason) > 500 {
			d.redirect(w, r, back, "error", "The reason is at most 500 characters.")
			return
		}
		var c *model.Campaign
		var err error
		var done string
		switch verb {
		case "pause":
			c, err = d.OTA.PauseCampaign(ctx, v.p.Actor(), v.tenantID(), id, reason)
			done = "Paused: no new waves or notifications; devices already told go on."
		case "resume":
			// The baseline before, to tell whether this resume re-armed the gates.
			before, _ := d.Store.GetCampaign(ctx, v.tenantID(), id)
			c, err = d.OTA.ResumeCampaign(ctx, v.p.Actor(), v.tenantID(), id)
			if err == nil {
				done = resumeMessage(before, c)
			}
		case "cancel":
			c, err = d.OTA.CancelCampaign(ctx, v.p.Actor(), v.tenantID(), id, reason)
			done = "Cancelled: unfinished devices were cancelled and their updates withdrawn."
		}
		if errors.Is(err, store.ErrNotFound) {
			d.notFound(w, r)
			return
		}
		if err != nil {
			d.redirect(w, r, back, "error", d.explainOTA(err))
			return
		}
		d.redirect(w, r, back, "ok", "Campaign “"+c.Name+"”: "+done)
	}
}

// resumeMessage says what a resume did to the gates: re-armed them (the
// failures and devices told so far accepted as a baseline) or left them.
func resumeMessage(before, after *model.Campaign) string {
	if before == nil {
		return "Resumed."
	}
	if after.GateFailed == before.GateFailed && after.GateTold == before.GateTold && after.GateWave == before.GateWave {
		return "Resumed. The failure gate was within its threshold, so the gates were not re-armed."
	}
	failed, told := after.GateFailed-before.GateFailed, after.GateTold-before.GateTold
	since, total := "so far", ""
	if before.GateTold > 0 {
		since = "since the gates were last re-armed"
		total = fmt.Sprintf(" (%s of %s in all)", countOf(after.GateFailed, "failure"), countOf(after.GateTold, "device"))
	}
	return fmt.Sprintf("Resumed with the gates re-armed: %s of %s told %s %s accepted%s, wave %d counts as passed, "+
		"and the failure gate counts only from here.", countOf(failed, "failure"), countOf(told, "device"), since, isAre(failed), total, after.GateWave)
}

// rearmedLine describes a campaign's gate baseline ("" when it has none).
func rearmedLine(c *model.Campaign) string {
	if c.GateTold == 0 {
		return ""
	}
	return fmt.Sprintf("Gates re-armed at wave %d: %s of %s accepted; the failure gate counts from there.",
		c.GateWave, countOf(c.GateFailed, "failure"), countOf(c.GateTold, "device"))
}

func countOf(n int64, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

func isAre(n int64) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

// explainOTA words an update service error for the person who acted.
func (d *Dashboard) explainOTA(err error) string {
	var inv *ota.InvalidError
	var meta *ota.MetadataError
	switch {
	case errors.As(err, &inv):
		return capitalize(strings.ReplaceAll(inv.Field, "_", " ")) + " " + inv.Message + "."
	case errors.As(err, &meta), errors.Is(err, ota.ErrCampaignState), errors.Is(err, ota.ErrInvalidated),
		errors.Is(err, ota.ErrNoConsentAsked), errors.Is(err, ota.ErrNoContent), errors.Is(err, ota.ErrNoDirector):
		return capitalize(err.Error()) + "."
	case errors.Is(err, store.ErrStale):
		return "The campaign changed at the same moment. Try again."
	}
	return d.explain(err)
}

// ---- invalidating a release ----

func (d *Dashboard) artifactInvalidate(w http.ResponseWriter, r *http.Request) {
	if !d.hasOTA(w, r) || !d.inTenant(w, r) || !d.allowed(w, r, authz.ProductsWrite) {
		return
	}
	ctx := r.Context()
	v := visitFrom(ctx)
	id := chi.URLParam(r, "artifactID")
	back := localPath(r.PostFormValue("back"))
	if back == "/" {
		back = "/campaigns"
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		d.redirect(w, r, back, "error", "Say why the release is bad: the reason is kept in the audit trail and shown on its campaigns.")
		return
	}
	res, err := d.OTA.Invalidate(ctx, v.p.Actor(), v.tenantID(), id, reason)
	if errors.Is(err, store.ErrNotFound) {
		d.redirect(w, r, back, "error", "This release no longer exists.")
		return
	}
	if err != nil {
		d.redirect(w, r, back, "error", d.explainOTA(err))
		return
	}
	msg := fmt.Sprintf("Release %s is invalidated: no device may install it any more. Cancelled %s; withdrew %s. "+
		"Devices already running it: %d.", res.Artifact.Version, plural(len(res.CancelledCampaigns), "campaign"),
		plural(res.Withdrawn, "direct update"), res.Installed)
	d.redirect(w, r, back, "ok", msg)
}

// ---- a new campaign ----

// campaignForm is the new-campaign form as typed.
type campaignForm struct {
	Name, ArtifactID                                          string
	ProductID, GroupID, Tag, FirmwareVersion, MinVersion      string
	MaxVersion                                                string
	Canary, WaveSize, WaveInterval, SuccessPct, MaxFailurePct string
	PauseOnFailure, Dynamic                                   bool
	Days                                                      []string
	Start, End, TimeZone                                      string
	Consent                                                   string // "", "ask", "skip"
}

type campaignFormData struct {
	F         campaignForm
	Artifacts []model.Artifact
	Products  []model.Product
	Groups    []model.Group
	Errors    map[string]string // by field
	Error     string            // not about one field
	Weekdays  []string
}

var weekdayChoices = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

func (d *Dashboard) campaignNewPage(w http.ResponseWriter, r *http.Request) {
	if !d.hasOTA(w, r) || !d.inTenant(w, r) || !d.allowed(w, r, authz.DevicesLifecycle) {
		return
	}
	q := r.URL.Query()
	f := campaignForm{ArtifactID: q.Get("artifact_id"), ProductID: q.Get("product_id"), GroupID: q.Get("group_id"),
		Tag: q.Get("tag"), FirmwareVersion: q.Get("firmware_version"), Canary: "0", WaveSize: strconv.Itoa(ota.DefaultWaveSize),
		SuccessPct: "90", MaxFailurePct: "10"}
	d.renderCampaignForm(w, r, http.StatusOK, f, nil, "")
}

func (d *Dashboard) renderCampaignForm(w http.ResponseWriter, r *http.Request, status int, f campaignForm, errs map[string]string, general string) {
	ctx := r.Context()
	tid := visitFrom(ctx).tenantID()
	data := campaignFormData{F: f, Errors: errs, Error: general, Weekdays: weekdayChoices}
	arts, _, err := d.Store.ListArtifacts(ctx, tid, listAll)
	if err != nil {
		d.internal(w, r, err)
		return
	}
	for _, a := range arts {
		if a.Uploaded() && a.InvalidatedAt == nil {
			data.Artifacts = append(data.Artifacts, a)
		}
	}
	if data.Products, _, err = d.Store.ListProducts(ctx, tid, listAll); err != nil {
		d.internal(w, r, err)
		return
	}
	if data.Groups, _, err = d.Store.ListGroups(ctx, tid, listAll); err != nil {
		d.internal(w, r, err)
		return
	}
	if data.Errors == nil {
		data.Errors = map[string]string{}
	}
	d.render(w, r, status, "campaign_new", &view{Title: "New campaign", Nav: "campaigns", Data: data})
}

// parseCampaignForm reads the form into the service's input; errs holds
// what cannot even be read, by field.
func parseCampaignForm(r *http.Request) (campaignForm, ota.CampaignInput, map[string]string) {
	val := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	f := campaignForm{Name: val("name"), ArtifactID: val("artifact_id"), ProductID: val("product_id"), GroupID: val("group_id"),
		Tag: val("tag"), FirmwareVersion: val("firmware_version"), MinVersion: val("min_version"), MaxVersion: val("max_version"),
		Canary: val("canary"), WaveSize: val("wave_size"), WaveInterval: val("wave_interval"), SuccessPct: val("success_ratio"),
		MaxFailurePct: val("max_failure_ratio"), PauseOnFailure: r.PostFormValue("pause_on_failure") != "",
		Dynamic: r.PostFormValue("dynamic") != "", Start: val("window_start"), End: val("window_end"), TimeZone: val("time_zone"),
		Consent: val("consent")}
	for _, day := range r.PostForm["days"] {
		for _, c := range weekdayChoices {
			if day == c {
				f.Days = append(f.Days, c)
			}
		}
	}
	errs := map[string]string{}
	in := ota.CampaignInput{Name: f.Name, ArtifactID: f.ArtifactID, Dynamic: f.Dynamic, PauseOnFailure: f.PauseOnFailure,
		Query: model.DeviceQuery{ProductID: f.ProductID, GroupID: f.GroupID, FirmwareVersion: f.FirmwareVersion,
			MinVersion: f.MinVersion, MaxVersion: f.MaxVersion}}
	for _, t := range strings.FieldsFunc(f.Tag, func(r rune) bool { return r == ',' || r == ' ' }) {
		in.Query.Tags = append(in.Query.Tags, t)
	}
	count := func(field, s string) int {
		if s == "" {
			return 0
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			errs[field] = "Type a whole number."
		}
		return n
	}
	in.Canary = count("canary", f.Canary)
	in.WaveSize = count("wave_size", f.WaveSize)
	if f.WaveInterval != "" {
		iv, err := time.ParseDuration(f.WaveInterval)
		if err != nil {
			errs["wave_interval"] = "Type a duration such as 30m, 2h or 1h30m."
		}
		in.WaveInterval = iv
	}
	pct := func(field, s string) *float64 {
		if s == "" {
			return nil
		}
		p, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil || p < 0 || p > 100 {
			errs[field] = "Type a percentage from 0 to 100."
			return nil
		}
		p /= 100
		return &p
	}
	in.SuccessRatio = pct("success_ratio", f.SuccessPct)
	in.MaxFailureRatio = pct("max_failure_ratio", f.MaxFailurePct)
	if f.Start != "" || f.End != "" || len(f.Days) > 0 || f.TimeZone != "" {
		if f.Start == "" || f.End == "" {
			errs["maintenance_window"] = "Give both the start and the end of the window, or neither."
		}
		in.Window = &model.MaintenanceWindow{Days: f.Days, Start: f.Start, End: f.End, TimeZone: f.TimeZone}
	}
	switch f.Consent {
	case "ask":
		yes := true
		in.RequireConsent = &yes
	case "skip":
		no := false
		in.RequireConsent = &no
	default:
		f.Consent = ""
	}
	return f, in, errs
}

func (d *Dashboard) campaignCreate(w http.ResponseWriter, r *http.Request) {
	if !d.hasOTA(w, r) || !d.inTenant(w, r) || !d.allowed(w, r, authz.DevicesLifecycle) {
		return
	}
	ctx := r.Context()
	v := visitFrom(ctx)
	f, in, errs := parseCampaignForm(r)
	if len(errs) > 0 {
		d.renderCampaignForm(w, r, http.StatusUnprocessableEntity, f, errs, "")
		return
	}
	c, err := d.OTA.CreateCampaign(ctx, v.p.Actor(), v.tenantID(), in)
	if err != nil {
		field, msg := campaignFieldError(err)
		if field == "" {
			msg = d.explainOTA(err)
		} else {
			errs[field] = msg
			msg = ""
		}
		d.renderCampaignForm(w, r, http.StatusUnprocessableEntity, f, errs, msg)
		return
	}
	d.redirect(w, r, "/campaigns/"+url.PathEscape(c.ID), "ok",
		fmt.Sprintf("Campaign “%s” started: %s targeted.", c.Name, plural(int(c.Total), "device")))
}

// campaignFieldError names the form field an error from the update
// service is about ("" when it is about none).
func campaignFieldError(err error) (field, msg string) {
	var inv *ota.InvalidError
	var meta *ota.MetadataError
	switch {
	case errors.As(err, &inv):
		field = inv.Field
		if field == "query" {
			field = "target"
		}
		return field, capitalize(inv.Message) + "."
	case errors.As(err, &meta), errors.Is(err, ota.ErrInvalidated), errors.Is(err, ota.ErrNoContent):
		return "artifact_id", capitalize(err.Error()) + "."
	}
	return "", ""
}

// ---- households: consent ----

// homeUpdate is an update waiting for the owner's yes or no.
type homeUpdate struct {
	CampaignID, DeviceID string
	Device               string // how My home names the device
	Version              string
	Paused               bool
}

// pendingConsents lists the tenant's devices whose owner is asked to
// confirm an update, at most limit. Households have few devices and few
// campaigns; a large tenant's scan is bounded.
func (d *Dashboard) pendingConsents(ctx context.Context, tid string, limit int) ([]homeUpdate, error) {
	if d.OTA == nil {
		return nil, nil
	}
	cs, err := d.Store.OpenCampaigns(ctx, tid)
	if err != nil {
		return nil, err
	}
	var out []homeUpdate
	budget := 2000 // pending devices looked at in all, however large the tenant
	for _, c := range cs {
		if !c.RequireConsent || c.Wave == 0 {
			continue
		}
		cursor := ""
		for budget > 0 {
			items, next, err := d.Store.ListCampaignDevices(ctx, tid, c.ID, model.UpdatePending, store.ListOptions{Limit: min(500, budget), Cursor: cursor})
			if err != nil {
				return nil, err
			}
			budget -= len(items)
			for _, it := range items {
				if it.Consent != model.ConsentAsked {
					continue
				}
				u := homeUpdate{CampaignID: c.ID, DeviceID: it.DeviceID, Device: it.DeviceID, Version: c.Version,
					Paused: c.State == model.CampaignPaused}
				if dev, err := d.Store.GetDevice(ctx, tid, it.DeviceID); err == nil {
					u.Device = dev.Serial
					if dev.Name != "" {
						u.Device = dev.Name
					} else if p, err := d.Store.GetProduct(ctx, tid, dev.ProductID); err == nil {
						u.Device = p.Model + " (" + dev.Serial + ")"
					}
				}
				out = append(out, u)
				if len(out) >= limit {
					return out, nil
				}
			}
			if next == "" || len(items) == 0 {
				break
			}
			cursor = next
		}
	}
	return out, nil
}

func (d *Dashboard) consentSubmit(w http.ResponseWriter, r *http.Request) {
	if !d.hasOTA(w, r) || !d.inTenant(w, r) || !d.allowed(w, r, authz.DevicesLifecycle) {
		return
	}
	ctx := r.Context()
	v := visitFrom(ctx)
	back := localPath(r.PostFormValue("back"))
	if back == "/" {
		back = "/home"
	}
	grant := r.PostFormValue("grant") == "yes"
	cid, did := chi.URLParam(r, "campaignID"), chi.URLParam(r, "deviceID")
	c, err := d.Store.GetCampaign(ctx, v.tenantID(), cid)
	if err != nil {
		d.redirect(w, r, back, "error", "This update is no longer offered.")
		return
	}
	if _, err := d.OTA.Consent(ctx, v.p.Actor(), v.tenantID(), cid, did, grant); err != nil {
		if errors.Is(err, ota.ErrNoConsentAsked) || errors.Is(err, store.ErrNotFound) {
			d.redirect(w, r, back, "error", "This update is no longer waiting for your answer (it was answered, or the campaign ended).")
			return
		}
		d.redirect(w, r, back, "error", d.explainOTA(err))
		return
	}
	name := did
	if dev, err := d.Store.GetDevice(ctx, v.tenantID(), did); err == nil {
		name = dev.Serial
		if dev.Name != "" {
			name = dev.Name
		}
	}
	if grant {
		msg := "Firmware " + c.Version + " will be installed on " + name + "."
		if c.State != model.CampaignRunning {
			msg += " The update is paused for now; it starts when it resumes."
		} else if c.Window != nil {
			msg += " It starts in the next maintenance window (" + describeWindow(c.Window) + ")."
		}
		d.redirect(w, r, back, "ok", msg)
		return
	}
	d.redirect(w, r, back, "ok", name+" keeps its current firmware. You will be asked again for the next release.")
}

// ---- a device's update ----

// deviceUpdate is what the device page says about the device's update:
// its assignment (the last update it was told of) and the open campaigns
// it is part of.
type deviceUpdate struct {
	Assignment *model.Assignment
	Campaigns  []deviceCampaign
}

type deviceCampaign struct {
	Campaign model.Campaign
	Device   model.CampaignDevice
}

// deviceUpdateOf reads the device's update status (nil: nothing to show).
func (d *Dashboard) deviceUpdateOf(ctx context.Context, tid, deviceID string) *deviceUpdate {
	if d.OTA == nil {
		return nil
	}
	out := &deviceUpdate{}
	if a, err := d.Store.GetAssignment(ctx, tid, deviceID); err == nil {
		out.Assignment = a
	} else if !errors.Is(err, store.ErrNotFound) {
		d.Log.Warn("reading a device's update assignment", "err", err)
	}
	cs, err := d.Store.OpenCampaigns(ctx, tid)
	if err != nil {
		d.Log.Warn("reading the open campaigns", "err", err)
	}
	for i, c := range cs {
		if i >= 20 {
			break
		}
		cd, err := d.Store.GetCampaignDevice(ctx, tid, c.ID, deviceID)
		if err != nil || cd.Status.Final() {
			continue
		}
		out.Campaigns = append(out.Campaigns, deviceCampaign{Campaign: c, Device: *cd})
	}
	if out.Assignment == nil && len(out.Campaigns) == 0 {
		return nil
	}
	return out
}

// formField is one labelled input of a form, with its error.
type formField struct{ Key, ID, Name, Label, Hint, Value, Error string }

func init() {
	funcs["fieldOf"] = func(key, id, label, hint, value string, errs map[string]string) formField {
		return formField{Key: key, ID: id, Name: key, Label: label, Hint: hint, Value: value, Error: errs[key]}
	}
	funcs["updateLabel"] = updateLabel
	funcs["updateClass"] = func(s model.UpdateStatus) string { return "upd-" + string(s) }
	funcs["pct"] = func(f float64) string { return strconv.FormatFloat(f*100, 'f', -1, 64) + " %" }
	funcs["duration"] = func(d time.Duration) string {
		if d == 0 {
			return "none"
		}
		return d.String()
	}
	funcs["openCampaign"] = func(s model.CampaignState) bool { return s.Open() }
	funcs["campaignStateClass"] = func(s model.CampaignState) string { return "cmp-" + string(s) }
}
