package httpapi_test

import (
	"context"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/detect"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// raiseAlarm raises an alarm the way the detector does (alarms have no
// creating route: detection makes them).
func raiseAlarm(t *testing.T, srv *testserver.Server, tenantID, deviceID string, kind model.AlarmKind) *model.Alarm {
	t.Helper()
	a, err := srv.Platform.Alarms.Raise(context.Background(), detect.Decision{Raise: true, TenantID: tenantID, DeviceID: deviceID,
		Kind: kind, Title: string(kind) + " in a test", Evidence: map[string]any{"value": 7}})
	if err != nil {
		t.Fatalf("raising an alarm: %v", err)
	}
	return a
}

func (f *fixture) fillAlarms(t *testing.T) {
	t.Helper()
	f.alarmID = raiseAlarm(t, f.srv, f.tenant.ID, f.device.ID, model.AlarmProcessJump).ID
	f.alarm2 = raiseAlarm(t, f.srv, f.tenant.ID, f.device.ID, model.AlarmAuthFailures).ID
}

func TestAlarmRoutes(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		f := newFixture(t, srv, "alarms", sink(t))
		admin := f.tenant.Admin.Secret
		stream := srv.Events(t, testserver.StreamOpts{Key: admin})
		ports := raiseAlarm(t, srv, f.tenant.ID, f.other.ID, model.AlarmNewListeningPorts)
		rate := raiseAlarm(t, srv, f.tenant.ID, f.other.ID, model.AlarmMessageRate)
		get := func(path, key string) []string {
			res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + path, Key: key})
			var ids []string
			for _, it := range res.Items() {
				ids = append(ids, it["id"].(string))
			}
			return ids
		}
		all := []string{rate.ID, ports.ID, f.alarm2, f.alarmID}
		for _, c := range []struct {
			path string
			want []string
		}{
			{"/alarms", all},
			{"/alarms?state=open", all},
			{"/alarms?state=cleared", nil},
			{"/alarms?kind=new_listening_ports", []string{ports.ID}},
			{"/alarms?device_id=" + f.other.ID, []string{rate.ID, ports.ID}},
			{"/devices/" + f.other.ID + "/alarms", []string{rate.ID, ports.ID}},
			{"/devices/" + f.other.ID + "/alarms?kind=message_rate", []string{rate.ID}},
		} {
			if got := get(c.path, f.viewer.Secret); !slices.Equal(got, c.want) {
				t.Errorf("GET %s: %v, want %v", c.path, got, c.want)
			}
		}
		res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/alarms/" + ports.ID, Key: f.viewer.Secret})
		var got model.Alarm
		res.Into(t, &got)
		if got.State != model.AlarmActive || got.Kind != model.AlarmNewListeningPorts || got.Severity != model.SeverityHigh ||
			got.DeviceID != f.other.ID || string(got.Evidence) != `{"value":7}` {
			t.Fatalf("alarm: %+v", got)
		}

		// Viewers read; operators acknowledge, once.
		srv.Must(t, http.StatusForbidden, testserver.Req{Method: http.MethodPost, Path: api + "/alarms/" + ports.ID + "/acknowledge",
			Key: f.viewer.Secret, Body: map[string]any{}})
		res = srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/alarms/" + ports.ID + "/acknowledge",
			Key: f.operator.Secret, Body: map[string]any{"note": "known maintenance port"}})
		res.Into(t, &got)
		if got.State != model.AlarmAcknowledged || got.AcknowledgedBy != "key:"+f.operator.ID || got.AckNote != "known maintenance port" {
			t.Fatalf("acknowledged: %+v", got)
		}
		res = srv.Must(t, http.StatusConflict, testserver.Req{Method: http.MethodPost, Path: api + "/alarms/" + ports.ID + "/acknowledge",
			Key: f.operator.Secret, Body: map[string]any{}})
		if !strings.Contains(res.Problem().Detail, "already acknowledged") {
			t.Errorf("second acknowledgement: %s", res)
		}
		srv.Must(t, http.StatusNotFound, testserver.Req{Method: http.MethodGet, Path: api + "/alarms/alm_nope", Key: admin})
		srv.Must(t, http.StatusNotFound, testserver.Req{Method: http.MethodGet, Path: api + "/devices/dev_nope/alarms", Key: admin})
		srv.Must(t, http.StatusUnprocessableEntity, testserver.Req{Method: http.MethodGet, Path: api + "/alarms?state=gone", Key: admin})
		srv.Must(t, http.StatusUnprocessableEntity, testserver.Req{Method: http.MethodGet, Path: api + "/alarms?kind=cpu", Key: admin})
		srv.Must(t, http.StatusUnprocessableEntity, testserver.Req{Method: http.MethodPost, Path: api + "/alarms/" + rate.ID + "/acknowledge",
			Key: admin, Body: map[string]any{"note": strings.Repeat("x", 1025)}})

		// The events reach the stream (and so webhooks).
		var types []string
		stream.Until(15*time.Second, func(ev testserver.SSEEvent) bool {
			if strings.HasPrefix(ev.Event.Type, "alarm.") && ev.Event.Subject != f.alarmID && ev.Event.Subject != f.alarm2 {
				types = append(types, ev.Event.Type+" "+ev.Event.Subject)
			}
			return len(types) == 3
		})
		want := []string{"alarm.raised " + ports.ID, "alarm.raised " + rate.ID, "alarm.acknowledged " + ports.ID}
		if !slices.Equal(types, want) {
			t.Errorf("events %v, want %v", types, want)
		}
	})
}

func TestDetectionSettings(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		ten := srv.CreateTenant(t, "detect")
		key := ten.Admin.Secret
		res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/security/settings", Key: key})
		var s model.SecuritySettings
		res.Into(t, &s)
		if !reflect.DeepEqual(s.Detection, model.DefaultDetectionSettings()) {
			t.Fatalf("default detection settings: %+v", s.Detection)
		}
		audit := map[string]any{"stale_after_days": 7, "max_tenant_admin_keys": 3, "unused_key_days": 90, "flow_window_hours": 24}
		det := model.DefaultDetectionSettings()
		det.MessagesPerMinute, det.LearningMinutes = 300, 0
		det.Mitigations = map[model.AlarmKind]model.MitigationAction{model.AlarmMessageRate: model.MitigateQuarantine,
			model.AlarmNewListeningPorts: model.MitigateSuspend}
		body := func(d any) map[string]any {
			b := map[string]any{}
			for k, v := range audit {
				b[k] = v
			}
			if d != nil {
				b["detection"] = d
			}
			return b
		}
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: api + "/security/settings", Key: key, Body: body(det)})
		// Left out: unchanged.
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: api + "/security/settings", Key: key, Body: body(nil)})
		res = srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/security/settings", Key: key})
		res.Into(t, &s)
		if !reflect.DeepEqual(s.Detection, det) {
			t.Fatalf("stored: %+v, want %+v", s.Detection, det)
		}
		for _, c := range []struct {
			change func(d map[string]any)
			where  string
		}{
			{func(d map[string]any) { d["sigma"] = 0.2 }, "body.detection.sigma"},
			{func(d map[string]any) { d["messages_per_minute"] = -5 }, "body.detection.messages_per_minute"},
			{func(d map[string]any) { d["clear_after_minutes"] = 0 }, "body.detection.clear_after_minutes"},
			{func(d map[string]any) { d["mitigations"] = map[string]any{"cpu_load": "quarantine"} }, "body.detection.mitigations"},
			{func(d map[string]any) { d["mitigations"] = map[string]any{"message_rate": "reboot"} }, "body.detection.mitigations.message_rate"},
			{func(d map[string]any) { d["surprise"] = 1 }, "body.detection.surprise"},
		} {
			d := map[string]any{"messages_per_minute": 300, "bytes_per_minute": 1000, "auth_failures_per_5min": 10,
				"connects_per_10min": 20, "new_sources_per_hour": 5, "new_listening_ports": 1, "new_outbound_destinations": 3,
				"process_count_jump": 50, "learning_minutes": 60, "sigma": 6, "rate_floor_per_minute": 120, "clear_after_minutes": 10}
			c.change(d)
			res := srv.Must(t, http.StatusUnprocessableEntity, testserver.Req{Method: http.MethodPut, Path: api + "/security/settings",
				Key: key, Body: body(d)})
			p := res.Problem()
			if len(p.Errors) == 0 || !strings.HasPrefix(p.Errors[0].Location, c.where) {
				t.Errorf("%s: want an error at %s, got %s", c.where, c.where, res)
			}
		}
		// Refused input changed nothing.
		res = srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/security/settings", Key: key})
		res.Into(t, &s)
		if !reflect.DeepEqual(s.Detection, det) {
			t.Fatalf("after refusals: %+v", s.Detection)
		}
	})
}

// TestAlarmKindsDocumented keeps the kind filter's enum in step with the model.
func TestAlarmKindsDocumented(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/openapi.json"})
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name   string `json:"name"`
				Schema struct {
					Enum []string `json:"enum"`
				} `json:"schema"`
			} `json:"parameters"`
		} `json:"paths"`
	}
	res.Into(t, &doc)
	var want []string
	for _, k := range model.AlarmKinds() {
		want = append(want, string(k))
	}
	for _, p := range doc.Paths[api+"/alarms"]["get"].Parameters {
		if p.Name == "kind" {
			if !slices.Equal(p.Schema.Enum, want) {
				t.Fatalf("kind enum %v, want %v", p.Schema.Enum, want)
			}
			return
		}
	}
	t.Fatal("GET /alarms has no kind parameter")
}
