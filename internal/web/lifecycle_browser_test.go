package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// TestBrowserEndOfLife drives the device page's release (the new claim
// code is shown once and claims the device elsewhere) and decommission
// actions, and the unmanaged devices page (mark known, adopt); a viewer
// gets none of their forms.
func TestBrowserEndOfLife(t *testing.T) {
	t.Parallel()
	browser := startBrowser(t)
	f := newFleet(t)
	srv, base := f.srv, f.srv.URL
	api, key := testserver.APIPrefix, f.tenant.Admin.Secret

	// A device claimed from its maker (it can be handed on), and a report
	// of two network neighbours.
	rel := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/claims", Key: key,
		Body: map[string]any{"code": srv.NewClaimCode(t)}})
	relID, relSerial := rel.Str("id"), rel.Str("serial")
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + f.devices[2].ID + "/neighbours", Key: key,
		Body: map[string]any{"neighbours": []map[string]any{
			{"mac": "24:0a:c4:00:11:22", "ip": "192.168.1.20", "hostname": "plug", "source": "arp"},
			{"mac": "3c:22:fb:00:00:09", "hostname": "phone", "source": "mdns"}}}})

	op := newPerson(t, browser, base)
	op.signIn(f.operator, password)

	t.Run("release shows the new claim code once", func(t *testing.T) {
		p := op.in(t)
		p.run("releasing", chromedp.Navigate(base+"/devices/"+relID), chromedp.WaitVisible(css(`#end-of-life`)),
			chromedp.Click(css(`summary[data-action=release]`)), chromedp.WaitVisible(css(`#release-confirm`)),
			chromedp.SendKeys(css(`#release-reason`), "sold it"),
			chromedp.SendKeys(css(`#release-confirm`), relSerial),
			chromedp.Submit(css(`#release-confirm`)), chromedp.WaitVisible(css(`#new-claim-code`)))
		code := p.text(`#new-claim-code`)
		p.screenshot("device-released")
		other := srv.CreateTenant(t, "next-owner")
		if r := srv.Do(t, testserver.Req{Method: http.MethodPost, Path: api + "/claims", Key: other.Admin.Secret,
			Body: map[string]any{"code": code}}); r.Status != http.StatusOK {
			t.Fatalf("the code the page showed does not claim the device: %s", r)
		}
		if r := srv.Do(t, testserver.Req{Method: http.MethodGet, Path: api + "/devices/" + relID, Key: key}); r.Status != http.StatusNotFound {
			t.Fatalf("the old owner still sees the released device: %d", r.Status)
		}
	})

	t.Run("decommission with the data choice", func(t *testing.T) {
		p := op.in(t)
		dev := f.devices[1]
		p.run("decommissioning with a wrong serial", chromedp.Navigate(base+"/devices/"+dev.ID), chromedp.WaitVisible(css(`#end-of-life`)),
			chromedp.Click(css(`summary[data-action=retire]`)), chromedp.WaitVisible(css(`#retire-confirm`)),
			chromedp.SendKeys(css(`#retire-confirm`), "not-the-serial"),
			chromedp.Submit(css(`#retire-confirm`)), chromedp.WaitVisible(css(`.flash`)))
		if got := p.text(`.flash-error`); !strings.Contains(got, "Type the device's serial") || f.state(t, dev.ID) == model.StateDecommissioned {
			t.Fatalf("a wrong serial: %q", got)
		}
		p.run("decommissioning", chromedp.Navigate(base+"/devices/"+dev.ID), chromedp.WaitVisible(css(`#end-of-life`)),
			chromedp.Click(css(`summary[data-action=retire]`)), chromedp.WaitVisible(css(`#retire-confirm`)),
			chromedp.SetValue(css(`#retire-data`), "erase"),
			chromedp.SendKeys(css(`#retire-reason`), "replaced"),
			chromedp.SendKeys(css(`#retire-confirm`), dev.Serial),
			chromedp.Submit(css(`#retire-confirm`)), chromedp.WaitVisible(css(`.flash`)))
		if got := p.text(`.flash-ok`); !strings.Contains(got, "decommissioned") || !strings.Contains(got, "erased") {
			t.Fatalf("decommission says %q", got)
		}
		if s := f.state(t, dev.ID); s != model.StateDecommissioned {
			t.Fatalf("state after decommission: %s", s)
		}
		if p.count(`#end-of-life`) != 0 {
			t.Fatal("a decommissioned device still offers end-of-life actions")
		}
	})

	t.Run("unmanaged devices: mark known and adopt", func(t *testing.T) {
		p := op.in(t)
		p.run("opening the page", chromedp.Navigate(base+"/neighbours"), chromedp.WaitVisible(css(`#neighbours`)))
		if n := p.count(`#neighbours tbody tr[data-mac]`); n != 2 {
			t.Fatalf("%d unmanaged devices listed, want 2", n)
		}
		if got := p.text(`tr[data-mac="24:0a:c4:00:11:22"] td[data-label=Vendor]`); got != "Espressif Inc." {
			t.Fatalf("vendor: %q", got)
		}
		p.screenshot("neighbours")
		row := `tr[data-mac="3c:22:fb:00:00:09"] `
		p.run("marking known", chromedp.Click(css(row+`summary[data-action=known]`)), chromedp.WaitVisible(css(row+`input[name=note]`)),
			chromedp.SendKeys(css(row+`input[name=note]`), "Anna's phone"), chromedp.Submit(css(row+`input[name=note]`)),
			chromedp.WaitVisible(css(`.flash`)))
		if got := p.text(`.flash-ok`); !strings.Contains(got, "marked as known") {
			t.Fatalf("mark known says %q", got)
		}
		if n := p.count(`#neighbours tbody tr[data-mac]`); n != 1 {
			t.Fatalf("%d unmanaged after marking one known, want 1", n)
		}
		row = `tr[data-mac="24:0a:c4:00:11:22"] `
		p.run("adopting", chromedp.Click(css(row+`summary[data-action=adopt]`)), chromedp.WaitVisible(css(row+`select[name=product]`)),
			chromedp.Submit(css(row+`select[name=product]`)), chromedp.WaitVisible(css(`#new-claim-code`)))
		if p.text(`#new-claim-code`) == "" {
			t.Fatal("no claim code after adopting")
		}
		devs := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/devices?serial_prefix=MAC-240AC4", Key: key}).Items()
		if len(devs) != 1 || devs[0]["state"] != "manufactured" {
			t.Fatalf("adopted device: %v", devs)
		}
	})

	t.Run("a viewer gets no end-of-life or neighbour forms", func(t *testing.T) {
		v := newPerson(t, browser, base)
		v.signIn(f.viewer, password)
		v.run("device page", chromedp.Navigate(base+"/devices/"+f.devices[3].ID), chromedp.WaitVisible(css(`#h-actions`)))
		if v.count(`#end-of-life`) != 0 {
			t.Fatal("a viewer sees the end-of-life actions")
		}
		v.run("neighbours page", chromedp.Navigate(base+"/neighbours?status=all"), chromedp.WaitVisible(css(`#neighbours`)))
		if n := v.count(`#neighbours form`); n != 0 {
			t.Fatalf("a viewer sees %d neighbour forms", n)
		}
	})
}
