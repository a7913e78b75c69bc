package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/commands"
	"github.com/steward-iot/steward/internal/defender"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/telemetry"
	"github.com/steward-iot/steward/internal/twin"
)

// The device page's sections built on the device services: twin,
// telemetry chart, certificates, findings and commands. Each shows only
// when its service is wired in.

type twinPart struct {
	Twin     *model.Twin
	Desired  string
	Reported string
	Delta    string
	InSync   bool
}

type chartPart struct {
	Metrics []string
	Metric  string
	Range   string
	Ranges  []rangeChoice
	SVG     template.HTML
	Summary string
	Error   string
}

type rangeChoice struct {
	Value, Label string
	Span         time.Duration
}

var chartRanges = []rangeChoice{
	{"1h", "last hour", time.Hour}, {"24h", "last 24 hours", 24 * time.Hour}, {"7d", "last 7 days", 7 * 24 * time.Hour},
	{"30d", "last 30 days", 30 * 24 * time.Hour},
}

// chartBuckets is how many values a chart shows at most: longer ranges
// are downsampled to averages over equal steps.
const chartBuckets = 120

var revocationReasons = []model.RevocationReason{model.ReasonKeyCompromise, model.ReasonAffiliationChanged,
	model.ReasonSuperseded, model.ReasonCessationOfOperation, model.ReasonPrivilegeWithdrawn, model.ReasonUnspecified}

// deviceParts are the sections beyond the registry's.
type deviceParts struct {
	Twin     *twinPart
	Chart    *chartPart
	Certs    []model.Certificate
	HasCerts bool
	Reasons  []model.RevocationReason
	Findings []model.Finding
	HasFind  bool
	// Alarms are the device's open behaviour alarms.
	Alarms    []model.Alarm
	HasAlarms bool
	Commands  []model.Command
	HasCmds   bool
}

func (d *Dashboard) loadDeviceParts(ctx context.Context, tid string, dev *model.Device, q url.Values) (*deviceParts, error) {
	out := &deviceParts{Reasons: revocationReasons}
	if d.Twin != nil {
		tw, err := d.Twin.Get(ctx, tid, dev.ID)
		if err != nil {
			return nil, fmt.Errorf("twin: %w", err)
		}
		tp := &twinPart{Twin: tw, Desired: pretty(tw.Desired), Reported: pretty(tw.Reported)}
		delta := twin.Delta(tw)
		tp.InSync = len(delta) == 0
		if b, err := json.MarshalIndent(delta, "", "  "); err == nil {
			tp.Delta = string(b)
		}
		out.Twin = tp
	}
	if d.Telemetry != nil {
		c, err := d.deviceChart(ctx, tid, dev.ID, q)
		if err != nil {
			return nil, fmt.Errorf("telemetry: %w", err)
		}
		out.Chart = c
	}
	if d.Identity != nil {
		certs, _, err := d.Identity.ListCertificates(ctx, tid, dev.ID, store.ListOptions{Limit: 20})
		if err != nil {
			return nil, fmt.Errorf("certificates: %w", err)
		}
		out.Certs, out.HasCerts = certs, true
	}
	if d.Defender != nil {
		fs, _, err := d.Store.ListFindings(ctx, tid, model.FindingQuery{ResourceID: dev.ID, Now: d.Defender.Now()},
			store.ListOptions{Limit: 50})
		if err != nil {
			return nil, fmt.Errorf("findings: %w", err)
		}
		out.Findings, out.HasFind = fs, true
	}
	if d.Alarms != nil {
		as, _, err := d.Store.ListAlarms(ctx, tid, model.AlarmQuery{State: "open", DeviceID: dev.ID}, store.ListOptions{Limit: 50})
		if err != nil {
			return nil, fmt.Errorf("alarms: %w", err)
		}
		out.Alarms, out.HasAlarms = as, true
	}
	if d.Commands != nil {
		cs, _, err := d.Store.ListCommands(ctx, tid, dev.ID, store.ListOptions{Limit: 20})
		if err != nil {
			return nil, fmt.Errorf("commands: %w", err)
		}
		out.Commands, out.HasCmds = cs, true
	}
	return out, nil
}

// deviceChart draws one numeric metric over the chosen range.
func (d *Dashboard) deviceChart(ctx context.Context, tid, deviceID string, q url.Values) (*chartPart, error) {
	c := &chartPart{Ranges: chartRanges, Range: "24h"}
	latest, err := d.Telemetry.Latest(ctx, tid, deviceID)
	if err != nil {
		return nil, err
	}
	for _, p := range latest {
		if p.Kind == model.KindNumber && !slices.Contains(c.Metrics, p.Metric) {
			c.Metrics = append(c.Metrics, p.Metric)
		}
	}
	slices.Sort(c.Metrics)
	if len(c.Metrics) == 0 {
		return c, nil
	}
	c.Metric = c.Metrics[0]
	if m := q.Get("metric"); slices.Contains(c.Metrics, m) {
		c.Metric = m
	}
	span := 24 * time.Hour
	for _, rc := range chartRanges {
		if rc.Value == q.Get("range") {
			c.Range, span = rc.Value, rc.Span
		}
	}
	to := time.Now().UTC()
	from := to.Add(-span)
	s, err := d.Telemetry.Query(ctx, tid, deviceID, c.Metric, from, to, span/chartBuckets)
	var inv *telemetry.InvalidError
	if errors.As(err, &inv) {
		c.Error = capitalize(inv.Error()) + "."
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	pts := make([]point, 0, len(s.Buckets))
	for _, b := range s.Buckets {
		if b.Count > 0 {
			// A bucket is drawn at its middle.
			pts = append(pts, point{T: b.Start.Add(span / chartBuckets / 2), V: b.Avg})
		}
	}
	c.Summary = describeLine(pts)
	c.SVG = lineChart("chart-telemetry", c.Metric+" over the "+rangeLabel(c.Range), from, to, pts)
	return c, nil
}

func rangeLabel(v string) string {
	for _, rc := range chartRanges {
		if rc.Value == v {
			return rc.Label
		}
	}
	return v
}

func pretty(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "{}"
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}

// twinDesired replaces the desired document, if desired is still at the
// version the form was made from (the API's If-Match).
func (d *Dashboard) twinDesired(w http.ResponseWriter, r *http.Request) {
	if !d.serves(w, r, authz.DevicesWrite, d.Twin != nil) {
		return
	}
	v := visitFrom(r.Context())
	id := chi.URLParam(r, "deviceID")
	back := "/devices/" + url.PathEscape(id) + "#h-twin"
	version, err := strconv.ParseInt(r.PostFormValue("version"), 10, 64)
	if err != nil {
		d.redirect(w, r, back, "error", "The form is missing the twin's version. Reload the page and try again.")
		return
	}
	doc := strings.TrimSpace(r.PostFormValue("desired"))
	if !json.Valid([]byte(doc)) {
		d.redirect(w, r, back, "error", "Desired must be a JSON object, e.g. {\"interval\": 60}.")
		return
	}
	tw, err := d.Twin.SetDesired(r.Context(), v.p, v.tenantID(), id, json.RawMessage(doc), false, version)
	var conflict *twin.ConflictError
	switch {
	case errors.As(err, &conflict):
		d.redirect(w, r, back, "error", fmt.Sprintf("Someone changed desired meanwhile (it is now at version %d). "+
			"Here it is as it is now; make your change again.", conflict.Current))
		return
	case errors.Is(err, store.ErrNotFound):
		d.notFound(w, r)
		return
	case err != nil:
		d.redirect(w, r, back, "error", d.explain(err))
		return
	}
	d.redirect(w, r, back, "ok", fmt.Sprintf("Desired saved (version %d). The device gets it when it is connected.", tw.DesiredVersion))
}

// commandSend queues a command for the device.
func (d *Dashboard) commandSend(w http.ResponseWriter, r *http.Request) {
	if !d.serves(w, r, authz.DevicesLifecycle, d.Commands != nil) {
		return
	}
	v := visitFrom(r.Context())
	id := chi.URLParam(r, "deviceID")
	back := "/devices/" + url.PathEscape(id) + "#h-commands"
	if r.PostFormValue("confirm") != "yes" {
		d.redirect(w, r, back, "error", "Tick the confirmation box to send the command.")
		return
	}
	var params json.RawMessage
	if p := strings.TrimSpace(r.PostFormValue("params")); p != "" {
		if !json.Valid([]byte(p)) {
			d.redirect(w, r, back, "error", "Parameters must be JSON, e.g. {\"seconds\": 5}, or left empty.")
			return
		}
		params = json.RawMessage(p)
	}
	c, err := d.Commands.Create(r.Context(), v.p, v.tenantID(), id, commands.Input{
		Name: strings.TrimSpace(r.PostFormValue("name")), Params: params})
	if errors.Is(err, store.ErrNotFound) {
		d.notFound(w, r)
		return
	}
	if err != nil {
		d.redirect(w, r, back, "error", d.explain(err))
		return
	}
	d.redirect(w, r, back, "ok", fmt.Sprintf("Command %s is %s.", c.Name, commandLabel(c.Status)))
}

// certRevoke revokes one of the device's certificates with a reason.
func (d *Dashboard) certRevoke(w http.ResponseWriter, r *http.Request) {
	if !d.serves(w, r, authz.DevicesLifecycle, d.Identity != nil) {
		return
	}
	ctx := r.Context()
	v := visitFrom(ctx)
	id, serial := chi.URLParam(r, "deviceID"), chi.URLParam(r, "serial")
	back := "/devices/" + url.PathEscape(id) + "#h-certs"
	c, err := d.Identity.GetCertificate(ctx, v.tenantID(), serial)
	if err != nil || c.DeviceID != id {
		d.notFound(w, r)
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		d.redirect(w, r, back, "error", "Tick the confirmation box to revoke the certificate.")
		return
	}
	reason := model.RevocationReason(r.PostFormValue("reason"))
	if !slices.Contains(revocationReasons, reason) {
		d.redirect(w, r, back, "error", "Pick a revocation reason.")
		return
	}
	if _, err := d.Identity.RevokeCertificate(ctx, v.p, v.tenantID(), serial, reason,
		strings.TrimSpace(r.PostFormValue("note"))); err != nil {
		d.redirect(w, r, back, "error", d.explain(err))
		return
	}
	d.redirect(w, r, back, "ok", "Certificate "+serial+" is revoked; the device can no longer connect with it.")
}

func commandLabel(s model.CommandStatus) string {
	switch s {
	case model.CommandQueued:
		return "queued until the device connects"
	case model.CommandSent:
		return "sent, waiting for the answer"
	case model.CommandTimedOut:
		return "timed out"
	}
	return string(s)
}

// domainMessage is the person-readable text of a refusal by one of the
// device services, when err is one.
func domainMessage(err error) (string, bool) {
	var idErr *identity.Error
	var twInv *twin.InvalidError
	var twConf *twin.ConflictError
	var cmdInv *commands.InvalidError
	var telInv *telemetry.InvalidError
	var defInv *defender.InvalidError
	switch {
	case errors.As(err, &idErr):
		return capitalize(idErr.Detail) + ".", true
	case errors.As(err, &twInv):
		return "Desired: " + twInv.Message + ".", true
	case errors.As(err, &twConf):
		return capitalize(twConf.Error()) + ".", true
	case errors.As(err, &cmdInv):
		return capitalize(cmdInv.Field) + " " + cmdInv.Message + ".", true
	case errors.As(err, &telInv):
		return capitalize(telInv.Error()) + ".", true
	case errors.As(err, &defInv):
		return capitalize(defInv.Field) + " " + defInv.Message + ".", true
	}
	return "", false
}
