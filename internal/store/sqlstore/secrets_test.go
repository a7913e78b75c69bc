package sqlstore_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/secretbox"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/store/sqlstore"
)

// rawSecret reads a webhook's secret column as stored.
func rawSecret(t *testing.T, db *sqlstore.DB, id string) string {
	t.Helper()
	_, r := db.DBs()
	var s string
	if err := r.QueryRow(db.Rebind(`SELECT secret FROM webhooks WHERE id = ?`), id).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestWebhookSecretsSealed: webhook secrets are sealed at rest, open only
// in their own row and with the store's key, and secrets stored in clear
// before are sealed by SealWebhookSecrets.
func TestWebhookSecretsSealed(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			url := b.url(t)
			now := time.Now().UTC().Truncate(time.Second)

			// Written by a store without the key: in clear, as before.
			old := openWith(t, url, sqlstore.Options{})
			mustUpdate(t, old, func(tx store.Tx) error {
				for _, tn := range []string{"ten-a", "ten-b"} {
					if err := tx.CreateTenant(ctx, &model.Tenant{ID: tn, Name: tn, Kind: model.TenantEnterprise, CreatedAt: now}); err != nil {
						return err
					}
				}
				return tx.CreateWebhook(ctx, &model.Webhook{ID: "whk-old", TenantID: "ten-a", URL: "https://a.example/old",
					Secret: "whsec_old", Active: true, CreatedAt: now})
			})
			if got := rawSecret(t, old, "whk-old"); got != "whsec_old" {
				t.Fatalf("without a key the secret is stored as %q", got)
			}

			db := open(t, url)
			mustUpdate(t, db, func(tx store.Tx) error {
				for _, w := range []model.Webhook{
					{ID: "whk-1", TenantID: "ten-a", URL: "https://a.example/1", Secret: "whsec_one", Active: true, CreatedAt: now},
					{ID: "whk-2", TenantID: "ten-b", URL: "https://b.example/2", Secret: "whsec_two", Active: true, CreatedAt: now},
				} {
					if err := tx.CreateWebhook(ctx, &w); err != nil {
						return err
					}
				}
				return nil
			})
			for id, plain := range map[string]string{"whk-1": "whsec_one", "whk-2": "whsec_two"} {
				if raw := rawSecret(t, db, id); !secretbox.IsSealed(raw) || strings.Contains(raw, plain) {
					t.Errorf("%s is stored as %q", id, raw)
				}
			}
			w, err := db.GetWebhook(ctx, "ten-a", "whk-1")
			if err != nil || w.Secret != "whsec_one" {
				t.Fatalf("GetWebhook: %+v, %v", w, err)
			}
			// The clear one is still read until it is sealed.
			if ws, err := db.ListWebhooks(ctx, "ten-a"); err != nil || len(ws) != 2 || ws[0].Secret != "whsec_one" || ws[1].Secret != "whsec_old" {
				t.Fatalf("ListWebhooks: %+v, %v", ws, err)
			}

			c, err := db.SealWebhookSecrets(ctx)
			if err != nil || c != (sqlstore.SecretsCheck{Sealed: 1}) {
				t.Fatalf("SealWebhookSecrets = %+v, %v; want 1 sealed", c, err)
			}
			if raw := rawSecret(t, db, "whk-old"); !secretbox.IsSealed(raw) {
				t.Fatalf("after sealing, whk-old is stored as %q", raw)
			}
			if c, err := db.SealWebhookSecrets(ctx); err != nil || c != (sqlstore.SecretsCheck{}) {
				t.Fatalf("second SealWebhookSecrets = %+v, %v; want nothing", c, err)
			}
			if w, err := db.GetWebhook(ctx, "ten-a", "whk-old"); err != nil || w.Secret != "whsec_old" {
				t.Fatalf("whk-old after sealing: %+v, %v", w, err)
			}

			// Without the key, or with another one, a sealed secret does
			// not open: the webhook reads with an empty secret (it stays
			// visible and deletable; the dispatcher refuses to send).
			if w, err := old.GetWebhook(ctx, "ten-a", "whk-1"); err != nil || w.Secret != "" || w.URL != "https://a.example/1" {
				t.Errorf("read without the key: %+v, %v", w, err)
			}
			if _, err := old.SealWebhookSecrets(ctx); err == nil {
				t.Error("SealWebhookSecrets without the key did not fail")
			}
			otherBox, _ := secretbox.New(bytes.Repeat([]byte{1}, secretbox.KeySize))
			other := openWith(t, url, sqlstore.Options{Secrets: otherBox})
			if ws, err := other.ListWebhooks(ctx, "ten-b"); err != nil || len(ws) != 1 || ws[0].Secret != "" {
				t.Errorf("read with another key: %+v, %v", ws, err)
			}
			// Started with another key, the check counts what does not open.
			if c, err := other.SealWebhookSecrets(ctx); err != nil || c != (sqlstore.SecretsCheck{Unreadable: 3}) {
				t.Errorf("SealWebhookSecrets with another key = %+v, %v; want 3 unreadable", c, err)
			}

			// A sealed value copied into another tenant's row does not open there.
			wr, _ := db.DBs()
			if _, err := wr.Exec(db.Rebind(`UPDATE webhooks SET secret = ? WHERE id = ?`), rawSecret(t, db, "whk-1"), "whk-2"); err != nil {
				t.Fatal(err)
			}
			if w, err := db.GetWebhook(ctx, "ten-b", "whk-2"); err != nil || w.Secret != "" {
				t.Errorf("a secret moved to another row: %+v, %v", w, err)
			}
			if c, err := db.SealWebhookSecrets(ctx); err != nil || c != (sqlstore.SecretsCheck{Unreadable: 1}) {
				t.Errorf("SealWebhookSecrets after the move = %+v, %v; want 1 unreadable", c, err)
			}

			// A clear secret that merely starts like a sealed one in another
			// case is sealed too (the check is made in Go, not with LIKE,
			// which ignores case in SQLite).
			mustUpdate(t, old, func(tx store.Tx) error {
				return tx.CreateWebhook(ctx, &model.Webhook{ID: "whk-case", TenantID: "ten-a", URL: "https://a.example/case",
					Secret: strings.ToUpper(secretbox.Prefix) + "x", Active: true, CreatedAt: now})
			})
			if c, err := db.SealWebhookSecrets(ctx); err != nil || c != (sqlstore.SecretsCheck{Sealed: 1, Unreadable: 1}) {
				t.Errorf("SealWebhookSecrets of an upper-case clear secret = %+v, %v; want 1 sealed", c, err)
			}
			if raw := rawSecret(t, db, "whk-case"); !secretbox.IsSealed(raw) {
				t.Errorf("whk-case is stored as %q", raw)
			}
		})
	}
}
