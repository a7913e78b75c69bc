package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// testDiscovery: connection observations add up per hour, neighbours keep
// first seen and their status, managed MACs are found by attribute, and
// erasing a device's data leaves nothing of it — all behind the tenant
// wall.
func testDiscovery(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	pa := createProduct(t, s, tenA, "prd-a")
	pb := createProduct(t, s, tenB, "prd-b")
	da := newDevice(tenA, pa.ID, "dev-a1", "SN-a1")
	da.Attributes = map[string]string{"mac": "24:0A:C4:00:11:22"}
	createDevice(t, s, da)
	createDevice(t, s, newDevice(tenB, pb.ID, "dev-b1", "SN-b1"))

	// Observations.
	hour := at(0).Truncate(time.Hour)
	obs := func(n int64, first, last time.Duration) model.ConnectionObservation {
		return model.ConnectionObservation{TenantID: tenA, DeviceID: "dev-a1", Kind: model.ObsRevokedCert, Key: "0a", Hour: hour,
			Count: n, FirstSeen: at(first), LastSeen: at(last), Detail: json.RawMessage(`{"remote":"192.0.2.1:1"}`)}
	}
	noErr(t, s.RecordConnections(ctx, []model.ConnectionObservation{obs(2, time.Minute, 2*time.Minute)}), "RecordConnections")
	noErr(t, s.RecordConnections(ctx, []model.ConnectionObservation{obs(3, 30*time.Second, 3*time.Minute)}), "RecordConnections again")
	got, err := s.ConnectionObservations(ctx, tenA, model.ObsRevokedCert, at(0))
	noErr(t, err, "ConnectionObservations")
	if len(got) != 1 || got[0].Count != 5 || !got[0].FirstSeen.Equal(at(30*time.Second)) || !got[0].LastSeen.Equal(at(3*time.Minute)) ||
		string(got[0].Detail) != `{"remote":"192.0.2.1:1"}` {
		t.Fatalf("observations: %+v", got)
	}
	if got, _ := s.ConnectionObservations(ctx, tenA, model.ObsRevokedCert, at(time.Hour)); len(got) != 0 {
		t.Fatalf("observations last seen before since: %+v", got)
	}
	if got, _ := s.ConnectionObservations(ctx, tenB, model.ObsRevokedCert, at(0)); len(got) != 0 {
		t.Fatalf("B sees A's observations: %+v", got)
	}

	// Neighbours.
	nb := func(mac string, seen time.Duration) model.Neighbour {
		return model.Neighbour{MAC: mac, Site: "flat", IP: "192.168.1.9", Hostname: "plug", Sources: []string{"arp"},
			Services: []string{}, Vendor: "Espressif Inc.", ReportedBy: "dev-a1", FirstSeen: at(seen), LastSeen: at(seen)}
	}
	mustUpdate(t, s, func(tx store.Tx) error {
		return tx.PutNeighbours(ctx, tenA, []model.Neighbour{nb("24:0a:c4:00:00:01", 0), nb("24:0a:c4:00:00:02", 0)})
	})
	later := nb("24:0a:c4:00:00:01", time.Hour)
	later.IP, later.Sources = "", []string{"arp", "mdns"}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.PutNeighbours(ctx, tenA, []model.Neighbour{later}) })
	n, err := s.GetNeighbour(ctx, tenA, "24:0a:c4:00:00:01")
	noErr(t, err, "GetNeighbour")
	if n.Reports != 2 || !n.FirstSeen.Equal(at(0)) || !n.LastSeen.Equal(at(time.Hour)) || n.IP != "192.168.1.9" ||
		len(n.Sources) != 2 || n.Status != model.NeighbourUnmanaged || n.ChangedAt != nil {
		t.Fatalf("neighbour after two reports: %+v", n)
	}
	_, err = s.GetNeighbour(ctx, tenB, "24:0a:c4:00:00:01")
	wantErr(t, err, store.ErrNotFound, "GetNeighbour from B")
	mustUpdate(t, s, func(tx store.Tx) error {
		return tx.SetNeighbourStatus(ctx, tenA, "24:0a:c4:00:00:02", model.NeighbourKnown, "printer", "", "key:op", at(time.Minute))
	})
	wantErr(t, s.Update(ctx, func(tx store.Tx) error {
		return tx.SetNeighbourStatus(ctx, tenB, "24:0a:c4:00:00:02", model.NeighbourKnown, "", "", "key:op", at(time.Minute))
	}), store.ErrNotFound, "SetNeighbourStatus from B")
	page, next, err := s.ListNeighbours(ctx, tenA, model.NeighbourQuery{}, store.ListOptions{Limit: 1})
	noErr(t, err, "ListNeighbours")
	rest, last, err := s.ListNeighbours(ctx, tenA, model.NeighbourQuery{}, store.ListOptions{Limit: 1, Cursor: next})
	noErr(t, err, "ListNeighbours page 2")
	if len(page) != 1 || len(rest) != 1 || last != "" || page[0].MAC != "24:0a:c4:00:00:01" || rest[0].MAC != "24:0a:c4:00:00:02" {
		t.Fatalf("pages: %+v %+v %q", page, rest, last)
	}
	known, _, err := s.ListNeighbours(ctx, tenA, model.NeighbourQuery{Status: model.NeighbourKnown, Site: "flat"}, store.ListOptions{})
	noErr(t, err, "ListNeighbours known")
	if len(known) != 1 || known[0].Note != "printer" || known[0].ChangedBy != "key:op" {
		t.Fatalf("known: %+v", known)
	}
	if bs, _, _ := s.ListNeighbours(ctx, tenB, model.NeighbourQuery{}, store.ListOptions{}); len(bs) != 0 {
		t.Fatalf("B lists A's neighbours: %+v", bs)
	}
	managed, err := s.ManagedMACs(ctx, tenA, []string{"24:0a:c4:00:11:22", "24:0a:c4:00:00:01"})
	noErr(t, err, "ManagedMACs")
	wantEqual(t, managed, map[string]string{"24:0a:c4:00:11:22": "dev-a1"}, "managed MACs")
	if m, _ := s.ManagedMACs(ctx, tenB, []string{"24:0a:c4:00:11:22"}); len(m) != 0 {
		t.Fatalf("B finds A's managed MACs: %v", m)
	}

	// Erasing a device's data: B's erase of A's device removes nothing.
	noErr(t, s.WriteTelemetry(ctx, []model.TelemetryPoint{{TenantID: tenA, DeviceID: "dev-a1", Metric: "t", Time: at(0),
		Kind: model.KindNumber, Num: 1}, {TenantID: tenA, DeviceID: "dev-a1", Metric: "t", Time: at(time.Second), Kind: model.KindNumber, Num: 2}}),
		"WriteTelemetry")
	mustUpdate(t, s, func(tx store.Tx) error {
		if err := tx.PutTwinDesired(ctx, tenA, "dev-a1", json.RawMessage(`{"a":1}`), 0, at(0)); err != nil {
			return err
		}
		return tx.CreateCommand(ctx, &model.Command{ID: "cmd-1", TenantID: tenA, DeviceID: "dev-a1", Name: "reboot",
			Status: model.CommandQueued, CreatedAt: at(0), CreatedBy: "key:op", ExpiresAt: at(time.Hour), Timeout: time.Minute})
	})
	var none model.DeviceDataCounts
	mustUpdate(t, s, func(tx store.Tx) error {
		var err error
		none, err = tx.EraseDeviceData(ctx, tenB, "dev-a1")
		return err
	})
	wantEqual(t, none, model.DeviceDataCounts{}, "erase from B")
	var c model.DeviceDataCounts
	mustUpdate(t, s, func(tx store.Tx) error { var err error; c, err = tx.EraseDeviceData(ctx, tenA, "dev-a1"); return err })
	wantEqual(t, c, model.DeviceDataCounts{TelemetryPoints: 2, Commands: 1, Twin: 1, Observations: 1}, "erased")
	if l, _ := s.LatestTelemetry(ctx, tenA, "dev-a1"); len(l) != 0 {
		t.Fatalf("telemetry after the erase: %+v", l)
	}
	if cs, _, _ := s.ListCommands(ctx, tenA, "dev-a1", store.ListOptions{}); len(cs) != 0 {
		t.Fatalf("commands after the erase: %+v", cs)
	}
	if tw, err := s.GetTwin(ctx, tenA, "dev-a1"); err != nil || tw.DesiredVersion != 0 {
		t.Fatalf("twin after the erase: %+v %v", tw, err)
	}
	if _, err := s.GetDevice(ctx, tenA, "dev-a1"); err != nil {
		t.Fatalf("the registry row went with the data: %v", err)
	}
}
