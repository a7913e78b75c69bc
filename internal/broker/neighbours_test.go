package broker_test

import (
	"net/http"
	"testing"
)

// TestNeighbourReports: a device's d/{id}/security/neighbours report is
// stored as the tenant's unmanaged neighbours; a bad one is refused with
// 0x99 and stores nothing.
func TestNeighbourReports(t *testing.T) {
	e := newEnv(t)
	dev := e.device(t)
	c := e.deviceV5(t, dev)
	topic := "d/" + dev.DeviceID + "/security/neighbours"
	c.mustPublish(t, topic, 1, `{"neighbours": [{"mac": "24:0a:c4:00:11:22", "ip": "192.168.1.20", "hostname": "plug", "source": "arp"}]}`)
	res, err := c.publish(t, topic, 1, `{"neighbours": [{"mac": "ff:ff:ff:ff:ff:ff", "source": "arp"}]}`)
	if err == nil && (res == nil || res.ReasonCode != 0x99) {
		t.Fatalf("a bad report was accepted: %+v", res)
	}
	items := e.must(t, http.StatusOK, http.MethodGet, api+"/neighbours", nil).Items()
	if len(items) != 1 || items[0]["mac"] != "24:0a:c4:00:11:22" || items[0]["reported_by"] != dev.DeviceID ||
		items[0]["vendor"] != "Espressif Inc." {
		t.Fatalf("neighbours: %v", items)
	}
}
