package web

import (
	"errors"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/steward-iot/steward/internal/alarm"
	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// The alarms page: behaviour alarms of the tenant's devices (open ones by
// default), with acknowledgement for those who may change devices.

type alarmsData struct {
	State   string
	Kind    string
	States  []string
	Kinds   []model.AlarmKind
	Items   []model.Alarm
	NextURL string
}

func (d *Dashboard) alarmRoutes(r chi.Router) {
	r.Get("/alarms", d.signedIn(d.alarmsPage))
	r.Post("/alarms/{alarmID}/acknowledge", d.signedIn(d.alarmAcknowledge))
}

func (d *Dashboard) alarmsPage(w http.ResponseWriter, r *http.Request) {
	if !d.serves(w, r, authz.DevicesRead, d.Alarms != nil) {
		return
	}
	ctx := r.Context()
	q := r.URL.Query()
	data := alarmsData{State: "open", States: []string{"open", "active", "acknowledged", "cleared", "all"}, Kinds: model.AlarmKinds()}
	if s := q.Get("state"); s != "" {
		data.State = s
	}
	aq := model.AlarmQuery{State: data.State}
	switch data.State {
	case "all":
		aq.State = ""
	case "open", "active", "acknowledged", "cleared":
	default:
		d.redirect(w, r, "/alarms", "error", "Pick one of the listed states.")
		return
	}
	if k := model.AlarmKind(q.Get("kind")); k.Valid() {
		data.Kind, aq.Kind = string(k), k
	}
	items, next, err := d.Store.ListAlarms(ctx, visitFrom(ctx).tenantID(), aq, store.ListOptions{Limit: 100, Cursor: q.Get("cursor")})
	if errors.Is(err, store.ErrBadCursor) {
		d.redirect(w, r, "/alarms", "error", "This page link is out of date. Here is the first page.")
		return
	}
	if err != nil {
		d.internal(w, r, err)
		return
	}
	data.Items = items
	data.NextURL = nextPage("/alarms", q, next)
	d.render(w, r, http.StatusOK, "alarms", d.live(r, &view{Title: "Alarms", Nav: "alarms", Data: data}))
}

func (d *Dashboard) alarmAcknowledge(w http.ResponseWriter, r *http.Request) {
	if !d.serves(w, r, authz.DevicesWrite, d.Alarms != nil) {
		return
	}
	back := "/alarms"
	if b := localPath(r.PostFormValue("back")); strings.HasPrefix(b, "/alarms") || strings.HasPrefix(b, "/devices/") {
		back = b
	}
	v := visitFrom(r.Context())
	a, err := d.Alarms.Acknowledge(r.Context(), v.p.Actor(), v.tenantID(), chi.URLParam(r, "alarmID"), r.PostFormValue("note"))
	if errors.Is(err, store.ErrNotFound) {
		d.notFound(w, r)
		return
	}
	var se *alarm.StateError
	var ie *alarm.InvalidError
	if errors.As(err, &se) || errors.As(err, &ie) {
		d.redirect(w, r, back, "error", err.Error())
		return
	}
	if err != nil {
		d.internal(w, r, err)
		return
	}
	d.redirect(w, r, back, "ok", "Acknowledged “"+a.Title+"”.")
}
