package sim

import (
	"encoding/json"
	mrand "math/rand/v2"
	"time"
)

// Simulated devices take part in update campaigns: on d/{id}/ota/assignment
// they walk through the steps a real agent reports (notified, downloading,
// verifying, installing, rebooting) and end succeeded on the new version —
// or, for a flaky device now and then, rolled back after a failed health
// check. They do not download or verify the image (the real agent does,
// see internal/agent): the simulation is about the fleet's behaviour.

// assignment is the payload of d/{id}/ota/assignment.
type assignment struct {
	ArtifactID string `json:"artifact_id"`
	Version    string `json:"version"`
	CampaignID string `json:"campaign_id"`
	Cancelled  bool   `json:"cancelled"`
}

// updateStep is how long each simulated step takes.
const updateStep = 200 * time.Millisecond

func (s *Sim) onAssignment(d *device, payload []byte) {
	var a assignment
	if json.Unmarshal(payload, &a) != nil || a.Cancelled || a.ArtifactID == "" || a.Version == "" || a.Version == s.firmware(d) {
		return
	}
	if !d.updating.CompareAndSwap(false, true) {
		return // one update at a time; the assignment is sent again on reconnect
	}
	go func() {
		defer d.updating.Store(false)
		running := s.firmware(d)
		report := func(status, errText string) bool {
			c := d.conn.Load()
			if c == nil {
				return false
			}
			r := map[string]any{"status": status, "artifact_id": a.ArtifactID, "campaign_id": a.CampaignID, "version": a.Version,
				"running_version": running, "at": time.Now().UTC()}
			if errText != "" {
				r["error"] = errText
			}
			body, _ := json.Marshal(r)
			if c.publish("d/"+d.id+"/ota/status", body, 1, s.nextPID(d)) != nil {
				return false
			}
			s.st.sent.Add(1)
			return true
		}
		for _, st := range []string{"notified", "downloading", "verifying", "installing", "rebooting"} {
			if !report(st, "") {
				return
			}
			time.Sleep(updateStep)
		}
		if d.behaviour == Flaky && mrand.IntN(5) == 0 {
			report("rolled_back", "health check of "+a.Version+" failed: simulated")
			return
		}
		d.firmware.Store(&a.Version)
		running = a.Version
		report("succeeded", "")
		if c := d.conn.Load(); c != nil {
			if c.publish("d/"+d.id+"/twin/reported", s.reported(d), 1, s.nextPID(d)) == nil {
				s.st.sent.Add(1)
			}
		}
	}()
}

// firmware is the version the device runs now.
func (s *Sim) firmware(d *device) string {
	if v := d.firmware.Load(); v != nil {
		return *v
	}
	if d.behaviour == Outdated {
		return s.cfg.OldFirmware
	}
	return s.cfg.Firmware
}
