package httpapi_test

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// TestIdempotencyKey: a retried creating call with the same key and body
// replays the first answer instead of creating again; the same key with
// another body is refused; without a key a retry is a second creation
// (here: a conflict on the serial).
func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		ten := srv.CreateTenant(t, "idem")
		p := srv.CreateProduct(t, ten.ID)
		key := ten.Admin.Secret
		create := func(serial, idem string, as string) *testserver.Resp {
			r := testserver.Req{Method: http.MethodPost, Path: api + "/devices", Key: as,
				Body: map[string]any{"product_id": p.ID, "serial": serial, "tags": []string{"idem"}}}
			if idem != "" {
				r.Header = map[string]string{"Idempotency-Key": idem}
			}
			return srv.Do(t, r)
		}
		count := func(serial string) int64 {
			n, err := srv.Platform.Store.CountDevices(context.Background(), ten.ID, model.DeviceQuery{SerialPrefix: serial})
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		creates := func() int {
			n := 0
			for _, r := range auditTrail(t, srv, ten.ID) {
				if r.Action == "device.create" {
					n++
				}
			}
			return n
		}

		t.Run("same key and body replays", func(t *testing.T) {
			first := create("IDEM-A", "k-1", key)
			if first.Status != http.StatusCreated || first.Header.Get("Idempotent-Replayed") != "" {
				t.Fatalf("first call: want 201 not replayed, got %s (replayed %q)", first, first.Header.Get("Idempotent-Replayed"))
			}
			audits := creates()
			for i := 0; i < 2; i++ {
				again := create("IDEM-A", "k-1", key)
				if again.Status != http.StatusCreated || again.Header.Get("Idempotent-Replayed") != "true" {
					t.Fatalf("retry %d: want 201 with Idempotent-Replayed: true, got %s (header %q)", i, again, again.Header.Get("Idempotent-Replayed"))
				}
				if again.Str("id") != first.Str("id") || string(again.Raw) != string(first.Raw) {
					t.Fatalf("retry %d answered another device:\nfirst: %s\nretry: %s", i, first.Raw, again.Raw)
				}
				if ct := again.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("replayed Content-Type %q", ct)
				}
			}
			if n := count("IDEM-A"); n != 1 {
				t.Fatalf("%d devices with serial IDEM-A, want 1", n)
			}
			if n := creates(); n != audits {
				t.Fatalf("replays wrote %d more device.create audit records", n-audits)
			}
		})

		t.Run("same key, other body", func(t *testing.T) {
			res := create("IDEM-B", "k-1", key)
			if res.Status != http.StatusUnprocessableEntity {
				t.Fatalf("want 422, got %s", res)
			}
			if p := res.Problem(); p.Status != 422 || !containsFold(p.Detail, "Idempotency-Key") || !containsFold(p.Detail, "different request") {
				t.Fatalf("want a problem naming the reused Idempotency-Key, got %s", res)
			}
			if n := count("IDEM-B"); n != 0 {
				t.Fatalf("a device IDEM-B was created")
			}
		})

		t.Run("keys are private to the API key", func(t *testing.T) {
			other := srv.CreateKeyAs(t, key, "", model.RoleOperator, nil)
			// Another caller's "k-1" is not the first caller's: no replay,
			// so the same body is a second creation of the serial.
			res := create("IDEM-A", "k-1", other.Secret)
			if res.Status != http.StatusConflict || res.Header.Get("Idempotent-Replayed") != "" {
				t.Fatalf("want 409 (not a replay of another key's answer), got %s", res)
			}
		})

		t.Run("errors are replayed too", func(t *testing.T) {
			first := create("IDEM-A", "k-dup", key) // the serial exists: 409
			again := create("IDEM-A", "k-dup", key)
			if first.Status != http.StatusConflict || again.Status != http.StatusConflict || again.Header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("want 409 then a replayed 409, got %s then %s", first, again)
			}
			if ct := again.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("replayed error Content-Type %q", ct)
			}
		})

		t.Run("without a key a retry creates again", func(t *testing.T) {
			first := create("IDEM-C", "", key)
			second := create("IDEM-C", "", key)
			if first.Status != http.StatusCreated || second.Status != http.StatusConflict {
				t.Fatalf("want 201 then 409, got %s then %s", first, second)
			}
			if !containsFold(second.Problem().Detail, "serial") {
				t.Errorf("the conflict does not name the serial: %s", second)
			}
			if n := count("IDEM-C"); n != 1 {
				t.Fatalf("%d devices with serial IDEM-C, want 1", n)
			}
		})

		t.Run("concurrent retries create once", func(t *testing.T) {
			var wg sync.WaitGroup
			results := make([]*testserver.Resp, 8)
			for i := range results {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := srv.Send(testserver.Req{Method: http.MethodPost, Path: api + "/devices", Key: key,
						Body:   map[string]any{"product_id": p.ID, "serial": "IDEM-D", "tags": []string{"idem"}},
						Header: map[string]string{"Idempotency-Key": "k-concurrent"}})
					if err != nil {
						t.Error(err)
						return
					}
					results[i] = r
				}()
			}
			wg.Wait()
			id := ""
			for _, r := range results {
				if r == nil {
					continue
				}
				switch r.Status {
				case http.StatusCreated:
					if id != "" && r.Str("id") != id {
						t.Errorf("two different devices answered: %s and %s", id, r.Str("id"))
					}
					id = r.Str("id")
				case http.StatusConflict:
					// "still being processed; retry shortly"
					if !containsFold(r.Problem().Detail, "being processed") {
						t.Errorf("unexpected conflict: %s", r)
					}
				default:
					t.Errorf("unexpected answer: %s", r)
				}
			}
			if n := count("IDEM-D"); n != 1 {
				t.Fatalf("%d devices with serial IDEM-D, want 1", n)
			}
		})
	})
}
