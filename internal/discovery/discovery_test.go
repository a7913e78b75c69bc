package discovery_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/discovery"
	"github.com/steward-iot/steward/internal/discovery/oui"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/store/sqlstore"
)

func TestParseReport(t *testing.T) {
	ok, err := discovery.ParseReport([]byte(`{"neighbours": [
		{"mac": "24-0A-C4-00-11-22", "ip": "192.168.1.20", "hostname": "plug", "source": "arp"},
		{"mac": "240ac4001122", "source": "mdns", "services": ["_hap._tcp"]},
		{"mac": "b827.eb00.0001", "ip": "fe80::1", "source": "ndp"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(ok.Neighbours) != 2 || ok.Neighbours[0].MAC != "24:0a:c4:00:11:22" || ok.Neighbours[0].Source != "arp,mdns" ||
		len(ok.Neighbours[0].Services) != 1 || ok.Neighbours[1].MAC != "b8:27:eb:00:00:01" {
		t.Fatalf("parsed: %+v", ok.Neighbours)
	}
	if _, err := discovery.ParseReport([]byte(`[{"mac": "24:0a:c4:00:11:22", "source": "arp"}]`)); err != nil {
		t.Fatalf("bare array: %v", err)
	}
	many := `{"neighbours": [` + strings.Repeat(`{"mac": "24:0a:c4:00:11:22", "source": "arp"},`, discovery.MaxNeighbours) +
		`{"mac": "24:0a:c4:00:11:22", "source": "arp"}]}`
	for _, tc := range []struct{ name, payload, field string }{
		{"not JSON", `neighbours`, "payload"},
		{"no list", `{}`, "neighbours"},
		{"unknown field", `{"neighbours": [], "extra": 1}`, "payload"},
		{"unknown entry field", `{"neighbours": [{"mac": "24:0a:c4:00:11:22", "source": "arp", "vendor": "x"}]}`, "payload"},
		{"bad MAC", `{"neighbours": [{"mac": "24:0a:c4", "source": "arp"}]}`, "neighbours[0].mac"},
		{"EUI-64", `{"neighbours": [{"mac": "02:00:5e:10:00:00:00:01", "source": "arp"}]}`, "neighbours[0].mac"},
		{"broadcast", `{"neighbours": [{"mac": "ff:ff:ff:ff:ff:ff", "source": "arp"}]}`, "neighbours[0].mac"},
		{"bad IP", `{"neighbours": [{"mac": "24:0a:c4:00:11:22", "ip": "192.168.1", "source": "arp"}]}`, "neighbours[0].ip"},
		{"bad source", `{"neighbours": [{"mac": "24:0a:c4:00:11:22", "source": "lldp"}]}`, "neighbours[0].source"},
		{"control character", `{"neighbours": [{"mac": "24:0a:c4:00:11:22", "hostname": "a\u0007b", "source": "arp"}]}`, "neighbours[0].hostname"},
		{"empty service", `{"neighbours": [{"mac": "24:0a:c4:00:11:22", "source": "mdns", "services": [""]}]}`, "neighbours[0].services[0]"},
		{"too many", many, "neighbours"},
		{"trailing data", `{"neighbours": []} {}`, "payload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := discovery.ParseReport([]byte(tc.payload))
			ie, ok := err.(*discovery.InvalidError)
			if !ok || ie.Field != tc.field {
				t.Fatalf("want an error on %s, got %v", tc.field, err)
			}
		})
	}
}

func TestVendor(t *testing.T) {
	if oui.Size() < 30000 {
		t.Fatalf("the embedded registry holds %d prefixes", oui.Size())
	}
	for mac, want := range map[string]string{"24:0a:c4:00:11:22": "Espressif", "b8:27:eb:00:00:01": "Raspberry Pi",
		"02:0a:c4:00:11:22": "", "00:00:00:00:00:01": "XEROX"} {
		if got := oui.Vendor(mac); !strings.Contains(got, want) || (want == "" && got != "") {
			t.Errorf("%s: vendor %q, want %q", mac, got, want)
		}
	}
}

const tenant = "ten-home"

func TestReportMarkKnownAdopt(t *testing.T) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, "sqlite:"+t.TempDir()+"/steward.db", sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	prod := model.Product{ID: "prd-1", TenantID: tenant, Vendor: "Acme", Model: "Hub", CreatedAt: now, UpdatedAt: now}
	gw := model.Device{ID: "dev-gw", TenantID: tenant, ProductID: prod.ID, Serial: "GW-1", State: model.StateActive, CreatedAt: now,
		UpdatedAt: now, Version: 1, Attributes: map[string]string{"mac": "B8:27:EB:00:00:01", "site": "home"}}
	lamp := model.Device{ID: "dev-lamp", TenantID: tenant, ProductID: prod.ID, Serial: "L-1", State: model.StateActive, CreatedAt: now,
		UpdatedAt: now, Version: 1, Attributes: map[string]string{"mac": "24:0a:c4:aa:bb:cc"}}
	err = st.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateTenant(ctx, &model.Tenant{ID: tenant, Name: "Home", Kind: model.TenantHousehold, CreatedAt: now}); err != nil {
			return err
		}
		if err := tx.CreateProduct(ctx, &prod); err != nil {
			return err
		}
		if err := tx.CreateDevice(ctx, &gw); err != nil {
			return err
		}
		return tx.CreateDevice(ctx, &lamp)
	})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := identity.LoadOrCreateCA(identity.PKIConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	svc := discovery.New(st, registry.New(st), identity.NewService(st, ca, identity.Options{}))
	svc.SetClock(func() time.Time { return now })
	report := []byte(`{"neighbours": [
		{"mac": "b8:27:eb:00:00:01", "source": "arp"},
		{"mac": "24:0a:c4:aa:bb:cc", "source": "arp"},
		{"mac": "24:0a:c4:00:11:22", "ip": "192.168.1.20", "hostname": "plug", "source": "arp"},
		{"mac": "3c:22:fb:00:00:09", "hostname": "phone", "source": "mdns", "services": ["_companion-link._tcp"]}]}`)
	res, err := svc.ReportPayload(ctx, tenant, gw.ID, report)
	if err != nil {
		t.Fatal(err)
	}
	if res.Received != 4 || res.Managed != 2 || res.New != 2 || res.Refreshed != 0 {
		t.Fatalf("first report: %+v", res)
	}
	head := func() int64 {
		h, err := st.GetAuditHead(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		return h.Seq
	}
	before := head()
	now = now.Add(time.Hour)
	if res, err = svc.ReportPayload(ctx, tenant, gw.ID, report); err != nil || res.New != 0 || res.Refreshed != 2 {
		t.Fatalf("second report: %+v %v", res, err)
	}
	if head() != before {
		t.Fatal("a report of known neighbours wrote audit records")
	}
	list, _, err := svc.List(ctx, tenant, model.NeighbourQuery{Site: "home"}, store.ListOptions{})
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %+v %v", list, err)
	}
	first, next, err := svc.List(ctx, tenant, model.NeighbourQuery{}, store.ListOptions{Limit: 1})
	if err != nil || len(first) != 1 || next == "" {
		t.Fatalf("first page: %+v %q %v", first, next, err)
	}
	second, next, err := svc.List(ctx, tenant, model.NeighbourQuery{}, store.ListOptions{Limit: 1, Cursor: next})
	if err != nil || len(second) != 1 || next != "" || second[0].MAC == first[0].MAC {
		t.Fatalf("second page: %+v %q %v", second, next, err)
	}
	plug := list[0]
	if plug.MAC != "24:0a:c4:00:11:22" || !strings.Contains(plug.Vendor, "Espressif") || plug.Reports != 2 ||
		!plug.FirstSeen.Equal(now.Add(-time.Hour)) || !plug.LastSeen.Equal(now) || plug.ReportedBy != gw.ID ||
		plug.Status != model.NeighbourUnmanaged || plug.IP != "192.168.1.20" {
		t.Fatalf("plug: %+v", plug)
	}
	p := &authz.Principal{KeyID: "key-1", TenantID: tenant, Role: model.RoleTenantAdmin}
	if _, err := svc.MarkKnown(ctx, p, tenant, "3C-22-FB-00-00-09", "Anna's phone"); err != nil {
		t.Fatal(err)
	}
	if known, _, _ := svc.List(ctx, tenant, model.NeighbourQuery{Status: model.NeighbourKnown}, store.ListOptions{}); len(known) != 1 ||
		known[0].Note != "Anna's phone" || known[0].ChangedBy == "" {
		t.Fatalf("known: %+v", known)
	}
	if _, err := svc.MarkKnown(ctx, p, tenant, "24:0a:c4:00:99:99", ""); err == nil {
		t.Fatal("marked a neighbour nobody reported")
	}
	ad, err := svc.Adopt(ctx, p, tenant, plug.MAC, discovery.AdoptInput{ProductID: prod.ID})
	if err != nil {
		t.Fatal(err)
	}
	if ad.Device.State != model.StateManufactured || ad.Device.Attributes["mac"] != plug.MAC || ad.Device.Name != "plug" ||
		ad.ClaimCode == "" || ad.Neighbour.Status != model.NeighbourAdopted || ad.Neighbour.DeviceID != ad.Device.ID {
		t.Fatalf("adopted: %+v", ad)
	}
	if _, err := svc.Adopt(ctx, p, tenant, plug.MAC, discovery.AdoptInput{ProductID: prod.ID}); err == nil {
		t.Fatal("adopted twice")
	}
	// Now managed: the next report skips it.
	if res, err = svc.ReportPayload(ctx, tenant, gw.ID, report); err != nil || res.Managed != 3 {
		t.Fatalf("after adoption: %+v %v", res, err)
	}
}
