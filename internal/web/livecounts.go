package web

import (
	"net/http"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// openAlarmsShown is how many open alarms the navigation counts; past it,
// it says "99+" and stops following events.
const openAlarmsShown = 99

// navAlarms is the navigation's count of open alarms: made with the page,
// then followed over the event stream (app.js).
type navAlarms struct {
	Open int
	More bool // more than openAlarmsShown
}

// openAlarms counts the tenant's open alarms for the navigation, when the
// alarms page is there and the visitor may read devices.
func (d *Dashboard) openAlarms(r *http.Request, v *visit) *navAlarms {
	if d.Alarms == nil || d.Defender == nil || v == nil || v.tenant == nil || !v.can(authz.DevicesRead) {
		return nil
	}
	items, next, err := d.Store.ListAlarms(r.Context(), v.tenantID(), model.AlarmQuery{State: "open"},
		store.ListOptions{Limit: openAlarmsShown + 1})
	if err != nil {
		d.Log.Warn("counting open alarms for the navigation", "err", err)
		return nil
	}
	n := &navAlarms{Open: len(items), More: next != ""}
	if n.Open > openAlarmsShown {
		n.Open, n.More = openAlarmsShown, true
	}
	return n
}
