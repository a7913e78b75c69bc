package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/platform"
	"github.com/steward-iot/steward/internal/secretbox"
	"github.com/steward-iot/steward/internal/store/sqlstore"
	"github.com/steward-iot/steward/internal/testutil/testserver"
	"github.com/steward-iot/steward/internal/webhook"
)

// TestWebhookDelivery: a device change reaches a subscribed endpoint as a
// signed POST; an endpoint failing twice gets the event on the third try,
// and the delivery log shows the attempts and the success.
func TestWebhookDelivery(t *testing.T) {
	t.Parallel()
	fast := func(o *testserver.Options) {
		o.BeforeStart = func(p *platform.Server) {
			p.WebhookBackoff = []time.Duration{20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond}
			p.WebhookPoll = 10 * time.Millisecond
		}
	}
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		type attempt struct {
			header http.Header
			body   []byte
			at     time.Time
		}
		var mu sync.Mutex
		var attempts []attempt
		failFirst := 2
		recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			attempts = append(attempts, attempt{r.Header.Clone(), body, time.Now()})
			n := len(attempts)
			mu.Unlock()
			if r.Method != http.MethodPost {
				w.WriteHeader(http.StatusMethodNotAllowed)
				return
			}
			if n <= failFirst {
				http.Error(w, "try again", http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}))
		t.Cleanup(recv.Close)
		got := func() []attempt {
			mu.Lock()
			defer mu.Unlock()
			return append([]attempt(nil), attempts...)
		}

		ten := srv.CreateTenant(t, "hooks")
		key := ten.Admin.Secret
		p := srv.CreateProduct(t, ten.ID)
		res := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/webhooks", Key: key,
			Body: map[string]any{"url": recv.URL + "/steward", "types": []string{"device.created"}}})
		hookID, secret := res.Str("id"), res.Str("secret")
		if hookID == "" || secret == "" {
			t.Fatalf("webhook creation answered no id or secret: %s", res)
		}
		// The secret is shown once: never in reads.
		again := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/webhooks/" + hookID, Key: key})
		list := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/webhooks", Key: key})
		if containsFold(string(again.Raw), secret) || containsFold(string(list.Raw), secret) {
			t.Fatalf("the webhook secret is readable after creation")
		}
		// Nor is it in the database: it is sealed with the server's key.
		db := srv.Platform.Store.(*sqlstore.DB)
		_, rdb := db.DBs()
		var stored string
		if err := rdb.QueryRow(db.Rebind(`SELECT secret FROM webhooks WHERE id = ?`), hookID).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if !secretbox.IsSealed(stored) || strings.Contains(stored, secret) {
			t.Fatalf("the webhook secret is stored as %q", stored)
		}

		d := srv.CreateDevice(t, ten.ID, p.ID)
		// A change of another type is not sent to this subscription.
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + d.ID + "/transitions",
			Key: key, Body: map[string]any{"to": "claimed", "reason": "not subscribed"}})

		testserver.Eventually(t, 15*time.Second, func() bool { return len(got()) >= 3 },
			"the endpoint got %d attempts, want 3 (2 failures, then success)", len(got()))

		for i, a := range got() {
			if err := webhook.Verify(secret, a.header.Get(webhook.SignatureHeader), a.body, time.Now(), 5*time.Minute); err != nil {
				t.Errorf("attempt %d: signature %q does not verify: %v", i+1, a.header.Get(webhook.SignatureHeader), err)
			}
			if err := webhook.Verify("whsec_wrong", a.header.Get(webhook.SignatureHeader), a.body, time.Now(), 5*time.Minute); err == nil {
				t.Errorf("attempt %d: the signature verifies with a wrong secret", i+1)
			}
			var ev model.Event
			if err := json.Unmarshal(a.body, &ev); err != nil {
				t.Fatalf("attempt %d: body is not an event: %v\n%s", i+1, err, a.body)
			}
			if ev.Type != "device.created" || ev.Subject != d.ID || ev.TenantID != ten.ID {
				t.Errorf("attempt %d: got %s %s of %s, want device.created %s", i+1, ev.Type, ev.Subject, ev.TenantID, d.ID)
			}
			if a.header.Get(webhook.EventTypeHeader) != "device.created" || a.header.Get(webhook.EventIDHeader) != ev.ID {
				t.Errorf("attempt %d: event headers %q %q", i+1, a.header.Get(webhook.EventTypeHeader), a.header.Get(webhook.EventIDHeader))
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("attempt %d: Content-Type %q", i+1, ct)
			}
			if i > 0 && string(a.body) != string(got()[0].body) {
				t.Errorf("attempt %d sent another body than the first", i+1)
			}
		}

		// The log: one delivery, three attempts, delivered with the
		// endpoint's status. It is written right after the answer, so poll.
		var dl []map[string]any
		testserver.Eventually(t, 10*time.Second, func() bool {
			r := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/webhooks/" + hookID + "/deliveries", Key: key})
			dl = r.Items()
			return len(dl) == 1 && dl[0]["status"] == "delivered"
		}, "the delivery log does not show one delivered delivery: %v", dl)
		if dl[0]["attempts"] != float64(3) || dl[0]["last_status_code"] != float64(204) || dl[0]["event_type"] != "device.created" {
			t.Errorf("delivery log entry %v: want 3 attempts, last status 204, event device.created", dl[0])
		}
		if _, ok := dl[0]["last_error"]; ok {
			t.Errorf("a delivered entry still carries last_error: %v", dl[0])
		}
		// No further attempt after the success.
		time.Sleep(100 * time.Millisecond)
		if n := len(got()); n != 3 {
			t.Errorf("the endpoint got %d attempts, want exactly 3", n)
		}

		// A secret sealed with another key (a database restored without
		// its data_dir/pki) does not open: nothing is sent unsigned, and
		// the delivery log says why.
		otherBox, _ := secretbox.New(bytes.Repeat([]byte{1}, secretbox.KeySize))
		wdb, _ := db.DBs()
		if _, err := wdb.Exec(db.Rebind(`UPDATE webhooks SET secret = ? WHERE id = ?`),
			otherBox.Seal(secret, "webhooks/"+ten.ID+"/"+hookID), hookID); err != nil {
			t.Fatal(err)
		}
		srv.CreateDevice(t, ten.ID, p.ID)
		testserver.Eventually(t, 10*time.Second, func() bool {
			r := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/webhooks/" + hookID + "/deliveries", Key: key})
			dl = r.Items()
			return len(dl) == 2 && dl[0]["status"] == "failed"
		}, "the delivery log does not show the second delivery failed: %v", dl)
		if e, _ := dl[0]["last_error"].(string); !strings.Contains(e, "secrets key") {
			t.Errorf("the failed delivery says %q, want the secrets key named", e)
		}
		if n := len(got()); n != 3 {
			t.Errorf("the endpoint got %d attempts, want still 3 (nothing sent unsigned)", n)
		}
	}, fast)
}
