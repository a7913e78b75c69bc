package httpapi_test

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"testing"

	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// lifecycleFixture: a neighbour reported by the fixture's device, and a
// device claimed from a vendor (so it can be released back).
type lifecycleFixture struct {
	mac        string
	releasable string
}

func randomMAC() string {
	b := make([]byte, 5)
	rand.Read(b)
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4])
}

func (f *fixture) fillLifecycle(t *testing.T) {
	t.Helper()
	srv, key := f.srv, f.tenant.Admin.Secret
	f.life.mac = randomMAC()
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + f.other.ID + "/neighbours", Key: key,
		Body: map[string]any{"neighbours": []map[string]any{{"mac": f.life.mac, "ip": "192.168.1.30", "hostname": "printer", "source": "arp"},
			{"mac": randomMAC(), "source": "mdns", "services": []string{"_airplay._tcp"}}}}})
	code := srv.NewClaimCode(t)
	res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/claims", Key: key, Body: map[string]any{"code": code}})
	f.life.releasable = res.Str("id")
}

func (f *fixture) lifecycleBody(opID string) (any, bool) {
	switch opID {
	case "decommissionDevice":
		return map[string]any{"data": "keep", "reason": "test"}, true
	case "releaseDevice":
		return map[string]any{"reason": "test"}, true
	case "reportNeighbours":
		return map[string]any{"neighbours": []map[string]any{{"mac": randomMAC(), "source": "mdns", "services": []string{"_ipp._tcp"}}}}, true
	case "markNeighbourKnown":
		return map[string]any{"note": "the printer"}, true
	case "adoptNeighbour":
		return map[string]any{"product_id": f.product.ID}, true
	}
	return nil, false
}

// TestNeighboursAPI: reports through the API, the list with its filters,
// mark known, adopt (which the claim flow takes on), and refusals that
// change nothing.
func TestNeighboursAPI(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		ten := srv.CreateTenant(t, "home")
		key := ten.Admin.Secret
		prod := srv.CreateProduct(t, ten.ID)
		gw := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/devices", Key: key,
			Body: map[string]any{"product_id": prod.ID, "serial": "GW-1", "attributes": map[string]string{"site": "flat", "mac": "b8:27:eb:00:00:01"}}}).Str("id")
		report := func(body any) *testserver.Resp {
			return srv.Do(t, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + gw + "/neighbours", Key: key, Body: body})
		}
		res := report(map[string]any{"neighbours": []map[string]any{
			{"mac": "B8-27-EB-00-00-01", "source": "arp"},
			{"mac": "24:0a:c4:00:11:22", "ip": "192.168.1.20", "hostname": "plug", "source": "arp"},
			{"mac": "3c:22:fb:00:00:09", "hostname": "phone", "source": "mdns", "services": []string{"_companion-link._tcp"}}}})
		if res.Status != http.StatusOK || res.Obj()["new"] != 2.0 || res.Obj()["managed"] != 1.0 {
			t.Fatalf("report: %s", res)
		}
		for _, bad := range []map[string]any{
			{"neighbours": []map[string]any{{"mac": "ff:ff:ff:ff:ff:ff", "source": "arp"}}},
			{"neighbours": []map[string]any{{"mac": "24:0a:c4:00:11:23", "source": "lldp"}}},
			{"neighbours": []map[string]any{{"mac": "24:0a:c4:00:11:23", "ip": "300.1.1.1", "source": "arp"}}},
		} {
			if r := report(bad); r.Status != http.StatusUnprocessableEntity {
				t.Fatalf("bad report %v: %s", bad, r)
			}
		}
		list := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/neighbours?site=flat&limit=1", Key: key})
		items := list.Items()
		if len(items) != 1 || items[0]["mac"] != "24:0a:c4:00:11:22" || items[0]["vendor"] != "Espressif Inc." || list.Str("next_cursor") == "" {
			t.Fatalf("first page: %s", list)
		}
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/neighbours/3c:22:fb:00:00:09/known", Key: key,
			Body: map[string]any{"note": "Anna's phone"}})
		known := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/neighbours?status=known", Key: key}).Items()
		if len(known) != 1 || known[0]["note"] != "Anna's phone" {
			t.Fatalf("known: %v", known)
		}
		ad := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/neighbours/24:0a:c4:00:11:22/adopt", Key: key,
			Body: map[string]any{"product_id": prod.ID}})
		code := ad.Str("claim_code")
		dev := ad.Obj()["device"].(map[string]any)
		if code == "" || dev["state"] != "manufactured" || dev["serial"] != "MAC-240AC4001122" {
			t.Fatalf("adopt: %s", ad)
		}
		claimed := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/claims", Key: key, Body: map[string]any{"code": code}})
		if claimed.Str("state") != "claimed" {
			t.Fatalf("claiming the adopted device: %s", claimed)
		}
		if r := srv.Do(t, testserver.Req{Method: http.MethodPost, Path: api + "/neighbours/24:0a:c4:00:11:22/known", Key: key}); r.Status != http.StatusConflict {
			t.Fatalf("marking an adopted neighbour known: %s", r)
		}
		if r := srv.Do(t, testserver.Req{Method: http.MethodPost, Path: api + "/neighbours/24:0a:c4:00:99:99/adopt", Key: key,
			Body: map[string]any{"product_id": prod.ID}}); r.Status != http.StatusNotFound {
			t.Fatalf("adopting a neighbour nobody reported: %s", r)
		}
		if r := srv.Do(t, testserver.Req{Method: http.MethodGet, Path: api + "/neighbours?status=gone", Key: key}); r.Status != http.StatusUnprocessableEntity {
			t.Fatalf("bad status filter: %s", r)
		}
	})
}
