package web

import (
	"net/http"
	"strconv"

	"github.com/steward-iot/steward/internal/auditlog"
	"github.com/steward-iot/steward/internal/authz"
)

// autoVerify is the chain length up to which the audit page checks the
// whole chain on every visit; longer chains are checked on request.
const autoVerify = 20_000

const auditPageSize = 50

type auditData struct {
	Rows      []auditRow
	Head      int64
	OlderURL  string
	NewerURL  string
	Verified  bool // the chain was checked for this page
	Report    *auditlog.ChainReport
	VerifyURL string
	Platform  bool
}

// auditPage shows the tenant's trail newest first (a platform admin at
// platform level sees the platform's chain) and whether the chain holds.
func (d *Dashboard) auditPage(w http.ResponseWriter, r *http.Request) {
	if !d.allowed(w, r, authz.AuditRead) {
		return
	}
	ctx := r.Context()
	v := visitFrom(ctx)
	tid := v.tenantID()
	data := auditData{Head: d.auditHead(r, tid), Platform: tid == "", VerifyURL: "/audit?verify=1"}
	end := data.Head
	if b, err := strconv.ParseInt(r.URL.Query().Get("before"), 10, 64); err == nil && b > 0 && b-1 < end {
		end = b - 1
		data.VerifyURL += "&before=" + strconv.FormatInt(b, 10)
	}
	recs, err := d.Store.ListAudit(ctx, tid, max(0, end-auditPageSize), auditPageSize)
	if err != nil {
		d.internal(w, r, err)
		return
	}
	names := newActors(ctx, d.Store, tid)
	for i := len(recs) - 1; i >= 0; i-- {
		data.Rows = append(data.Rows, auditRow{AuditRecord: recs[i], ActorName: names.Name(recs[i].Actor)})
	}
	if start := end - auditPageSize; start > 0 {
		data.OlderURL = "/audit?before=" + strconv.FormatInt(start+1, 10)
	}
	if end < data.Head {
		if newer := end + 1 + auditPageSize; newer <= data.Head {
			data.NewerURL = "/audit?before=" + strconv.FormatInt(newer, 10)
		} else {
			data.NewerURL = "/audit"
		}
	}
	if data.Head <= autoVerify || r.URL.Query().Get("verify") == "1" {
		reps, err := auditlog.Verify(ctx, d.Store, &tid, nil)
		if err != nil {
			d.internal(w, r, err)
			return
		}
		data.Verified = true
		if len(reps) > 0 {
			data.Report = &reps[0]
		}
	}
	d.render(w, r, http.StatusOK, "audit", &view{Title: "Audit log", Nav: "audit", Data: data})
}
