package platform_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// TestUpdateMitigation: the update action starts a one-device campaign of
// the newest release (by version) newer than what the device runs,
// without asking consent; invalidated releases are passed over.
func TestUpdateMitigation(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	ten := srv.CreateTenant(t, "mitigation")
	key := ten.Admin.Secret
	prod := srv.CreateProduct(t, ten.ID)
	dev := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/devices", Key: key,
		Body: map[string]any{"product_id": prod.ID, "serial": "SN-M", "firmware_version": "1.0.0"}}).Str("id")
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/devices/" + dev + "/transitions", Key: key,
		Body: map[string]any{"to": "claimed", "reason": "in the field"}})
	updater := srv.Platform.Alarms.Updater
	ctx := context.Background()
	if _, err := updater.UpdateDevice(ctx, "system:detect", ten.ID, dev, "auth_failures"); err == nil {
		t.Fatal("an update without any release")
	}
	v := srv.NewVendor(t, ten.ID, key)
	v.Release(t, prod.ID, "2.0.0", []byte("firmware 2.0.0"))
	v.Release(t, prod.ID, "1.5.0", []byte("firmware 1.5.0"))
	bad := v.Release(t, prod.ID, "3.0.0", []byte("firmware 3.0.0"))
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/artifacts/" + bad + "/invalidate", Key: key,
		Body: map[string]any{"reason": "bad"}})
	detail, err := updater.UpdateDevice(ctx, "system:detect", ten.ID, dev, "auth_failures")
	if err != nil || !strings.Contains(detail, "version 2.0.0") {
		t.Fatalf("update: %q %v", detail, err)
	}
	var list struct{ Items []model.Campaign }
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: testserver.APIPrefix + "/campaigns", Key: key}).Into(t, &list)
	if len(list.Items) != 1 || list.Items[0].Total != 1 || list.Items[0].RequireConsent || list.Items[0].Version != "2.0.0" {
		t.Fatalf("campaigns: %+v", list.Items)
	}
	testserver.Eventually(t, 10*time.Second, func() bool {
		as, err := srv.Platform.Store.GetAssignment(ctx, ten.ID, dev)
		return err == nil && as.Version == "2.0.0" && as.CampaignID == list.Items[0].ID
	}, "the device is told to install 2.0.0")
}
