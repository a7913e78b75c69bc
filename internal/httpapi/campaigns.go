package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/ota"
	"github.com/steward-iot/steward/internal/store"
)

type campaignCreateIn struct {
	Body struct {
		Name            string                   `json:"name" minLength:"1" maxLength:"200"`
		ArtifactID      string                   `json:"artifact_id" minLength:"1" maxLength:"64" doc:"The signed, uploaded image to roll out."`
		Query           model.DeviceQuery        `json:"query" doc:"Which devices: any fleet query; group_id targets a group. Only devices of the artifact's products in a state that can update are taken."`
		Dynamic         bool                     `json:"dynamic,omitempty" doc:"Devices that come to match later join the wave in progress; the campaign stays open until cancelled."`
		Canary          int                      `json:"canary,omitempty" minimum:"0" maximum:"100000" doc:"Devices in the canary step (0 = none)."`
		WaveSize        int                      `json:"wave_size,omitempty" minimum:"0" maximum:"100000" doc:"Devices per wave (default 100)."`
		WaveInterval    string                   `json:"wave_interval,omitempty" maxLength:"32" doc:"Least time between two waves, a Go duration (e.g. 30m); default 0." example:"30m"`
		SuccessRatio    *float64                 `json:"success_ratio,omitempty" minimum:"0" maximum:"1" doc:"Share of a wave that must succeed before the next starts (default 0.9)."`
		MaxFailureRatio *float64                 `json:"max_failure_ratio,omitempty" minimum:"0" maximum:"1" doc:"Share of failed or rolled back devices (of those told so far) above which it stops (default 0.1)."`
		PauseOnFailure  bool                     `json:"pause_on_failure,omitempty" doc:"Pause instead of aborting when the failure threshold is crossed."`
		Window          *model.MaintenanceWindow `json:"maintenance_window,omitempty" doc:"Devices are told only inside this window."`
		RequireConsent  *bool                    `json:"require_consent,omitempty" doc:"The owner confirms each device's update first (default: true for household tenants)."`
	}
}

type campaignOut struct{ Body model.Campaign }

type campaignIDIn struct {
	CampaignID string `path:"campaignID" maxLength:"64"`
}

type campaignReasonIn struct {
	CampaignID string `path:"campaignID" maxLength:"64"`
	Body       struct {
		Reason string `json:"reason,omitempty" maxLength:"500"`
	}
}

type campaignList struct {
	Body struct {
		Items      []model.Campaign `json:"items"`
		NextCursor string           `json:"next_cursor,omitempty"`
	}
}

type campaignDevicesIn struct {
	CampaignID string             `path:"campaignID" maxLength:"64"`
	Status     model.UpdateStatus `query:"status" maxLength:"32" doc:"Only devices with this status."`
	PageIn
}

type campaignDeviceList struct {
	Body struct {
		Items      []model.CampaignDevice `json:"items"`
		NextCursor string                 `json:"next_cursor,omitempty"`
	}
}

type consentIn struct {
	CampaignID string `path:"campaignID" maxLength:"64"`
	DeviceID   string `path:"deviceID" maxLength:"64"`
	Body       struct {
		Grant bool `json:"grant" doc:"true installs the update; false declines it for this release."`
	}
}

type campaignDeviceOut struct{ Body model.CampaignDevice }

type invalidateIn struct {
	ArtifactID string `path:"artifactID" maxLength:"64"`
	Body       struct {
		Reason string `json:"reason" minLength:"1" maxLength:"500" doc:"Why the release is bad."`
	}
}

type invalidateOut struct{ Body ota.InvalidationResult }

// campaignErr maps the campaign errors onto answers.
func campaignErr(err error, what, id string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ota.ErrCampaignState), errors.Is(err, ota.ErrInvalidated), errors.Is(err, ota.ErrNoConsentAsked):
		return huma.Error409Conflict(err.Error())
	case errors.Is(err, store.ErrStale):
		return huma.Error409Conflict("the campaign changed at the same time; read it again and retry")
	}
	return otaMetaErr(notFoundAs(err, what, id), id)
}

func (a *API) routesCampaigns() {
	if a.OTA.Artifacts == nil {
		return
	}
	svc := a.OTA.Artifacts
	tag := []string{"campaigns"}
	reg(a, huma.Operation{OperationID: "createCampaign", Method: http.MethodPost, Path: Prefix + "/campaigns", Tags: tag,
		Summary: "Roll an image out to a fleet", DefaultStatus: http.StatusCreated,
		Description: "Targets every device of the query at once (however large the fleet), then a canary step, then waves. " +
			"The next wave starts when success_ratio of the wave in progress succeeded and wave_interval passed; the campaign " +
			"aborts (or pauses) when more than max_failure_ratio of the devices told so far failed or rolled back."},
		access{perm: authz.DevicesLifecycle, tenant: true},
		func(ctx context.Context, in *campaignCreateIn) (*campaignOut, error) {
			b := in.Body
			var interval time.Duration
			if b.WaveInterval != "" {
				d, err := time.ParseDuration(b.WaveInterval)
				if err != nil {
					return nil, huma.Error422UnprocessableEntity("wave_interval: "+err.Error(),
						&huma.ErrorDetail{Location: "body.wave_interval", Message: "want a duration such as 30m or 2h"})
				}
				interval = d
			}
			c, err := svc.CreateCampaign(ctx, authz.From(ctx).Actor(), tenantOf(ctx), ota.CampaignInput{Name: b.Name, ArtifactID: b.ArtifactID,
				Query: b.Query, Dynamic: b.Dynamic, Canary: b.Canary, WaveSize: b.WaveSize, WaveInterval: interval, SuccessRatio: b.SuccessRatio,
				MaxFailureRatio: b.MaxFailureRatio, PauseOnFailure: b.PauseOnFailure, Window: b.Window, RequireConsent: b.RequireConsent})
			if err != nil {
				return nil, campaignErr(err, "artifact", b.ArtifactID)
			}
			return &campaignOut{Body: *c}, nil
		})
	reg(a, huma.Operation{OperationID: "listCampaigns", Method: http.MethodGet, Path: Prefix + "/campaigns", Tags: tag,
		Summary: "List campaigns, newest first"},
		access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *PageIn) (*campaignList, error) {
			items, next, err := a.Store.ListCampaigns(ctx, tenantOf(ctx), store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, err
			}
			out := &campaignList{}
			out.Body.Items, out.Body.NextCursor = items, next
			if out.Body.Items == nil {
				out.Body.Items = []model.Campaign{}
			}
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "getCampaign", Method: http.MethodGet, Path: Prefix + "/campaigns/{campaignID}", Tags: tag,
		Summary: "Show a campaign with its devices per status"},
		access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *campaignIDIn) (*campaignOut, error) {
			c, err := svc.GetCampaign(ctx, tenantOf(ctx), in.CampaignID)
			if err != nil {
				return nil, campaignErr(err, "campaign", in.CampaignID)
			}
			return &campaignOut{Body: *c}, nil
		})
	act := func(opID, verb, summary, desc string, fn func(ctx context.Context, actor, tenantID, id, reason string) (*model.Campaign, error)) {
		reg(a, huma.Operation{OperationID: opID, Method: http.MethodPost, Path: Prefix + "/campaigns/{campaignID}/" + verb, Tags: tag,
			Summary: summary, Description: desc},
			access{perm: authz.DevicesLifecycle, tenant: true},
			func(ctx context.Context, in *campaignReasonIn) (*campaignOut, error) {
				c, err := fn(ctx, authz.From(ctx).Actor(), tenantOf(ctx), in.CampaignID, in.Body.Reason)
				if err != nil {
					return nil, campaignErr(err, "campaign", in.CampaignID)
				}
				return &campaignOut{Body: *c}, nil
			})
	}
	act("pauseCampaign", "pause", "Pause a campaign (devices already told go on)", "", svc.PauseCampaign)
	act("resumeCampaign", "resume", "Resume a paused campaign",
		"When the failure threshold is crossed (the failure gate paused it, or would at once), resuming re-arms the gates: "+
			"the failures and devices told so far become a baseline (gate_failed, gate_told) the failure gate subtracts, and the wave "+
			"in progress (gate_wave) is taken as passed, so the next wave starts after wave_interval. A campaign paused by hand while "+
			"healthy resumes as it was.", func(ctx context.Context, actor, tenantID, id, _ string) (*model.Campaign, error) {
			return svc.ResumeCampaign(ctx, actor, tenantID, id)
		})
	act("cancelCampaign", "cancel", "Cancel a campaign: unfinished devices are cancelled and their assignments withdrawn", "", svc.CancelCampaign)
	reg(a, huma.Operation{OperationID: "listCampaignDevices", Method: http.MethodGet, Path: Prefix + "/campaigns/{campaignID}/devices", Tags: tag,
		Summary: "A campaign's devices with their update status, by device ID"},
		access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *campaignDevicesIn) (*campaignDeviceList, error) {
			if in.Status != "" && !in.Status.Valid() {
				return nil, huma.Error422UnprocessableEntity("status: not an update status",
					&huma.ErrorDetail{Location: "query.status", Message: "want pending, notified, downloading, verifying, installing, rebooting, succeeded, failed, rolled_back, cancelled or refused"})
			}
			if _, err := a.Store.GetCampaign(ctx, tenantOf(ctx), in.CampaignID); err != nil {
				return nil, campaignErr(err, "campaign", in.CampaignID)
			}
			items, next, err := a.Store.ListCampaignDevices(ctx, tenantOf(ctx), in.CampaignID, in.Status,
				store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, err
			}
			out := &campaignDeviceList{}
			out.Body.Items, out.Body.NextCursor = items, next
			if out.Body.Items == nil {
				out.Body.Items = []model.CampaignDevice{}
			}
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "consentUpdate", Method: http.MethodPost, Path: Prefix + "/campaigns/{campaignID}/devices/{deviceID}/consent",
		Tags: tag, Summary: "Confirm or decline an update the owner is asked about",
		Description: "Only while the device's consent is asked. A yes tells the device at once (inside the maintenance window); " +
			"a no is recorded and the next release asks again."},
		access{perm: authz.DevicesLifecycle, tenant: true},
		func(ctx context.Context, in *consentIn) (*campaignDeviceOut, error) {
			cd, err := svc.Consent(ctx, authz.From(ctx).Actor(), tenantOf(ctx), in.CampaignID, in.DeviceID, in.Body.Grant)
			if err != nil {
				return nil, campaignErr(err, "device in campaign", in.DeviceID)
			}
			return &campaignDeviceOut{Body: *cd}, nil
		})
	reg(a, huma.Operation{OperationID: "invalidateArtifact", Method: http.MethodPost, Path: Prefix + "/artifacts/{artifactID}/invalidate",
		Tags: []string{"artifacts"}, Summary: "Mark a release bad",
		Description: "Cancels its open campaigns, withdraws unfinished assignments, refuses it to every device from now on, and " +
			"returns how many devices already run it with a fleet query for a follow-up campaign."},
		access{perm: authz.ProductsWrite, tenant: true},
		func(ctx context.Context, in *invalidateIn) (*invalidateOut, error) {
			res, err := svc.Invalidate(ctx, authz.From(ctx).Actor(), tenantOf(ctx), in.ArtifactID, in.Body.Reason)
			if err != nil {
				return nil, campaignErr(err, "artifact", in.ArtifactID)
			}
			return &invalidateOut{Body: *res}, nil
		})
}
