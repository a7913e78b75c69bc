package alarm_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/alarm"
	"github.com/steward-iot/steward/internal/detect"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/store/sqlstore"
)

const tenant = "ten-a"

type env struct {
	t   *testing.T
	ctx context.Context
	st  *sqlstore.DB
	svc *alarm.Service
	enf *enforcer
}

// enforcer records what the service asked the broker to do.
type enforcer struct {
	mu  sync.Mutex
	did []string
}

func (e *enforcer) Quarantine(_, deviceID string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.did = append(e.did, "quarantine "+deviceID)
	return true
}

func (e *enforcer) Disconnect(_, deviceID, _ string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.did = append(e.did, "disconnect "+deviceID)
	return true
}

func newEnv(t *testing.T, mitigations map[model.AlarmKind]model.MitigationAction) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, "sqlite:"+t.TempDir()+"/steward.db", sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	err = st.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateTenant(ctx, &model.Tenant{ID: tenant, Name: "A", Kind: model.TenantEnterprise, CreatedAt: now}); err != nil {
			return err
		}
		p := model.Product{ID: "prd-1", TenantID: tenant, Vendor: "Acme", Model: "T1", CreatedAt: now, UpdatedAt: now}
		if err := tx.CreateProduct(ctx, &p); err != nil {
			return err
		}
		for _, id := range []string{"dev-1", "dev-2"} {
			d := model.Device{ID: id, TenantID: tenant, ProductID: p.ID, Serial: "SN-" + id, State: model.StateActive,
				CreatedAt: now, UpdatedAt: now, Version: 1}
			if err := tx.CreateDevice(ctx, &d); err != nil {
				return err
			}
		}
		s := model.DefaultSecuritySettings()
		s.Detection.Mitigations = mitigations
		return tx.PutSecuritySettings(ctx, tenant, s)
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, st: st, svc: alarm.New(st, nil), enf: &enforcer{}}
	e.svc.SetEnforcer(e.enf)
	return e
}

func raise(device string, kind model.AlarmKind) detect.Decision {
	return detect.Decision{Raise: true, TenantID: tenant, DeviceID: device, Kind: kind, Title: string(kind) + " fired",
		Evidence: map[string]any{"value": 1}}
}

// events returns the types of the outbox's events, in order.
func (e *env) events() []string {
	evs, err := e.st.PendingEvents(e.ctx, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return out
}

func (e *env) audits() []string {
	recs, err := e.st.ListAudit(e.ctx, tenant, 0, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, r.Action+" "+r.Actor)
	}
	return out
}

func TestRaiseDeduplicateAcknowledgeClear(t *testing.T) {
	e := newEnv(t, nil)
	a, err := e.svc.Raise(e.ctx, raise("dev-1", model.AlarmMessageRate))
	if err != nil {
		t.Fatal(err)
	}
	if a.State != model.AlarmActive || a.Count != 1 || a.Severity != model.SeverityMedium || a.Mitigation != nil {
		t.Fatalf("raised: %+v", a)
	}
	again, err := e.svc.Raise(e.ctx, raise("dev-1", model.AlarmMessageRate))
	if err != nil || again.ID != a.ID || again.Count != 2 {
		t.Fatalf("raised again: %+v %v", again, err)
	}
	other, _ := e.svc.Raise(e.ctx, raise("dev-1", model.AlarmNewListeningPorts))
	if other.ID == a.ID {
		t.Fatal("another kind shares the alarm")
	}

	acked, err := e.svc.Acknowledge(e.ctx, "key:op", tenant, a.ID, " seen ")
	if err != nil || acked.State != model.AlarmAcknowledged || acked.AcknowledgedBy != "key:op" || acked.AckNote != "seen" {
		t.Fatalf("acknowledged: %+v %v", acked, err)
	}
	var se *alarm.StateError
	if _, err := e.svc.Acknowledge(e.ctx, "key:op", tenant, a.ID, ""); !errors.As(err, &se) {
		t.Fatalf("second acknowledgement: %v", err)
	}
	if _, err := e.svc.Acknowledge(e.ctx, "key:op", "ten-b", a.ID, ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("acknowledged from another tenant: %v", err)
	}
	// Raised while acknowledged: still the same alarm.
	if again, _ := e.svc.Raise(e.ctx, raise("dev-1", model.AlarmMessageRate)); again.ID != a.ID || again.State != model.AlarmAcknowledged {
		t.Fatalf("raised while acknowledged: %+v", again)
	}

	cleared, err := e.svc.Clear(e.ctx, tenant, "dev-1", model.AlarmMessageRate, nil)
	if err != nil || cleared.State != model.AlarmCleared || cleared.ClearedAt == nil {
		t.Fatalf("cleared: %+v %v", cleared, err)
	}
	if _, err := e.svc.Acknowledge(e.ctx, "key:op", tenant, a.ID, ""); !errors.As(err, &se) {
		t.Fatalf("acknowledging a cleared alarm: %v", err)
	}
	if _, err := e.svc.Clear(e.ctx, tenant, "dev-1", model.AlarmMessageRate, nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("clearing twice: %v", err)
	}
	fresh, _ := e.svc.Raise(e.ctx, raise("dev-1", model.AlarmMessageRate))
	if fresh.ID == a.ID || fresh.Count != 1 {
		t.Fatalf("raised after clearing: %+v", fresh)
	}
	// Deleted device: no alarm.
	if _, err := e.svc.Raise(e.ctx, raise("dev-gone", model.AlarmMessageRate)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("alarm for a missing device: %v", err)
	}

	want := []string{alarm.EventRaised, alarm.EventRaised, alarm.EventAcknowledged, alarm.EventCleared, alarm.EventRaised}
	if got := e.events(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	wantAudit := []string{"alarm.raise system:detect", "alarm.raise system:detect", "alarm.acknowledge key:op",
		"alarm.clear system:detect", "alarm.raise system:detect"}
	if got := e.audits(); !slices.Equal(got, wantAudit) {
		t.Fatalf("audit %v, want %v", got, wantAudit)
	}
}

func TestAutomaticMitigation(t *testing.T) {
	e := newEnv(t, map[model.AlarmKind]model.MitigationAction{
		model.AlarmNewListeningPorts: model.MitigateQuarantine,
		model.AlarmMessageRate:       model.MitigateQuarantine,
		model.AlarmAuthFailures:      model.MitigateUpdate,
		model.AlarmConnectionChurn:   model.MitigateDisconnect,
	})
	var mitigated []string
	e.svc.OnMitigated = func(a *model.Alarm) { mitigated = append(mitigated, a.ID) }

	a, err := e.svc.Raise(e.ctx, raise("dev-1", model.AlarmNewListeningPorts))
	if err != nil {
		t.Fatal(err)
	}
	if a.Mitigation == nil || a.Mitigation.Action != model.MitigateQuarantine || a.Mitigation.Result != alarm.ResultApplied {
		t.Fatalf("mitigation: %+v", a.Mitigation)
	}
	d, _ := e.st.GetDevice(e.ctx, tenant, "dev-1")
	if d.State != model.StateQuarantined {
		t.Fatalf("device is %s", d.State)
	}
	// A second kind: the device is quarantined already.
	b, _ := e.svc.Raise(e.ctx, raise("dev-1", model.AlarmMessageRate))
	if b.Mitigation.Result != alarm.ResultSkipped {
		t.Fatalf("second quarantine: %+v", b.Mitigation)
	}
	// Raised again: not mitigated twice.
	again, _ := e.svc.Raise(e.ctx, raise("dev-1", model.AlarmNewListeningPorts))
	if !again.Mitigation.At.Equal(a.Mitigation.At) {
		t.Fatal("mitigated twice")
	}
	// Update without an updater: skipped with what to do.
	u, _ := e.svc.Raise(e.ctx, raise("dev-2", model.AlarmAuthFailures))
	if u.Mitigation.Result != alarm.ResultSkipped || u.Mitigation.Detail == "" {
		t.Fatalf("update: %+v", u.Mitigation)
	}
	c, _ := e.svc.Raise(e.ctx, raise("dev-2", model.AlarmConnectionChurn))
	if c.Mitigation.Result != alarm.ResultApplied {
		t.Fatalf("disconnect: %+v", c.Mitigation)
	}
	// Not configured: notified by alarm.raised only.
	n, _ := e.svc.Raise(e.ctx, raise("dev-2", model.AlarmProcessJump))
	if n.Mitigation != nil {
		t.Fatalf("unconfigured kind mitigated: %+v", n.Mitigation)
	}
	if !slices.Equal(e.enf.did, []string{"quarantine dev-1", "disconnect dev-2"}) {
		t.Fatalf("enforced %v", e.enf.did)
	}
	if len(mitigated) != 4 {
		t.Fatalf("mitigations reported: %v", mitigated)
	}
	want := []string{alarm.EventRaised, "device.state_changed", alarm.EventMitigated, alarm.EventRaised, alarm.EventMitigated,
		alarm.EventRaised, alarm.EventMitigated, alarm.EventRaised, alarm.EventMitigated, alarm.EventRaised}
	if got := e.events(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	audits := e.audits()
	if !slices.Contains(audits, "device.transition system:detect") || !slices.Contains(audits, "alarm.mitigate system:detect") {
		t.Fatalf("audit: %v", audits)
	}
	trs, _, _ := e.st.ListTransitions(e.ctx, tenant, "dev-1", store.ListOptions{})
	if len(trs) == 0 || trs[len(trs)-1].To != model.StateQuarantined || trs[len(trs)-1].Actor != alarm.Actor {
		t.Fatalf("transitions: %+v", trs)
	}
}

// TestDetectorToAlarm runs the detector with the service as its sink.
func TestDetectorToAlarm(t *testing.T) {
	e := newEnv(t, map[model.AlarmKind]model.MitigationAction{model.AlarmMessageRate: model.MitigateQuarantine})
	done := make(chan *model.Alarm, 1)
	e.svc.OnMitigated = func(a *model.Alarm) { done <- a }
	d := detect.New(detect.Options{Decide: e.svc.Handle, Settings: func(ctx context.Context, tenantID string) (model.DetectionSettings, error) {
		s, err := e.st.GetSecuritySettings(ctx, tenantID)
		return s.Detection, err
	}})
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	go d.Run(ctx)
	dv := d.Device(ctx, tenant, "dev-1")
	for range model.DefaultDetectionSettings().MessagesPerMinute + 1 {
		dv.Message(10)
	}
	select {
	case a := <-done:
		if a.Kind != model.AlarmMessageRate || a.Mitigation.Result != alarm.ResultApplied {
			t.Fatalf("alarm: %+v", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no mitigation")
	}
}
