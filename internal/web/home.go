package web

import (
	"net/http"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
)

// My home: a household's own devices in plain words, and claiming a new
// one by the code on its label. Anyone in a tenant may open it; households
// land on it.

// offlineAfter is how long a device may be silent before My home calls it
// offline.
const offlineAfter = time.Hour

type homeDevice struct {
	model.Device
	Product string
	Status  string
	Warn    bool
}

type homeData struct {
	Devices []homeDevice
	More    bool
	Claims  bool
	// Updates wait for the household's yes or no (campaigns.go).
	Updates []homeUpdate
}

// homeStatus says how a device is doing, for people who do not run fleets.
func homeStatus(d *model.Device, now time.Time) (string, bool) {
	switch d.State {
	case model.StateQuarantined:
		return "quarantined: contact support", true
	case model.StateSuspended:
		return "suspended: contact support", true
	case model.StateDecommissioned:
		return "retired", false
	case model.StateEndOfSupport:
		return "no more updates (end of support)", true
	case model.StateManufactured, model.StateClaimed, model.StateProvisioned:
		if d.LastSeen == nil {
			return "waiting to be switched on and connected", false
		}
	}
	if d.LastSeen == nil {
		return "never connected", true
	}
	if now.Sub(*d.LastSeen) > offlineAfter {
		return "offline since " + when(*d.LastSeen), true
	}
	return "up to date", false
}

const homeLimit = 200

func (d *Dashboard) myHome(w http.ResponseWriter, r *http.Request) {
	if !d.inTenant(w, r) || !d.allowed(w, r, authz.DevicesRead) {
		return
	}
	ctx := r.Context()
	tid := visitFrom(ctx).tenantID()
	items, next, err := d.Store.QueryDevices(ctx, tid, model.DeviceQuery{}, model.Page{Limit: homeLimit, Sort: model.SortField("serial")})
	if err != nil {
		d.internal(w, r, err)
		return
	}
	products, _, err := d.Store.ListProducts(ctx, tid, listAll)
	if err != nil {
		d.internal(w, r, err)
		return
	}
	names := map[string]string{}
	for _, p := range products {
		names[p.ID] = productName(&p)
	}
	data := homeData{More: next != "", Claims: d.Identity != nil}
	now := time.Now()
	for i := range items {
		st, warn := homeStatus(&items[i], now)
		data.Devices = append(data.Devices, homeDevice{Device: items[i], Product: names[items[i].ProductID], Status: st, Warn: warn})
	}
	if data.Updates, err = d.pendingConsents(ctx, tid, 50); err != nil {
		d.internal(w, r, err)
		return
	}
	d.render(w, r, http.StatusOK, "home", d.live(r, &view{Title: "My home", Nav: "home", Data: data}))
}

// claimSubmit claims a device by its code, as POST /api/v1/claims does.
func (d *Dashboard) claimSubmit(w http.ResponseWriter, r *http.Request) {
	if !d.serves(w, r, authz.DevicesLifecycle, d.Identity != nil) {
		return
	}
	v := visitFrom(r.Context())
	code := strings.TrimSpace(r.PostFormValue("code"))
	if code == "" {
		d.redirect(w, r, "/home", "error", "Type the claim code from the device's label.")
		return
	}
	dev, err := d.Identity.Claim(r.Context(), v.p, v.tenantID(), code)
	if err != nil {
		d.redirect(w, r, "/home", "error", d.explain(err))
		return
	}
	d.redirect(w, r, "/home", "ok", "Claimed "+dev.Serial+". Switch it on: it connects with the same code.")
}
