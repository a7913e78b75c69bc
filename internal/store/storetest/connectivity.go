package storetest

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// testConnectivity covers twins, commands and telemetry.
func testConnectivity(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	createProduct(t, s, tenA, "prd-a")
	createProduct(t, s, tenB, "prd-b")
	createDevice(t, s, newDevice(tenA, "prd-a", "dev-a1", "SN-A1"))
	createDevice(t, s, newDevice(tenA, "prd-a", "dev-a2", "SN-A2"))
	createDevice(t, s, newDevice(tenB, "prd-b", "dev-b1", "SN-B1"))

	t.Run("twin", func(t *testing.T) {
		tw, err := s.GetTwin(ctx, tenA, "dev-a1")
		noErr(t, err, "GetTwin of a new device")
		if string(tw.Desired) != "{}" || string(tw.Reported) != "{}" || tw.DesiredVersion != 0 || tw.ReportedVersion != 0 {
			t.Fatalf("new twin: %+v", tw)
		}
		_, err = s.GetTwin(ctx, tenB, "dev-a1")
		wantErr(t, err, store.ErrNotFound, "GetTwin across the tenant wall")
		_, err = s.GetTwin(ctx, tenA, "dev-none")
		wantErr(t, err, store.ErrNotFound, "GetTwin of an unknown device")

		put := func(tenant string, desired bool, doc string, from int64) error {
			return s.Update(ctx, func(tx store.Tx) error {
				if desired {
					return tx.PutTwinDesired(ctx, tenant, "dev-a1", json.RawMessage(doc), from, at(time.Minute))
				}
				return tx.PutTwinReported(ctx, tenant, "dev-a1", json.RawMessage(doc), from, at(2*time.Minute))
			})
		}
		noErr(t, put(tenA, true, `{"a":1}`, 0), "first desired")
		wantErr(t, put(tenA, true, `{"a":2}`, 0), store.ErrStale, "desired from a stale version")
		noErr(t, put(tenA, true, `{"a":3}`, 1), "second desired")
		noErr(t, put(tenA, false, `{"b":true}`, 0), "first reported")
		wantErr(t, put(tenB, true, `{"x":1}`, 2), store.ErrNotFound, "desired across the tenant wall")
		if err := put(tenA, true, `not json`, 2); err == nil {
			t.Fatal("an invalid document was stored")
		}
		// A rolled back change leaves the twin as it was.
		err = s.Update(ctx, func(tx store.Tx) error {
			if err := tx.PutTwinDesired(ctx, tenA, "dev-a1", json.RawMessage(`{"a":99}`), 2, at(time.Hour)); err != nil {
				return err
			}
			return errRollback
		})
		wantErr(t, err, errRollback, "rolled back change")

		tw, err = s.GetTwin(ctx, tenA, "dev-a1")
		noErr(t, err, "GetTwin")
		var d, r map[string]any
		json.Unmarshal(tw.Desired, &d)
		json.Unmarshal(tw.Reported, &r)
		wantEqual(t, d, map[string]any{"a": 3.0}, "desired")
		wantEqual(t, r, map[string]any{"b": true}, "reported")
		if tw.DesiredVersion != 2 || tw.ReportedVersion != 1 {
			t.Fatalf("versions %d/%d, want 2/1", tw.DesiredVersion, tw.ReportedVersion)
		}
		if tw.DesiredAt == nil || !tw.DesiredAt.Equal(at(time.Minute)) || tw.ReportedAt == nil || !tw.ReportedAt.Equal(at(2*time.Minute)) {
			t.Fatalf("times %v/%v", tw.DesiredAt, tw.ReportedAt)
		}
		other, err := s.GetTwin(ctx, tenA, "dev-a2")
		noErr(t, err, "GetTwin of another device")
		if other.DesiredVersion != 0 || string(other.Desired) != "{}" {
			t.Fatalf("another device's twin changed: %+v", other)
		}
	})

	t.Run("commands", func(t *testing.T) {
		mk := func(id, tenant, device string, created time.Duration) *model.Command {
			return &model.Command{ID: id, TenantID: tenant, DeviceID: device, Name: "reboot", Params: json.RawMessage(`{"delay":5}`),
				Status: model.CommandQueued, CreatedAt: at(created), CreatedBy: "key:k1", ExpiresAt: at(created + time.Hour),
				Timeout: 30 * time.Second}
		}
		cmds := []*model.Command{mk("cmd-1", tenA, "dev-a1", 0), mk("cmd-2", tenA, "dev-a1", time.Second),
			mk("cmd-3", tenA, "dev-a1", 2*time.Second), mk("cmd-4", tenA, "dev-a2", 0), mk("cmd-5", tenB, "dev-b1", 0)}
		mustUpdate(t, s, func(tx store.Tx) error {
			for _, c := range cmds {
				if err := tx.CreateCommand(ctx, c); err != nil {
					return err
				}
			}
			return nil
		})
		err := s.Update(ctx, func(tx store.Tx) error { return tx.CreateCommand(ctx, mk("cmd-x", tenB, "dev-a1", 0)) })
		wantErr(t, err, store.ErrNotFound, "a command for another tenant's device")
		err = s.Update(ctx, func(tx store.Tx) error { return tx.CreateCommand(ctx, mk("cmd-1", tenA, "dev-a1", 0)) })
		wantErr(t, err, store.ErrConflict, "a command ID used twice")

		got, err := s.GetCommand(ctx, tenA, "cmd-1")
		noErr(t, err, "GetCommand")
		want := *cmds[0]
		wantEqual(t, *got, want, "stored command")
		_, err = s.GetCommand(ctx, tenB, "cmd-1")
		wantErr(t, err, store.ErrNotFound, "GetCommand across the tenant wall")

		ids := walk(t, 2, func(c model.Command) string { return c.ID }, func(cur string) ([]model.Command, string, error) {
			return s.ListCommands(ctx, tenA, "dev-a1", store.ListOptions{Limit: 2, Cursor: cur})
		})
		wantIDs(t, ids, []string{"cmd-3", "cmd-2", "cmd-1"}, "commands, newest first")
		if l, _, err := s.ListCommands(ctx, tenB, "dev-a1", store.ListOptions{}); err != nil || len(l) != 0 {
			t.Fatalf("ListCommands across the tenant wall: %v %v", l, err)
		}
		for _, bad := range garbageCursors {
			_, _, err := s.ListCommands(ctx, tenA, "dev-a1", store.ListOptions{Cursor: bad})
			wantErr(t, err, store.ErrBadCursor, "ListCommands with cursor "+bad[:min(len(bad), 10)])
		}

		// Send cmd-1, answer cmd-2; a second answer is stale.
		sent := at(10 * time.Second)
		c1 := *got
		c1.Status, c1.SentAt, c1.Attempts = model.CommandSent, &sent, 1
		mustUpdate(t, s, func(tx store.Tx) error { return tx.UpdateCommand(ctx, &c1, model.CommandQueued, model.CommandSent) })
		c2, _ := s.GetCommand(ctx, tenA, "cmd-2")
		done := at(11 * time.Second)
		c2.Status, c2.CompletedAt, c2.Result = model.CommandSucceeded, &done, json.RawMessage(`{"ok":true}`)
		mustUpdate(t, s, func(tx store.Tx) error { return tx.UpdateCommand(ctx, c2, model.CommandQueued, model.CommandSent) })
		c2.Status = model.CommandFailed
		err = s.Update(ctx, func(tx store.Tx) error { return tx.UpdateCommand(ctx, c2, model.CommandQueued, model.CommandSent) })
		wantErr(t, err, store.ErrStale, "answering a finished command")
		other := *c2
		other.TenantID = tenB
		err = s.Update(ctx, func(tx store.Tx) error { return tx.UpdateCommand(ctx, &other, model.CommandSucceeded) })
		wantErr(t, err, store.ErrNotFound, "UpdateCommand across the tenant wall")
		got2, _ := s.GetCommand(ctx, tenA, "cmd-2")
		if got2.Status != model.CommandSucceeded || string(got2.Result) != `{"ok":true}` || !got2.CompletedAt.Equal(done) {
			t.Fatalf("answered command: %+v", got2)
		}

		pending, err := s.PendingCommands(ctx, tenA, "dev-a1", at(20*time.Second), 10)
		noErr(t, err, "PendingCommands")
		wantIDs(t, commandIDs(pending), []string{"cmd-1", "cmd-3"}, "pending commands")
		// cmd-1 times out 30 s after it was sent; cmd-3 expires after an hour.
		pending, _ = s.PendingCommands(ctx, tenA, "dev-a1", at(41*time.Second), 10)
		wantIDs(t, commandIDs(pending), []string{"cmd-3"}, "pending commands after cmd-1's timeout")
		if p, _ := s.PendingCommands(ctx, tenB, "dev-a1", at(0), 10); len(p) != 0 {
			t.Fatalf("PendingCommands across the tenant wall: %v", commandIDs(p))
		}

		due, err := s.DueCommands(ctx, at(41*time.Second), 10)
		noErr(t, err, "DueCommands")
		wantIDs(t, commandIDs(due), []string{"cmd-1"}, "due commands after 41s")
		due, _ = s.DueCommands(ctx, at(time.Hour+2*time.Second), 10)
		wantIDs(t, commandIDs(due), []string{"cmd-1", "cmd-4", "cmd-5", "cmd-3"}, "due commands after an hour and 2 s")
	})

	t.Run("telemetry", func(t *testing.T) {
		pt := func(tenant, device, metric string, sec int, v any) model.TelemetryPoint {
			p := model.TelemetryPoint{TenantID: tenant, DeviceID: device, Metric: metric, Time: at(time.Duration(sec) * time.Second)}
			switch v := v.(type) {
			case float64:
				p.Kind, p.Num = model.KindNumber, v
			case bool:
				p.Kind = model.KindBool
				if v {
					p.Num = 1
				}
			case string:
				p.Kind, p.Text = model.KindString, v
			}
			return p
		}
		var batch []model.TelemetryPoint
		for i := range 60 {
			batch = append(batch, pt(tenA, "dev-a1", "temp", i, float64(i)))
		}
		batch = append(batch, pt(tenA, "dev-a1", "door", 5, "open"), pt(tenA, "dev-a1", "door", 7, "closed"),
			pt(tenA, "dev-a1", "heating", 3, true), pt(tenA, "dev-a2", "temp", 1, 100.0), pt(tenB, "dev-b1", "temp", 1, -1.0),
			// A duplicate in the batch: the last one wins.
			pt(tenA, "dev-a1", "temp", 10, 1000.0))
		noErr(t, s.WriteTelemetry(ctx, batch), "WriteTelemetry")
		// An older point written later does not move the last value back;
		// writing the same point again overwrites it.
		noErr(t, s.WriteTelemetry(ctx, []model.TelemetryPoint{pt(tenA, "dev-a1", "door", 6, "ajar"),
			pt(tenA, "dev-a1", "temp", 11, 11.0)}), "WriteTelemetry again")
		noErr(t, s.WriteTelemetry(ctx, nil), "WriteTelemetry of nothing")

		// Many series in one batch (their last values are set many to a
		// statement), then a batch that moves half of them forward and
		// offers the other half an older point.
		const manyDevices = 53 // 106 series: every statement size, and remainders
		var many, again []model.TelemetryPoint
		for d := range manyDevices {
			dev := fmt.Sprintf("dev-m%d", d)
			many = append(many, pt(tenA, dev, "m1", 100, float64(d)), pt(tenA, dev, "m2", 100, fmt.Sprint(d)))
			sec := 200 // newer
			if d%2 == 1 {
				sec = 50 // older
			}
			again = append(again, pt(tenA, dev, "m1", sec, float64(1000+d)), pt(tenA, dev, "m2", sec, fmt.Sprint(1000+d)))
		}
		noErr(t, s.WriteTelemetry(ctx, many), "WriteTelemetry of many series")
		noErr(t, s.WriteTelemetry(ctx, again), "WriteTelemetry of many series again")
		for d := range manyDevices {
			dev := fmt.Sprintf("dev-m%d", d)
			want := map[string]any{"m1@100": float64(d), "m2@100": fmt.Sprint(d)}
			if d%2 == 0 {
				want = map[string]any{"m1@200": float64(1000 + d), "m2@200": fmt.Sprint(1000 + d)}
			}
			l, err := s.LatestTelemetry(ctx, tenA, dev)
			noErr(t, err, "LatestTelemetry "+dev)
			got := map[string]any{}
			for _, p := range l {
				got[fmt.Sprintf("%s@%d", p.Metric, p.Time.Sub(base)/time.Second)] = p.Value()
			}
			wantEqual(t, got, want, "last values of "+dev)
		}

		last, err := s.LatestTelemetry(ctx, tenA, "dev-a1")
		noErr(t, err, "LatestTelemetry")
		got := map[string]any{}
		for _, p := range last {
			got[fmt.Sprintf("%s@%d", p.Metric, p.Time.Sub(base)/time.Second)] = p.Value()
		}
		wantEqual(t, got, map[string]any{"temp@59": 59.0, "door@7": "closed", "heating@3": true}, "last values")
		if l, _ := s.LatestTelemetry(ctx, tenB, "dev-a1"); len(l) != 0 {
			t.Fatalf("LatestTelemetry across the tenant wall: %v", l)
		}

		pts, err := s.QueryTelemetry(ctx, tenA, "dev-a1", "temp", at(9*time.Second), at(12*time.Second), 100)
		noErr(t, err, "QueryTelemetry")
		var vals []float64
		for _, p := range pts {
			vals = append(vals, p.Num)
		}
		wantEqual(t, vals, []float64{9, 1000, 11}, "points in [9s, 12s)")
		if p, _ := s.QueryTelemetry(ctx, tenA, "dev-a1", "temp", at(0), at(time.Hour), 5); len(p) != 5 {
			t.Fatalf("QueryTelemetry with limit 5 gave %d points", len(p))
		}
		if p, _ := s.QueryTelemetry(ctx, tenB, "dev-a1", "temp", at(0), at(time.Hour), 100); len(p) != 0 {
			t.Fatalf("QueryTelemetry across the tenant wall: %d points", len(p))
		}

		// Points sent again (a QoS 1 message resent after a lost PUBACK,
		// say) replace the stored ones, numbers and strings alike, also in
		// a statement that holds new points too.
		var sent, resent []model.TelemetryPoint
		for i := range 70 {
			sent = append(sent, pt(tenA, "dev-r1", "n", 100+i, float64(i)), pt(tenA, "dev-r1", "s", 100+i, fmt.Sprint(i)))
		}
		for i := 60; i < 140; i++ {
			resent = append(resent, pt(tenA, "dev-r1", "n", 100+i, float64(-i)), pt(tenA, "dev-r1", "s", 100+i, fmt.Sprint(-i)))
		}
		noErr(t, s.WriteTelemetry(ctx, sent), "WriteTelemetry")
		noErr(t, s.WriteTelemetry(ctx, resent), "WriteTelemetry of points sent again")
		for _, metric := range []string{"n", "s"} {
			pts, err := s.QueryTelemetry(ctx, tenA, "dev-r1", metric, at(0), at(time.Hour), 1000)
			noErr(t, err, "QueryTelemetry "+metric)
			var got, want []string
			for i, p := range pts {
				got = append(got, fmt.Sprintf("%d=%v", p.Time.Sub(base)/time.Second, p.Value()))
				v := any(float64(i))
				if i >= 60 {
					v = float64(-i)
				}
				if metric == "s" {
					v = fmt.Sprint(v)
				}
				want = append(want, fmt.Sprintf("%d=%v", 100+i, v))
			}
			if len(pts) != 140 {
				t.Fatalf("%s: %d points after sending some again, want 140", metric, len(pts))
			}
			wantEqual(t, got, want, "points of "+metric+" after sending some again")
		}

		// Buckets of 20 s from 0 s: 0..19 (with 1000 at 10 s and 11 at 11 s), 20..39, 40..59.
		bs, err := s.DownsampleTelemetry(ctx, tenA, "dev-a1", "temp", at(0), at(60*time.Second), 20*time.Second)
		noErr(t, err, "DownsampleTelemetry")
		first := 0.0
		for i := range 20 {
			switch i {
			case 10:
				first += 1000
			case 11:
				first += 11
			default:
				first += float64(i)
			}
		}
		want := []model.TelemetryBucket{
			{Start: at(0), Count: 20, Avg: first / 20, Min: 0, Max: 1000},
			{Start: at(20 * time.Second), Count: 20, Avg: 29.5, Min: 20, Max: 39},
			{Start: at(40 * time.Second), Count: 20, Avg: 49.5, Min: 40, Max: 59},
		}
		if len(bs) != len(want) {
			t.Fatalf("%d buckets, want %d: %+v", len(bs), len(want), bs)
		}
		for i := range bs {
			if !bs[i].Start.Equal(want[i].Start) || bs[i].Count != want[i].Count || math.Abs(bs[i].Avg-want[i].Avg) > 1e-9 ||
				bs[i].Min != want[i].Min || bs[i].Max != want[i].Max {
				t.Fatalf("bucket %d: %+v, want %+v", i, bs[i], want[i])
			}
		}
		// Booleans average as 0/1; strings are left out; empty buckets too.
		bs, _ = s.DownsampleTelemetry(ctx, tenA, "dev-a1", "heating", at(-time.Hour), at(time.Hour), time.Minute)
		if len(bs) != 1 || bs[0].Avg != 1 || !bs[0].Start.Equal(at(0)) {
			t.Fatalf("boolean buckets: %+v", bs)
		}
		if bs, _ := s.DownsampleTelemetry(ctx, tenA, "dev-a1", "door", at(0), at(time.Hour), time.Minute); len(bs) != 0 {
			t.Fatalf("string metric downsampled: %+v", bs)
		}
		if bs, _ := s.DownsampleTelemetry(ctx, tenB, "dev-a1", "temp", at(0), at(time.Hour), time.Minute); len(bs) != 0 {
			t.Fatalf("DownsampleTelemetry across the tenant wall: %+v", bs)
		}

		// Retention: tenant A keeps its own; pruning touches one tenant only.
		r, err := s.GetTelemetryRetention(ctx, tenA)
		if err != nil || r != 0 {
			t.Fatalf("retention of a new tenant: %v %v", r, err)
		}
		mustUpdate(t, s, func(tx store.Tx) error { return tx.SetTelemetryRetention(ctx, tenA, 48*time.Hour) })
		mustUpdate(t, s, func(tx store.Tx) error { return tx.SetTelemetryRetention(ctx, tenA, 72*time.Hour) })
		mustUpdate(t, s, func(tx store.Tx) error { return tx.SetTelemetryRetention(ctx, tenB, time.Hour) })
		mustUpdate(t, s, func(tx store.Tx) error { return tx.SetTelemetryRetention(ctx, tenB, 0) })
		all, err := s.TelemetryRetentions(ctx)
		noErr(t, err, "TelemetryRetentions")
		wantEqual(t, all, map[string]time.Duration{tenA: 72 * time.Hour}, "retentions")

		n, err := s.PruneTelemetry(ctx, tenA, at(30*time.Second), 7)
		noErr(t, err, "PruneTelemetry")
		if n != 7 {
			t.Fatalf("pruned %d points with limit 7", n)
		}
		for {
			n, err := s.PruneTelemetry(ctx, tenA, at(30*time.Second), 7)
			noErr(t, err, "PruneTelemetry")
			if n == 0 {
				break
			}
		}
		pts, _ = s.QueryTelemetry(ctx, tenA, "dev-a1", "temp", at(0), at(time.Hour), 1000)
		if len(pts) != 30 || !pts[0].Time.Equal(at(30*time.Second)) {
			t.Fatalf("after pruning: %d points from %v", len(pts), pts[0].Time)
		}
		last, _ = s.LatestTelemetry(ctx, tenA, "dev-a1")
		metrics := []string{}
		for _, p := range last {
			metrics = append(metrics, p.Metric)
		}
		wantEqual(t, metrics, []string{"temp"}, "last values after pruning (door and heating are older)")
		if p, _ := s.QueryTelemetry(ctx, tenB, "dev-b1", "temp", at(0), at(time.Hour), 10); len(p) != 1 {
			t.Fatalf("pruning tenant A removed tenant B's points")
		}
		if l, _ := s.LatestTelemetry(ctx, tenA, "dev-a2"); len(l) != 0 {
			t.Fatalf("dev-a2's old last value survived pruning: %v", l)
		}

		// A device's data is erased after the store wrote (and may have
		// remembered) its series; another device's new series may then get
		// the freed ID (SQLite gives out the largest ID again). Points the
		// first device sends afterwards land in its own new series, and
		// the other device's stay as they were.
		noErr(t, s.WriteTelemetry(ctx, []model.TelemetryPoint{pt(tenA, "dev-a3", "hum", 1, 40.0)}), "WriteTelemetry dev-a3")
		mustUpdate(t, s, func(tx store.Tx) error { _, err := tx.EraseDeviceData(ctx, tenA, "dev-a3"); return err })
		noErr(t, s.WriteTelemetry(ctx, []model.TelemetryPoint{pt(tenB, "dev-b9", "hum", 1, 90.0)}), "WriteTelemetry dev-b9")
		noErr(t, s.WriteTelemetry(ctx, []model.TelemetryPoint{pt(tenA, "dev-a3", "hum", 2, 41.0)}), "WriteTelemetry dev-a3 after the erase")
		if p, _ := s.QueryTelemetry(ctx, tenA, "dev-a3", "hum", at(0), at(time.Hour), 10); len(p) != 1 || p[0].Num != 41 {
			t.Fatalf("dev-a3 after its data was erased: %+v, want the one new point", p)
		}
		if l, _ := s.LatestTelemetry(ctx, tenA, "dev-a3"); len(l) != 1 || l[0].Num != 41 {
			t.Fatalf("dev-a3's last value after the erase: %+v", l)
		}
		if p, _ := s.QueryTelemetry(ctx, tenB, "dev-b9", "hum", at(0), at(time.Hour), 10); len(p) != 1 || p[0].Num != 90 {
			t.Fatalf("dev-b9 (other tenant) after dev-a3 wrote again: %+v", p)
		}
		if l, _ := s.LatestTelemetry(ctx, tenB, "dev-b9"); len(l) != 1 || l[0].Num != 90 {
			t.Fatalf("dev-b9's last value after dev-a3 wrote again: %+v", l)
		}

		// The same, but the erased device and the one that got its series'
		// ID write in one batch: each point stays with its own device.
		noErr(t, s.WriteTelemetry(ctx, []model.TelemetryPoint{pt(tenA, "dev-a4", "hum", 1, 40.0)}), "WriteTelemetry dev-a4")
		mustUpdate(t, s, func(tx store.Tx) error { _, err := tx.EraseDeviceData(ctx, tenA, "dev-a4"); return err })
		noErr(t, s.WriteTelemetry(ctx, []model.TelemetryPoint{pt(tenB, "dev-b8", "hum", 1, 80.0)}), "WriteTelemetry dev-b8")
		noErr(t, s.WriteTelemetry(ctx, []model.TelemetryPoint{pt(tenA, "dev-a4", "hum", 2, 41.0), pt(tenB, "dev-b8", "hum", 2, 81.0)}),
			"WriteTelemetry dev-a4 and dev-b8 in one batch")
		if p, _ := s.QueryTelemetry(ctx, tenA, "dev-a4", "hum", at(0), at(time.Hour), 10); len(p) != 1 || p[0].Num != 41 {
			t.Fatalf("dev-a4 after its data was erased: %+v, want the one new point", p)
		}
		if p, _ := s.QueryTelemetry(ctx, tenB, "dev-b8", "hum", at(0), at(time.Hour), 10); len(p) != 2 || p[0].Num != 80 || p[1].Num != 81 {
			t.Fatalf("dev-b8 (other tenant) after a batch with dev-a4: %+v, want its two points", p)
		}
		if l, _ := s.LatestTelemetry(ctx, tenB, "dev-b8"); len(l) != 1 || l[0].Num != 81 {
			t.Fatalf("dev-b8's last value after a batch with dev-a4: %+v", l)
		}
	})
}

func commandIDs(cs []model.Command) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}
