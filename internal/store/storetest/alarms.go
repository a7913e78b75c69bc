package storetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// testAlarms covers behaviour alarms: one open alarm per device and kind,
// state changes, filters, newest-first pages, the cross-tenant wall and
// the detection settings stored with the security settings.
func testAlarms(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	pa := createProduct(t, s, tenA, "prd-a")
	pb := createProduct(t, s, tenB, "prd-b")
	createDevice(t, s, newDevice(tenA, pa.ID, "dev-a1", "SN-a1"))
	createDevice(t, s, newDevice(tenA, pa.ID, "dev-a2", "SN-a2"))
	createDevice(t, s, newDevice(tenB, pb.ID, "dev-b1", "SN-b1"))

	n := 0
	alarm := func(tenant, device string, kind model.AlarmKind) model.Alarm {
		n++
		return model.Alarm{ID: fmt.Sprintf("alm-%03d", n), TenantID: tenant, DeviceID: device, Kind: kind,
			Severity: kind.Severity(), State: model.AlarmActive, Title: string(kind) + " on " + device,
			FirstRaised: at(time.Duration(n) * time.Second), LastRaised: at(time.Duration(n) * time.Second), Count: 1,
			Evidence: json.RawMessage(`{"value":1}`)}
	}
	create := func(a model.Alarm) error {
		return s.Update(ctx, func(tx store.Tx) error { return tx.CreateAlarm(ctx, &a) })
	}

	a1 := alarm(tenA, "dev-a1", model.AlarmMessageRate)
	noErr(t, create(a1), "CreateAlarm")
	got, err := s.GetAlarm(ctx, tenA, a1.ID)
	noErr(t, err, "GetAlarm")
	wantEqual(t, *got, a1, "stored alarm")
	_, err = s.GetAlarm(ctx, tenB, a1.ID)
	wantErr(t, err, store.ErrNotFound, "GetAlarm from B")

	// De-duplication: a second open alarm of the same device and kind is a conflict.
	wantConflict(t, create(alarm(tenA, "dev-a1", model.AlarmMessageRate)), "dev-a1", "second open alarm")
	open, err := s.OpenAlarm(ctx, tenA, "dev-a1", model.AlarmMessageRate)
	noErr(t, err, "OpenAlarm")
	wantEqual(t, open.ID, a1.ID, "open alarm")
	_, err = s.OpenAlarm(ctx, tenB, "dev-a1", model.AlarmMessageRate)
	wantErr(t, err, store.ErrNotFound, "OpenAlarm from B")
	_, err = s.OpenAlarm(ctx, tenA, "dev-a1", model.AlarmByteRate)
	wantErr(t, err, store.ErrNotFound, "OpenAlarm of another kind")

	// Acknowledged still counts as open; raised again counts up.
	a1.State, a1.AcknowledgedBy, a1.AcknowledgedAt, a1.AckNote = model.AlarmAcknowledged, "key:op", ptr(at(time.Minute)), "looking"
	a1.Count, a1.LastRaised, a1.Evidence = 3, at(2*time.Minute), json.RawMessage(`{"value":3}`)
	a1.Mitigation = &model.Mitigation{Action: model.MitigateQuarantine, At: at(2 * time.Minute), Result: "applied"}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.UpdateAlarm(ctx, &a1) })
	got, _ = s.GetAlarm(ctx, tenA, a1.ID)
	wantEqual(t, *got, a1, "acknowledged alarm")
	wantConflict(t, create(alarm(tenA, "dev-a1", model.AlarmMessageRate)), "dev-a1", "open while acknowledged")
	b := a1
	b.TenantID = tenB
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.UpdateAlarm(ctx, &b) }), store.ErrNotFound, "UpdateAlarm from B")

	// Cleared: a new alarm of the kind may open.
	a1.State, a1.ClearedAt = model.AlarmCleared, ptr(at(3*time.Minute))
	mustUpdate(t, s, func(tx store.Tx) error { return tx.UpdateAlarm(ctx, &a1) })
	_, err = s.OpenAlarm(ctx, tenA, "dev-a1", model.AlarmMessageRate)
	wantErr(t, err, store.ErrNotFound, "OpenAlarm after clearing")
	a2 := alarm(tenA, "dev-a1", model.AlarmMessageRate)
	noErr(t, create(a2), "new alarm after clearing")
	a3 := alarm(tenA, "dev-a2", model.AlarmNewListeningPorts)
	noErr(t, create(a3), "alarm of dev-a2")
	a4 := alarm(tenB, "dev-b1", model.AlarmMessageRate)
	noErr(t, create(a4), "alarm of B")
	a5 := alarm(tenA, "dev-a2", model.AlarmMessageRate)
	noErr(t, create(a5), "second kind on dev-a2")

	id := func(a model.Alarm) string { return a.ID }
	list := func(q model.AlarmQuery, limit int) []string {
		return walk(t, limit, id, func(c string) ([]model.Alarm, string, error) {
			return s.ListAlarms(ctx, tenA, q, store.ListOptions{Limit: limit, Cursor: c})
		})
	}
	newest := func(as ...model.Alarm) []string {
		var out []string
		for _, a := range as {
			out = append(out, a.ID)
		}
		slices.Sort(out)
		slices.Reverse(out)
		return out
	}
	wantIDs(t, list(model.AlarmQuery{}, 2), newest(a1, a2, a3, a5), "all of A, newest first")
	wantIDs(t, list(model.AlarmQuery{State: "open"}, 0), newest(a2, a3, a5), "open")
	wantIDs(t, list(model.AlarmQuery{State: string(model.AlarmCleared)}, 0), newest(a1), "cleared")
	wantIDs(t, list(model.AlarmQuery{DeviceID: "dev-a2"}, 1), newest(a3, a5), "of dev-a2")
	wantIDs(t, list(model.AlarmQuery{Kind: model.AlarmMessageRate}, 0), newest(a1, a2, a5), "of a kind")
	wantIDs(t, list(model.AlarmQuery{DeviceID: "dev-b1"}, 0), nil, "B's device from A")
	for _, c := range garbageCursors {
		_, _, err := s.ListAlarms(ctx, tenA, model.AlarmQuery{}, store.ListOptions{Cursor: c})
		wantErr(t, err, store.ErrBadCursor, "ListAlarms with a garbage cursor")
	}

	// OpenAlarms spans tenants (a starting detector takes them over).
	var all []string
	after := ""
	for {
		page, err := s.OpenAlarms(ctx, after, 2)
		noErr(t, err, "OpenAlarms")
		if len(page) == 0 {
			break
		}
		for _, a := range page {
			all = append(all, a.ID)
		}
		after = page[len(page)-1].ID
	}
	want := newest(a2, a3, a4, a5)
	slices.Reverse(want)
	wantIDs(t, all, want, "open alarms of every tenant")

	// Detection settings round-trip with the security settings.
	st, err := s.GetSecuritySettings(ctx, tenA)
	noErr(t, err, "GetSecuritySettings")
	wantEqual(t, st.Detection, model.DefaultDetectionSettings(), "default detection settings")
	set := model.DefaultSecuritySettings()
	set.Detection.MessagesPerMinute = 77
	set.Detection.Sigma = 4.5
	set.Detection.Mitigations = map[model.AlarmKind]model.MitigationAction{model.AlarmMessageRate: model.MitigateQuarantine}
	set.UpdatedAt, set.UpdatedBy = ptr(base), "key:admin"
	mustUpdate(t, s, func(tx store.Tx) error { return tx.PutSecuritySettings(ctx, tenA, set) })
	st, _ = s.GetSecuritySettings(ctx, tenA)
	wantEqual(t, st, set, "stored detection settings")
	st, _ = s.GetSecuritySettings(ctx, tenB)
	wantEqual(t, st.Detection, model.DefaultDetectionSettings(), "B keeps the defaults")
}
