package detect

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

// clock is a manual clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)} }

func settingsOf(s model.DetectionSettings) func(context.Context, string) (model.DetectionSettings, error) {
	return func(context.Context, string) (model.DetectionSettings, error) { return s, nil }
}

func newDetector(t *testing.T, s model.DetectionSettings) (*Detector, *clock) {
	t.Helper()
	c := newClock()
	return New(Options{Settings: settingsOf(s), Clock: c.now}), c
}

// drain returns the queued decisions.
func drain(d *Detector) []Decision {
	var out []Decision
	for {
		select {
		case dec := <-d.queue:
			out = append(out, dec)
		default:
			return out
		}
	}
}

func kinds(ds []Decision) string {
	var out []string
	for _, d := range ds {
		what := "clear"
		if d.Raise {
			what = "raise"
			if d.Repeat {
				what = "repeat"
			}
		}
		out = append(out, what+" "+string(d.Kind))
	}
	return strings.Join(out, ", ")
}

// quiet has every rule off; tests turn on what they look at.
func quiet() model.DetectionSettings {
	return model.DetectionSettings{Sigma: 6, ClearAfterMinutes: 2}
}

func TestRules(t *testing.T) {
	tests := []struct {
		name string
		set  func(*model.DetectionSettings)
		feed func(dv *Device, d *Detector, c *clock)
		want string
	}{
		{"messages at the threshold do not fire", func(s *model.DetectionSettings) { s.MessagesPerMinute = 100 },
			func(dv *Device, _ *Detector, c *clock) {
				for range 100 {
					dv.Message(10)
				}
			}, ""},
		{"one message more fires once", func(s *model.DetectionSettings) { s.MessagesPerMinute = 100 },
			func(dv *Device, _ *Detector, c *clock) {
				for range 150 {
					dv.Message(10)
				}
			}, "raise message_rate"},
		{"spread over minutes does not fire", func(s *model.DetectionSettings) { s.MessagesPerMinute = 100 },
			func(dv *Device, _ *Detector, c *clock) {
				for range 30 {
					for range 20 {
						dv.Message(10)
					}
					c.add(20 * time.Second)
				}
			}, ""},
		{"bytes", func(s *model.DetectionSettings) { s.BytesPerMinute = 1000 },
			func(dv *Device, _ *Detector, c *clock) { dv.Message(600); dv.Message(600) }, "raise byte_rate"},
		{"auth failures", func(s *model.DetectionSettings) { s.AuthFailuresPer5Min = 3 },
			func(_ *Device, d *Detector, c *clock) {
				for range 4 {
					d.AuthFailure("ten", "dev")
					c.add(time.Minute)
				}
			}, "raise auth_failures"},
		{"connection churn", func(s *model.DetectionSettings) { s.ConnectsPer10Min = 3 },
			func(dv *Device, _ *Detector, c *clock) {
				for range 4 {
					dv.Connected("10.0.0.1:4000")
					c.add(time.Minute)
				}
			}, "raise connection_churn"},
		{"new source addresses after learning", func(s *model.DetectionSettings) { s.NewSourcesPerHour = 2; s.LearningMinutes = 10 },
			func(dv *Device, _ *Detector, c *clock) {
				dv.Connected("10.0.0.1:4000")
				dv.Connected("10.0.0.2:4000") // learned
				c.add(11 * time.Minute)
				dv.Connected("10.0.0.1:4001") // known
				dv.Connected("192.0.2.7:4000")
				dv.Connected("[2001:db8::1]:4000")
			}, "raise new_source_addresses"},
		{"ports: the first report is the baseline", func(s *model.DetectionSettings) { s.NewListeningPorts = 1 },
			func(dv *Device, _ *Detector, c *clock) {
				dv.Report(&Metrics{ListeningPorts: []Port{{"tcp", 22}, {"udp", 5353}}})
				c.add(time.Minute)
				dv.Report(&Metrics{ListeningPorts: []Port{{"tcp", 22}}})
				dv.Report(&Metrics{ListeningPorts: []Port{{"tcp", 22}, {"tcp", 4444}}})
			}, "raise new_listening_ports"},
		{"outbound: three new destinations", func(s *model.DetectionSettings) { s.NewOutbound = 3 },
			func(dv *Device, _ *Detector, c *clock) {
				dv.Report(&Metrics{Outbound: []Destination{{"tcp", "192.0.2.1", 443}}})
				dv.Report(&Metrics{Outbound: []Destination{{"tcp", "192.0.2.1", 443}, {"tcp", "198.51.100.1", 443}, {"tcp", "198.51.100.2", 443}}})
				dv.Report(&Metrics{Outbound: []Destination{{"tcp", "198.51.100.1", 443}, {"tcp", "198.51.100.2", 443}, {"udp", "203.0.113.9", 53}}})
			}, "raise new_outbound_destinations"},
		{"process count jump", func(s *model.DetectionSettings) { s.ProcessJump = 20 },
			func(dv *Device, _ *Detector, c *clock) {
				for _, n := range []int{40, 42, 41, 60, 95} {
					dv.Report(&Metrics{ProcessCount: &n})
				}
			}, "raise process_count_jump"},
		{"outside the MUD profile", func(*model.DetectionSettings) {},
			func(dv *Device, _ *Detector, c *clock) {
				dv.OutsideProfile(nil)
				dv.OutsideProfile([]string{"tcp/192.0.2.9:23"})
			},
			"raise outbound_outside_profile"},
		{"still firing repeats once a minute", func(s *model.DetectionSettings) { s.MessagesPerMinute = 10 },
			func(dv *Device, _ *Detector, c *clock) {
				for range 8 {
					for range 30 {
						dv.Message(1)
					}
					c.add(10 * time.Second)
				}
			}, "raise message_rate, repeat message_rate"},
		{"a rule turned off", func(s *model.DetectionSettings) { s.MessagesPerMinute = 0 },
			func(dv *Device, _ *Detector, c *clock) {
				for range 5000 {
					dv.Message(1)
				}
			}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := quiet()
			tc.set(&s)
			d, c := newDetector(t, s)
			dv := d.Device(t.Context(), "ten", "dev")
			tc.feed(dv, d, c)
			if got := kinds(drain(d)); got != tc.want {
				t.Fatalf("decisions: %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBaseline(t *testing.T) {
	s := quiet()
	s.LearningMinutes, s.Sigma, s.RateFloor = 30, 4, 50
	steady := func(d *Detector, dv *Device, c *clock, minutes, perMinute int) {
		for m := range minutes {
			for i := range perMinute {
				// a little jitter: ±10 %
				if i < perMinute/10*(m%2) {
					continue
				}
				dv.Message(100)
			}
			c.add(time.Minute)
		}
	}

	t.Run("learning: no anomaly however high", func(t *testing.T) {
		d, c := newDetector(t, s)
		dv := d.Device(t.Context(), "ten", "dev")
		steady(d, dv, c, 5, 10)
		steady(d, dv, c, 1, 1000)
		if got := kinds(drain(d)); got != "" {
			t.Fatalf("decisions while learning: %q", got)
		}
	})
	t.Run("steady device: no alarm", func(t *testing.T) {
		d, c := newDetector(t, s)
		dv := d.Device(t.Context(), "ten", "dev")
		steady(d, dv, c, 120, 100)
		if got := kinds(drain(d)); got != "" {
			t.Fatalf("decisions on a steady device: %q", got)
		}
		if dv.msgBase.n < 100 || dv.msgBase.mean < 85 || dv.msgBase.mean > 105 {
			t.Fatalf("baseline not learned: %+v", dv.msgBase)
		}
	})
	t.Run("jump after learning: anomaly, then clears", func(t *testing.T) {
		d, c := newDetector(t, s)
		dv := d.Device(t.Context(), "ten", "dev")
		steady(d, dv, c, 40, 100)
		for range 300 {
			dv.Message(100)
		}
		ds := drain(d)
		if got := kinds(ds); got != "raise message_rate_anomaly, raise byte_rate_anomaly" {
			t.Fatalf("decisions on a jump: %q", got)
		}
		ev := ds[0].Evidence
		if ev["messages"].(int64) <= int64(ev["limit"].(float64)) || ev["baseline_mean"].(float64) < 80 {
			t.Fatalf("evidence: %v", ev)
		}
		mean := dv.msgBase.mean
		// Quiet again: normal for the clear window (2 min) clears it.
		c.add(70 * time.Second)
		d.sweep(c.now())
		c.add(time.Minute)
		d.sweep(c.now())
		if got := kinds(drain(d)); got != "" {
			t.Fatalf("cleared before the clear window: %q", got)
		}
		c.add(time.Minute)
		d.sweep(c.now())
		if got := kinds(drain(d)); got != "clear message_rate_anomaly, clear byte_rate_anomaly" {
			t.Fatalf("after the clear window: %q", got)
		}
		dv.Message(1) // rolls the minute; the attack minute was not learned
		if dv.msgBase.mean > mean+1 {
			t.Fatalf("the attack became the baseline: %.1f → %.1f", mean, dv.msgBase.mean)
		}
	})
	t.Run("below the floor: no anomaly", func(t *testing.T) {
		d, c := newDetector(t, s)
		dv := d.Device(t.Context(), "ten", "dev")
		steady(d, dv, c, 40, 2)
		for range 40 {
			dv.Message(10)
		}
		if got := kinds(drain(d)); got != "" {
			t.Fatalf("decisions under the floor: %q", got)
		}
	})
}

func TestClearing(t *testing.T) {
	s := quiet()
	s.MessagesPerMinute, s.NewListeningPorts = 10, 1
	d, c := newDetector(t, s)
	dv := d.Device(t.Context(), "ten", "dev")
	for range 20 {
		dv.Message(1)
	}
	dv.Report(&Metrics{ListeningPorts: []Port{{"tcp", 22}}})
	dv.Report(&Metrics{ListeningPorts: []Port{{"tcp", 22}, {"tcp", 23}}})
	if got := kinds(drain(d)); got != "raise message_rate, raise new_listening_ports" {
		t.Fatalf("raised: %q", got)
	}
	// The rate drops out of its window; the port is still reported.
	for range 4 {
		c.add(time.Minute)
		d.sweep(c.now())
		dv.Report(&Metrics{ListeningPorts: []Port{{"tcp", 22}, {"tcp", 23}}})
	}
	// The port alarm is raised again once a minute while it holds.
	if got := kinds(drain(d)); got != "repeat new_listening_ports, repeat new_listening_ports, clear message_rate, "+
		"repeat new_listening_ports, repeat new_listening_ports" {
		t.Fatalf("after 4 minutes: %q", got)
	}
	if !d.Firing("dev", model.AlarmNewListeningPorts) || d.Firing("dev", model.AlarmMessageRate) {
		t.Fatal("firing state")
	}
	// A bad reading during the clear window starts it again.
	dv.Report(&Metrics{ListeningPorts: []Port{{"tcp", 22}}})
	c.add(time.Minute)
	d.sweep(c.now())
	dv.Report(&Metrics{ListeningPorts: []Port{{"tcp", 22}, {"tcp", 23}}})
	dv.Report(&Metrics{ListeningPorts: []Port{{"tcp", 22}}})
	c.add(time.Minute)
	d.sweep(c.now())
	c.add(time.Minute)
	d.sweep(c.now())
	if got := kinds(drain(d)); got != "repeat new_listening_ports" {
		t.Fatalf("cleared though bad within the window: %q", got)
	}
	c.add(time.Minute)
	d.sweep(c.now())
	if got := kinds(drain(d)); got != "clear new_listening_ports" {
		t.Fatalf("after a clean window: %q", got)
	}
	if _, ok := d.firing.Load(dv); ok {
		t.Fatal("device still in the firing set")
	}
}

func TestAdoptClears(t *testing.T) {
	s := quiet()
	s.MessagesPerMinute = 10
	d, c := newDetector(t, s)
	d.Adopt([]model.Alarm{{TenantID: "ten", DeviceID: "dev", Kind: model.AlarmMessageRate, FirstRaised: c.now()}})
	if !d.Firing("dev", model.AlarmMessageRate) {
		t.Fatal("adopted alarm not firing")
	}
	for range 3 {
		c.add(time.Minute)
		d.sweep(c.now())
	}
	if got := kinds(drain(d)); got != "clear message_rate" {
		t.Fatalf("adopted alarm: %q", got)
	}
}

func TestSettingsReload(t *testing.T) {
	s := quiet()
	s.MessagesPerMinute = 1000
	cur := s
	c := newClock()
	d := New(Options{Settings: func(context.Context, string) (model.DetectionSettings, error) { return cur, nil }, Clock: c.now})
	dv := d.Device(t.Context(), "ten", "dev")
	cur.MessagesPerMinute = 5
	d.Reload(t.Context(), "ten")
	for range 6 {
		dv.Message(1)
	}
	if got := kinds(drain(d)); got != "raise message_rate" {
		t.Fatalf("after reload: %q", got)
	}
}

func TestParseMetrics(t *testing.T) {
	now := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	many := func(n int, item string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf(item, i%60000+1)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	bad := []struct{ payload, want string }{
		{``, "JSON object"},
		{`[]`, "JSON object"},
		{`"x"`, "JSON object"},
		{`{}`, "at least one"},
		{`{"ts":"2026-01-05T10:00:00Z"}`, "at least one"},
		{`{"process_count":1}{}`, "after the JSON object"},
		{`{"process_count":1,"extra":1}`, `unknown field "extra"`},
		{`{"process_count":-1}`, "process_count"},
		{`{"process_count":1.5}`, "process_count"},
		{`{"process_count":"7"}`, "process_count"},
		{`{"process_count":2000000}`, "process_count"},
		{`{"ts":"yesterday","process_count":1}`, "ts"},
		{`{"ts":"2026-01-05T11:00:00Z","process_count":1}`, "future"},
		{`{"listening_ports":{}}`, "listening_ports"},
		{`{"listening_ports":[1]}`, "listening_ports[0]"},
		{`{"listening_ports":[{"proto":"sctp","port":1}]}`, "listening_ports[0].proto"},
		{`{"listening_ports":[{"proto":"tcp","port":0}]}`, "listening_ports[0].port"},
		{`{"listening_ports":[{"proto":"tcp","port":65536}]}`, "listening_ports[0].port"},
		{`{"listening_ports":[{"proto":"tcp","port":1,"pid":3}]}`, `unknown field "pid"`},
		{`{"listening_ports":` + many(MaxPorts+1, `{"proto":"tcp","port":%d}`) + `}`, "at most 256"},
		{`{"outbound":[{"proto":"tcp","host":"","port":443}]}`, "outbound[0].host"},
		{`{"outbound":[{"proto":"tcp","host":"bad host!","port":443}]}`, "outbound[0].host"},
		{`{"outbound":[{"proto":"tcp","host":"` + strings.Repeat("a.", 130) + `com","port":443}]}`, "outbound[0].host"},
		{`{"outbound":[{"proto":"icmp","host":"1.2.3.4","port":1}]}`, "outbound[0].proto"},
		{`{"outbound":[{"proto":"tcp","host":"1.2.3.4"}]}`, "outbound[0].port"},
		{`{"outbound":` + many(MaxOutbound+1, `{"proto":"tcp","host":"h","port":%d}`) + `}`, "at most 256"},
	}
	for _, tc := range bad {
		_, err := ParseMetrics([]byte(tc.payload), now)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.60s: error %v, want one naming %q", tc.payload, err, tc.want)
		}
	}
	m, err := ParseMetrics([]byte(`{"ts":"2026-01-05T09:59:00+01:00","listening_ports":[{"proto":"TCP","port":22},{"proto":"tcp","port":22}],
		"outbound":[{"proto":"tcp","host":"::ffff:192.0.2.1","port":443},{"proto":"udp","host":"Time.Example.","port":123}],"process_count":42}`), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.ListeningPorts) != 1 || m.ListeningPorts[0].Key() != "tcp/22" || *m.ProcessCount != 42 ||
		m.Outbound[0].Key() != "tcp/192.0.2.1:443" || m.Outbound[1].Key() != "udp/time.example:123" || !m.TS.Equal(now.Add(-61*time.Minute)) {
		t.Fatalf("parsed: %+v", m)
	}
	m, err = ParseMetrics([]byte(`{"listening_ports":[]}`), now)
	if err != nil || m.ListeningPorts == nil || m.Outbound != nil || m.ProcessCount != nil {
		t.Fatalf("empty list: %+v %v", m, err)
	}
}

func FuzzParseMetrics(f *testing.F) {
	f.Add([]byte(`{"listening_ports":[{"proto":"tcp","port":22}],"outbound":[{"proto":"tcp","host":"1.2.3.4","port":443}],"process_count":42}`))
	f.Add([]byte(`{"ts":"2026-01-05T10:00:00Z","outbound":[]}`))
	now := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMetrics(data, now)
		if err != nil {
			return
		}
		if len(m.ListeningPorts) > MaxPorts || len(m.Outbound) > MaxOutbound {
			t.Fatal("limits not applied")
		}
		for _, p := range m.ListeningPorts {
			if p.Port < 1 || p.Port > 65535 {
				t.Fatal("bad port accepted")
			}
		}
	})
}

func TestCheckSettings(t *testing.T) {
	if err := CheckSettings(model.DefaultDetectionSettings()); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	tests := []struct {
		name  string
		set   func(*model.DetectionSettings)
		field string
	}{
		{"negative threshold", func(s *model.DetectionSettings) { s.MessagesPerMinute = -1 }, "messages_per_minute"},
		{"huge port count", func(s *model.DetectionSettings) { s.NewListeningPorts = 1000 }, "new_listening_ports"},
		{"sigma too small", func(s *model.DetectionSettings) { s.Sigma = 0.5 }, "sigma"},
		{"clear window zero", func(s *model.DetectionSettings) { s.ClearAfterMinutes = 0 }, "clear_after_minutes"},
		{"unknown kind", func(s *model.DetectionSettings) {
			s.Mitigations = map[model.AlarmKind]model.MitigationAction{"cpu": model.MitigateQuarantine}
		}, "mitigations"},
		{"unknown action", func(s *model.DetectionSettings) {
			s.Mitigations = map[model.AlarmKind]model.MitigationAction{model.AlarmMessageRate: "reboot"}
		}, "mitigations.message_rate"},
	}
	for _, tc := range tests {
		s := model.DefaultDetectionSettings()
		tc.set(&s)
		err := CheckSettings(s)
		var se *SettingsError
		if !errors.As(err, &se) || se.Field != tc.field {
			t.Errorf("%s: error %v, want one on %s", tc.name, err, tc.field)
		}
	}
	s := model.DefaultDetectionSettings()
	s.MessagesPerMinute = 0
	s.Mitigations = map[model.AlarmKind]model.MitigationAction{model.AlarmNewListeningPorts: model.MitigateQuarantine}
	if err := CheckSettings(s); err != nil {
		t.Fatalf("valid settings refused: %v", err)
	}
}
