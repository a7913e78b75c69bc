package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/discovery"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/retire"
	"github.com/steward-iot/steward/internal/store"
)

// lifecycleRoutes: releasing and decommissioning from the device page, and
// the unmanaged devices page.
func (d *Dashboard) lifecycleRoutes(r chi.Router) {
	r.Post("/devices/{deviceID}/release", d.signedIn(d.deviceRelease))
	r.Post("/devices/{deviceID}/decommission", d.signedIn(d.deviceDecommission))
	r.Get("/neighbours", d.signedIn(d.neighboursPage))
	r.Post("/neighbours/{mac}/known", d.signedIn(d.neighbourKnown))
	r.Post("/neighbours/{mac}/adopt", d.signedIn(d.neighbourAdopt))
}

// codeData is a page that shows a one-time claim code.
type codeData struct {
	Heading, Lead, Code, Serial string
	Next, NextLabel             string
}

// confirmSerial opens a lifecycle action that cannot be undone: the
// caller may change devices' lifecycle, the service is there (available),
// and the serial typed to confirm matches; otherwise it answers and says
// what to do. back is the device's page.
func (d *Dashboard) confirmSerial(w http.ResponseWriter, r *http.Request, available bool) (dev *model.Device, back string, ok bool) {
	if !d.serves(w, r, authz.DevicesLifecycle, available) {
		return nil, "", false
	}
	back = "/devices/" + url.PathEscape(chi.URLParam(r, "deviceID"))
	v := visitFrom(r.Context())
	dev, err := d.Store.GetDevice(r.Context(), v.tenantID(), chi.URLParam(r, "deviceID"))
	if errors.Is(err, store.ErrNotFound) {
		d.notFound(w, r)
		return nil, "", false
	}
	if err != nil {
		d.redirect(w, r, back, "error", d.explain(err))
		return nil, "", false
	}
	if strings.TrimSpace(r.PostFormValue("confirm")) != dev.Serial {
		d.redirect(w, r, back, "error", "This cannot be undone. Type the device's serial ("+dev.Serial+") in the confirmation field.")
		return nil, "", false
	}
	return dev, back, true
}

func (d *Dashboard) deviceRelease(w http.ResponseWriter, r *http.Request) {
	dev, back, ok := d.confirmSerial(w, r, d.Identity != nil)
	if !ok {
		return
	}
	v := visitFrom(r.Context())
	code, _, err := d.Identity.Release(r.Context(), v.p, v.tenantID(), dev.ID, strings.TrimSpace(r.PostFormValue("reason")))
	if err != nil {
		d.redirect(w, r, back, "error", d.explain(err))
		return
	}
	// The code is shown on this answer only: it is not stored anywhere
	// it could be shown again.
	w.Header().Set("Cache-Control", "no-store")
	d.render(w, r, http.StatusOK, "claimcode", &view{Title: "Released " + dev.Serial, Nav: "devices", Data: codeData{
		Heading: "Released " + dev.Serial,
		Lead: "Its certificates and token are revoked, your data about it is erased, and it is no longer in your account. " +
			"Hand this claim code on with the device: the new owner claims it with the code, and the device then enrolls with it.",
		Code: code, Serial: dev.Serial, Next: "/devices", NextLabel: "Back to the devices"}})
}

func (d *Dashboard) deviceDecommission(w http.ResponseWriter, r *http.Request) {
	dev, back, ok := d.confirmSerial(w, r, d.Retire != nil)
	if !ok {
		return
	}
	v := visitFrom(r.Context())
	data := r.PostFormValue("data")
	res, err := d.Retire.Decommission(r.Context(), v.p, v.tenantID(), dev.ID, retire.Options{Data: data,
		Wipe: r.PostFormValue("wipe") == "yes", Reason: strings.TrimSpace(r.PostFormValue("reason"))})
	var inv *retire.InvalidError
	if errors.As(err, &inv) {
		d.redirect(w, r, back, "error", "Choose what happens to the device's data: erase, export or keep.")
		return
	}
	if err != nil {
		d.redirect(w, r, back, "error", d.explain(err))
		return
	}
	if res.Export != nil {
		// The export is the answer: a download of everything that was erased.
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Disposition", `attachment; filename="`+dev.Serial+`-export.json"`)
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res.Export)
		return
	}
	msg := dev.Serial + " is decommissioned: its certificates and token are revoked"
	switch res.Wipe.Status {
	case "succeeded":
		msg += ", the device confirmed it erased its keys"
	case "not_connected":
		msg += " (it was not connected, so no wipe was sent)"
	case "no_answer", "failed":
		msg += " (the wipe was not confirmed: " + res.Wipe.Error + ")"
	}
	if res.Erased != nil {
		msg += ", and its data is erased."
	} else {
		msg += "; its data is kept."
	}
	d.redirect(w, r, back, "ok", msg)
}

// neighbourData is the unmanaged devices page.
type neighbourData struct {
	Items    []model.Neighbour
	Status   string
	Next     string
	Products []model.Product
	Missing  bool // discovery is not wired in
}

func (d *Dashboard) neighboursPage(w http.ResponseWriter, r *http.Request) {
	if !d.inTenant(w, r) || !d.allowed(w, r, authz.DevicesRead) {
		return
	}
	data := neighbourData{Status: r.URL.Query().Get("status")}
	if d.Discovery == nil {
		data.Missing = true
		d.render(w, r, http.StatusOK, "neighbours", &view{Title: "Unmanaged devices", Nav: "neighbours", Data: data})
		return
	}
	v := visitFrom(r.Context())
	q := model.NeighbourQuery{Status: model.NeighbourStatus(data.Status)}
	if data.Status == "" {
		q.Status = model.NeighbourUnmanaged
		data.Status = string(model.NeighbourUnmanaged)
	}
	if data.Status == "all" {
		q.Status = ""
	}
	items, next, err := d.Discovery.List(r.Context(), v.tenantID(), q, store.ListOptions{Limit: 200, Cursor: r.URL.Query().Get("cursor")})
	if err != nil {
		d.fail(w, r, http.StatusBadRequest, d.explain(err))
		return
	}
	data.Items, data.Next = items, next
	if v.can(authz.DevicesWrite) {
		ps, _, err := d.Store.ListProducts(r.Context(), v.tenantID(), store.ListOptions{Limit: 1000})
		if err != nil {
			d.internal(w, r, err)
			return
		}
		data.Products = ps
	}
	d.render(w, r, http.StatusOK, "neighbours", &view{Title: "Unmanaged devices", Nav: "neighbours", Data: data})
}

func (d *Dashboard) neighbourKnown(w http.ResponseWriter, r *http.Request) {
	if !d.serves(w, r, authz.DevicesWrite, d.Discovery != nil) {
		return
	}
	v := visitFrom(r.Context())
	n, err := d.Discovery.MarkKnown(r.Context(), v.p, v.tenantID(), chi.URLParam(r, "mac"), r.PostFormValue("note"))
	if err != nil {
		d.redirect(w, r, "/neighbours", "error", d.explainNeighbour(err))
		return
	}
	d.redirect(w, r, "/neighbours", "ok", n.MAC+" is marked as known.")
}

func (d *Dashboard) neighbourAdopt(w http.ResponseWriter, r *http.Request) {
	if !d.serves(w, r, authz.DevicesWrite, d.Discovery != nil) {
		return
	}
	v := visitFrom(r.Context())
	ad, err := d.Discovery.Adopt(r.Context(), v.p, v.tenantID(), chi.URLParam(r, "mac"), discovery.AdoptInput{
		ProductID: r.PostFormValue("product"), Serial: strings.TrimSpace(r.PostFormValue("serial"))})
	if err != nil {
		d.redirect(w, r, "/neighbours", "error", d.explainNeighbour(err))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	d.render(w, r, http.StatusOK, "claimcode", &view{Title: "Adopted " + ad.Device.Serial, Nav: "neighbours", Data: codeData{
		Heading: "Adopted " + ad.Neighbour.MAC + " as " + ad.Device.Serial,
		Lead: "It is registered as a manufactured device. Claim it with this code (My home, or POST /api/v1/claims), " +
			"then install the agent: it enrolls with its serial and the same code.",
		Code: ad.ClaimCode, Serial: ad.Device.Serial, Next: "/devices/" + url.PathEscape(ad.Device.ID), NextLabel: "Open the device"}})
}

func (d *Dashboard) explainNeighbour(err error) string {
	var inv *discovery.InvalidError
	var conf *discovery.ConflictError
	switch {
	case errors.As(err, &inv):
		return capitalize(inv.Field) + ": " + inv.Message + "."
	case errors.As(err, &conf):
		return capitalize(conf.Message) + "."
	case errors.Is(err, store.ErrNotFound):
		return "No device with this MAC address was reported here."
	}
	return d.explain(err)
}
