package web

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// The findings page: the security engine's open findings for the tenant,
// filtered by severity, with suppression (reason and expiry) for those who
// may change devices.

var severities = []model.Severity{model.SeverityCritical, model.SeverityHigh, model.SeverityMedium, model.SeverityLow, model.SeverityInfo}

// suppressDays are the suppression lengths offered.
var suppressDays = []int{1, 7, 30, 90}

type findingsData struct {
	Min        string
	Suppressed bool
	Severities []model.Severity
	Days       []int
	Items      []model.Finding
	NextURL    string
	Now        time.Time
}

func (d *Dashboard) findingsPage(w http.ResponseWriter, r *http.Request) {
	if !d.serves(w, r, authz.DevicesRead, d.Defender != nil) {
		return
	}
	ctx := r.Context()
	q := r.URL.Query()
	data := findingsData{Severities: severities, Days: suppressDays, Now: d.Defender.Now(), Suppressed: q.Get("suppressed") == "only"}
	fq := model.FindingQuery{Status: model.FindingOpen, Now: data.Now, Suppressed: new(bool)}
	if s := model.Severity(q.Get("min_severity")); s.Rank() >= 0 {
		data.Min, fq.MinSeverity = string(s), s
	}
	if data.Suppressed {
		t := true
		fq.Suppressed = &t
	}
	items, next, err := d.Store.ListFindings(ctx, visitFrom(ctx).tenantID(), fq, store.ListOptions{Limit: 100, Cursor: q.Get("cursor")})
	if errors.Is(err, store.ErrBadCursor) {
		d.redirect(w, r, "/findings", "error", "This page link is out of date. Here is the first page.")
		return
	}
	if err != nil {
		d.internal(w, r, err)
		return
	}
	data.Items = items
	data.NextURL = nextPage("/findings", q, next)
	d.render(w, r, http.StatusOK, "findings", &view{Title: "Findings", Nav: "findings", Data: data})
}

func (d *Dashboard) findingSuppress(w http.ResponseWriter, r *http.Request) {
	if !d.serves(w, r, authz.DevicesWrite, d.Defender != nil) {
		return
	}
	back := "/findings"
	if b := localPath(r.PostFormValue("back")); strings.HasPrefix(b, "/findings") {
		back = b
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		d.redirect(w, r, back, "error", "Give a reason for suppressing: it is kept with the finding and in the audit trail.")
		return
	}
	days, err := strconv.Atoi(r.PostFormValue("days"))
	if err != nil || days < 1 {
		d.redirect(w, r, back, "error", "Pick how long to suppress the finding.")
		return
	}
	v := visitFrom(r.Context())
	until := d.Defender.Now().Add(time.Duration(days) * 24 * time.Hour)
	f, err := d.Defender.Suppress(r.Context(), v.p.Actor(), v.tenantID(), chi.URLParam(r, "findingID"), until, reason)
	if errors.Is(err, store.ErrNotFound) {
		d.notFound(w, r)
		return
	}
	if err != nil {
		d.redirect(w, r, back, "error", d.explain(err))
		return
	}
	d.redirect(w, r, back, "ok", "Suppressed “"+f.Title+"” until "+when(until)+".")
}
