package web

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

// The device page's update history: what happened to the device's
// firmware updates, newest first, in plain words. It is read from the
// device's audit trail (assignments outside campaigns, the device's own
// status reports, the owner's consent); a campaign's assignment is
// recorded once per wave, so a device in a campaign starts its history at
// its first report.

const (
	updateStepsShown   = 30
	updateAuditScanned = 1000 // audit records read at most to find them
)

// updateStep is one line of the history.
type updateStep struct {
	At         time.Time
	Text       string
	Detail     string // the device's error, when it gave one
	CampaignID string
	Failed     bool
}

// updateHistory reads the device's update steps, newest first.
func (d *Dashboard) updateHistory(ctx context.Context, tid, deviceID string, names *actors) ([]updateStep, error) {
	var out []updateStep
	var before int64
	for scanned := 0; scanned < updateAuditScanned && len(out) < updateStepsShown; {
		recs, err := d.Store.ListAuditByTarget(ctx, tid, deviceID, before, 200)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			if s, ok := describeUpdate(rec, names); ok && len(out) < updateStepsShown {
				out = append(out, s)
			}
		}
		if len(recs) < 200 {
			break
		}
		scanned += len(recs)
		before = recs[len(recs)-1].Seq
	}
	return out, nil
}

// describeUpdate says one audit record in plain words, if it is about an
// update (names may be nil: actors are then shown as recorded).
func describeUpdate(rec model.AuditRecord, names *actors) (updateStep, bool) {
	var s struct {
		Version    string             `json:"version"`
		Status     model.UpdateStatus `json:"status"`
		Detail     string             `json:"detail"`
		Running    string             `json:"running_version"`
		CampaignID string             `json:"campaign_id"`
		Consent    model.Consent      `json:"consent"`
	}
	if !strings.HasPrefix(rec.Action, "ota.") || json.Unmarshal(rec.Summary, &s) != nil {
		return updateStep{}, false
	}
	v := "version " + s.Version
	if s.Version == "" {
		v = "the update"
	}
	step := updateStep{At: rec.Time, CampaignID: s.CampaignID}
	switch rec.Action {
	case "ota.assign":
		who := rec.Actor
		if names != nil {
			who = names.Name(rec.Actor)
		}
		step.Text = "Update to " + v + " assigned by " + who + "."
	case "ota.consent":
		if s.Consent == model.ConsentGranted {
			step.Text = "The owner agreed to install " + v + "."
		} else {
			step.Text = "The owner declined " + v + "."
		}
	case "ota.device_status":
		step.Detail = s.Detail
		switch s.Status {
		case model.UpdatePending:
			step.Text = v + " is waiting for the device."
		case model.UpdateNotified:
			step.Text = "The device was told about " + v + "."
		case model.UpdateDownloading:
			step.Text = "Downloading " + v + "."
		case model.UpdateVerifying:
			step.Text = "Checking " + v + " before installing it."
		case model.UpdateInstalling:
			step.Text = "Installing " + v + "."
		case model.UpdateRebooting:
			step.Text = "Restarting into " + v + "."
		case model.UpdateSucceeded:
			step.Text = "Now runs " + v + "."
		case model.UpdateFailed:
			step.Text, step.Failed = "Could not install "+v+".", true
		case model.UpdateRolledBack:
			step.Text, step.Failed = "Went back from "+v, true
			if s.Running != "" {
				step.Text += " to version " + s.Running
			}
			step.Text += "."
		case model.UpdateCancelled:
			step.Text = "The update to " + v + " was cancelled."
		case model.UpdateRefused:
			step.Text, step.Failed = "The device refused "+v+".", true
		default:
			step.Text = v + ": " + updateLabel(s.Status) + "."
		}
	default:
		return updateStep{}, false
	}
	step.Text = strings.ToUpper(step.Text[:1]) + step.Text[1:]
	return step, true
}
