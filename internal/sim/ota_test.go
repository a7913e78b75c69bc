package sim

import (
	"context"
	"crypto/x509"
	"net/http"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/config"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// TestSimTakesPartInCampaigns: simulated devices hear of a campaign's
// assignments over MQTT, report each step, and the campaign completes
// wave by wave with every device on the new version.
func TestSimTakesPartInCampaigns(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{Configure: func(c *config.Config) { c.MQTT.Listen = "127.0.0.1:0" }})
	ten := srv.CreateTenant(t, "sim-ota")
	prod := srv.CreateProduct(t, ten.ID)
	tokens, err := APITokens(srv.URL, srv.AdminKey, ten.ID, prod.ID)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(srv.Platform.Identity.CA().Anchor())
	const n = 8
	s, err := New(Config{Devices: n, ESTURL: srv.Platform.ESTURL(), Tokens: tokens, MQTT: []string{srv.Platform.MQTTAddr(broker.ListenerCert)},
		Roots: roots, Interval: time.Second, Mix: Mix{WellBehaved: 1}, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testserver.Eventually(t, 30*time.Second, func() bool { return s.Stats().Online == n }, "every device online")

	vendor := srv.NewVendor(t, ten.ID, ten.Admin.Secret)
	art := vendor.Release(t, prod.ID, "2.0.0", []byte("simulated firmware 2.0.0"))
	var c model.Campaign
	srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/campaigns", Key: ten.Admin.Secret,
		Body: map[string]any{"name": "sim rollout", "artifact_id": art, "query": map[string]any{"product_id": prod.ID},
			"canary": 2, "wave_size": 3, "success_ratio": 1.0}}).Into(t, &c)
	if c.Total != n {
		t.Fatalf("campaign targets %d devices, want %d", c.Total, n)
	}
	id := c.ID
	testserver.Eventually(t, 60*time.Second, func() bool {
		c = model.Campaign{}
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: testserver.APIPrefix + "/campaigns/" + id,
			Key: ten.Admin.Secret}).Into(t, &c)
		return c.State == model.CampaignCompleted
	}, "the campaign completes")
	if c.Counts[model.UpdateSucceeded] != n || c.Wave != 3 || len(c.Counts) != 1 {
		t.Fatalf("completed campaign: %+v", c)
	}
	for _, id := range s.DeviceIDs()[WellBehaved] {
		var d model.Device
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: testserver.APIPrefix + "/devices/" + id,
			Key: ten.Admin.Secret}).Into(t, &d)
		if d.FirmwareVersion != "2.0.0" {
			t.Errorf("device %s runs %q", id, d.FirmwareVersion)
		}
	}
}
