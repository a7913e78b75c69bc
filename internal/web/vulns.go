package web

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/vuln"
)

// The vulnerabilities pages: the advisories that affect firmware the
// tenant's devices run (matched through the firmware's SBOMs), and per
// advisory the affected firmware versions and the exposed devices.

type advisoryRow struct {
	ID       string
	Severity string
	Packages []string // ecosystem/name@installed
	Firmware []fwRow
}

type fwRow struct {
	ProductID, Product, Version string
}

func (d *Dashboard) vulnsPage(w http.ResponseWriter, r *http.Request) {
	if !d.serves(w, r, authz.DevicesRead, d.Vulns != nil) {
		return
	}
	ctx := r.Context()
	tid := visitFrom(ctx).tenantID()
	hits, err := d.Vulns.FirmwareHits(ctx, tid)
	if err != nil {
		d.internal(w, r, err)
		return
	}
	names, err := d.productNames(r, tid)
	if err != nil {
		d.internal(w, r, err)
		return
	}
	byID := map[string]*advisoryRow{}
	for fw, hs := range hits {
		for _, h := range hs {
			a := byID[h.AdvisoryID]
			if a == nil {
				a = &advisoryRow{ID: h.AdvisoryID, Severity: h.Severity}
				byID[h.AdvisoryID] = a
			}
			if p := h.Ecosystem + "/" + h.Package + "@" + h.Version; !slices.Contains(a.Packages, p) {
				a.Packages = append(a.Packages, p)
			}
			row := fwRow{ProductID: fw.ProductID, Product: names[fw.ProductID], Version: fw.FirmwareVersion}
			if !slices.Contains(a.Firmware, row) {
				a.Firmware = append(a.Firmware, row)
			}
		}
	}
	rows := make([]advisoryRow, 0, len(byID))
	for _, a := range byID {
		slices.Sort(a.Packages)
		slices.SortFunc(a.Firmware, func(x, y fwRow) int {
			return strings.Compare(x.Product+"\x00"+x.Version, y.Product+"\x00"+y.Version)
		})
		rows = append(rows, *a)
	}
	slices.SortFunc(rows, func(x, y advisoryRow) int {
		if c := model.Severity(y.Severity).Rank() - model.Severity(x.Severity).Rank(); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	d.render(w, r, http.StatusOK, "vulns", &view{Title: "Vulnerabilities", Nav: "vulns", Data: rows})
}

type advisoryData struct {
	ID       string
	Exposure *vuln.Exposure
	Products map[string]string
	NextURL  string
}

func (d *Dashboard) advisoryPage(w http.ResponseWriter, r *http.Request) {
	if !d.serves(w, r, authz.DevicesRead, d.Vulns != nil) {
		return
	}
	ctx := r.Context()
	tid := visitFrom(ctx).tenantID()
	id := chi.URLParam(r, "advisoryID")
	ex, err := d.Vulns.Exposure(ctx, tid, id, store.ListOptions{Limit: 100, Cursor: r.URL.Query().Get("cursor")})
	switch {
	case errors.Is(err, store.ErrNotFound):
		d.notFound(w, r)
		return
	case errors.Is(err, store.ErrBadCursor):
		d.redirect(w, r, "/vulnerabilities/"+url.PathEscape(id), "error", "This page link is out of date. Here is the first page.")
		return
	case errors.Is(err, vuln.ErrTooManyFirmware):
		d.fail(w, r, http.StatusUnprocessableEntity, capitalize(err.Error())+".")
		return
	case err != nil:
		d.internal(w, r, err)
		return
	}
	names, err := d.productNames(r, tid)
	if err != nil {
		d.internal(w, r, err)
		return
	}
	data := advisoryData{ID: id, Exposure: ex, Products: names}
	if ex.NextCursor != "" {
		data.NextURL = "/vulnerabilities/" + url.PathEscape(id) + "?cursor=" + url.QueryEscape(ex.NextCursor)
	}
	d.render(w, r, http.StatusOK, "advisory", &view{Title: id, Nav: "vulns", Data: data})
}

func (d *Dashboard) productNames(r *http.Request, tid string) (map[string]string, error) {
	products, _, err := d.Store.ListProducts(r.Context(), tid, listAll)
	if err != nil {
		return nil, err
	}
	names := make(map[string]string, len(products))
	for _, p := range products {
		names[p.ID] = productName(&p)
	}
	return names, nil
}
