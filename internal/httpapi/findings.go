package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/steward-iot/steward/internal/alarm"
	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/defender"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/netpolicy"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/vuln"
)

// Security are the security engine's services behind the vulnerability
// (vulns.go), network policy (netpolicy.go) and findings routes.
type Security struct {
	Vulns    *vuln.Service
	Policy   *netpolicy.Service
	Defender *defender.Engine
	// Alarms keeps behaviour alarms (optional: no alarm routes without it).
	Alarms *alarm.Service
}

// routesSecurity registers the security engine's routes when the
// platform provides it.
func (a *API) routesSecurity() {
	if a.Security.Defender == nil || a.Security.Vulns == nil || a.Security.Policy == nil {
		return
	}
	a.routesVulns()
	a.routesNetPolicy()
	a.routesFindings()
	if a.Security.Alarms != nil {
		a.routesAlarms()
	}
}

// secErr turns the security engine's refusals into problem answers.
func secErr(err error) error {
	var vi *vuln.InputError
	var ni *netpolicy.InputError
	var di *defender.InvalidError
	var uc *defender.UnknownCheckError
	switch {
	case errors.As(err, &vi):
		return huma.Error422UnprocessableEntity(vi.Error(), &huma.ErrorDetail{Location: "body", Message: vi.Error()})
	case errors.As(err, &ni):
		return huma.Error422UnprocessableEntity(ni.Error(), &huma.ErrorDetail{Location: "body", Message: ni.Error()})
	case errors.As(err, &di):
		return huma.Error422UnprocessableEntity(di.Error(), &huma.ErrorDetail{Location: "body." + di.Field, Message: di.Message})
	case errors.As(err, &uc):
		return huma.Error422UnprocessableEntity(uc.Error()+"; GET "+Prefix+"/security/checks lists them",
			&huma.ErrorDetail{Location: "body.checks", Message: uc.Error()})
	case errors.Is(err, vuln.ErrTooManyFirmware):
		return huma.Error422UnprocessableEntity(err.Error())
	}
	return err
}

type findingListIn struct {
	PageIn
	Status      string `query:"status" enum:"open,resolved,all" default:"open" doc:"open (default), resolved or all."`
	Check       string `query:"check" maxLength:"128" doc:"Only findings of this check."`
	ResourceID  string `query:"resource_id" maxLength:"128" doc:"Only findings about this resource (device, key …)."`
	MinSeverity string `query:"min_severity" enum:"critical,high,medium,low,info" doc:"Only findings at least this severe."`
	Suppressed  string `query:"suppressed" enum:"exclude,only,include" default:"exclude" doc:"Leave suppressed findings out (default), list only them, or include them."`
}

type findingList struct {
	Body struct {
		Items      []model.Finding `json:"items"`
		NextCursor string          `json:"next_cursor,omitempty"`
	}
}

type findingIDIn struct {
	FindingID string `path:"findingID" maxLength:"64"`
}

type findingOut struct{ Body *model.Finding }

type suppressIn struct {
	FindingID string `path:"findingID" maxLength:"64"`
	Body      struct {
		Reason string    `json:"reason" minLength:"1" maxLength:"1024" doc:"Why the finding is accepted; kept in the audit trail."`
		Until  time.Time `json:"until" doc:"When the suppression ends (RFC 3339, at most a year ahead)."`
	}
}

type runIn struct {
	Body struct {
		Checks []string `json:"checks,omitempty" maxItems:"64" doc:"Checks to run (IDs from GET /security/checks); empty = all."`
	}
}

type runOut struct{ Body *defender.RunReport }

type checksOut struct {
	Body struct {
		Items []defender.CheckInfo `json:"items"`
	}
}

type settingsOut struct{ Body model.SecuritySettings }

type settingsIn struct {
	Body struct {
		StaleAfterDays     int `json:"stale_after_days" minimum:"1" maximum:"3650" doc:"A device not seen this long is a finding."`
		MaxTenantAdminKeys int `json:"max_tenant_admin_keys" minimum:"1" maximum:"1000" doc:"More active tenant-admin keys is a finding."`
		UnusedKeyDays      int `json:"unused_key_days" minimum:"1" maximum:"3650" doc:"A key without expiry unused this long is a finding."`
		FlowWindowHours    int `json:"flow_window_hours" minimum:"1" maximum:"2160" doc:"How long a reported flow counts; a deviation not seen again for this long resolves."`
		// Detection is optional so that clients that only set the audit
		// thresholds keep working; left out, it stays as it was.
		Detection *model.DetectionSettings `json:"detection,omitempty" doc:"Behaviour detection thresholds and automatic mitigations (docs/security.md); left out = unchanged."`
	}
}

func (a *API) routesFindings() {
	eng := a.Security.Defender
	reg(a, huma.Operation{OperationID: "listFindings", Method: http.MethodGet, Path: Prefix + "/findings",
		Summary: "List the tenant's security findings, newest first",
		Description: "Open findings that are not suppressed, unless the filters say otherwise. Platform admins without " +
			TenantHeader + " list the platform's findings (platform-admin keys, the platform audit chain)."},
		access{perm: authz.DevicesRead},
		func(ctx context.Context, in *findingListIn) (*findingList, error) {
			q := model.FindingQuery{Check: in.Check, ResourceID: in.ResourceID, MinSeverity: model.Severity(in.MinSeverity), Now: eng.Now()}
			if in.Status != "all" {
				q.Status = model.FindingStatus(in.Status)
			}
			switch in.Suppressed {
			case "exclude":
				q.Suppressed = new(bool)
			case "only":
				t := true
				q.Suppressed = &t
			}
			items, next, err := a.Store.ListFindings(ctx, tenantOf(ctx), q, store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, err
			}
			out := &findingList{}
			out.Body.Items, out.Body.NextCursor = nonNil(items), next
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "getFinding", Method: http.MethodGet, Path: Prefix + "/findings/{findingID}",
		Summary: "Get a finding with its evidence"}, access{perm: authz.DevicesRead},
		func(ctx context.Context, in *findingIDIn) (*findingOut, error) {
			f, err := a.Store.GetFinding(ctx, tenantOf(ctx), in.FindingID)
			if err != nil {
				return nil, notFoundAs(err, "finding", in.FindingID)
			}
			return &findingOut{f}, nil
		})
	reg(a, huma.Operation{OperationID: "suppressFinding", Method: http.MethodPut, Path: Prefix + "/findings/{findingID}/suppression",
		Summary: "Suppress a finding until a time, with a reason",
		Description: "A suppressed finding is left out of lists (see suppressed=) until the suppression expires; it keeps " +
			"being checked, and stays suppressed if it resolves and reopens meanwhile."},
		access{perm: authz.DevicesWrite},
		func(ctx context.Context, in *suppressIn) (*findingOut, error) {
			f, err := eng.Suppress(ctx, authz.From(ctx).Actor(), tenantOf(ctx), in.FindingID, in.Body.Until, in.Body.Reason)
			if err != nil {
				return nil, notFoundAs(secErr(err), "finding", in.FindingID)
			}
			return &findingOut{f}, nil
		})
	reg(a, huma.Operation{OperationID: "unsuppressFinding", Method: http.MethodDelete, Path: Prefix + "/findings/{findingID}/suppression",
		Summary: "Lift a finding's suppression"}, access{perm: authz.DevicesWrite},
		func(ctx context.Context, in *findingIDIn) (*findingOut, error) {
			f, err := eng.Unsuppress(ctx, authz.From(ctx).Actor(), tenantOf(ctx), in.FindingID)
			if err != nil {
				return nil, notFoundAs(secErr(err), "finding", in.FindingID)
			}
			return &findingOut{f}, nil
		})
	reg(a, huma.Operation{OperationID: "runSecurityChecks", Method: http.MethodPost, Path: Prefix + "/findings/run",
		Summary: "Run the audit checks now",
		Description: "Runs every check (or the ones named) for the tenant and reconciles its findings: new ones open, ones " +
			"that no longer fire resolve. The checks also run on a schedule (security.audit_interval). Platform admins " +
			"without " + TenantHeader + " run the platform's checks."},
		access{perm: authz.DevicesWrite},
		func(ctx context.Context, in *runIn) (*runOut, error) {
			rep, err := eng.Run(ctx, authz.From(ctx).Actor(), tenantOf(ctx), in.Body.Checks)
			if err != nil {
				return nil, secErr(err)
			}
			return &runOut{rep}, nil
		})
	reg(a, huma.Operation{OperationID: "listSecurityChecks", Method: http.MethodGet, Path: Prefix + "/security/checks",
		Summary: "List the audit checks"}, access{perm: authz.DevicesRead},
		func(ctx context.Context, _ *struct{}) (*checksOut, error) {
			out := &checksOut{}
			out.Body.Items = nonNil(eng.Checks())
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "getSecuritySettings", Method: http.MethodGet, Path: Prefix + "/security/settings",
		Summary: "The tenant's audit check settings"}, access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, _ *struct{}) (*settingsOut, error) {
			s, err := a.Store.GetSecuritySettings(ctx, tenantOf(ctx))
			if err != nil {
				return nil, err
			}
			return &settingsOut{s}, nil
		})
	reg(a, huma.Operation{OperationID: "putSecuritySettings", Method: http.MethodPut, Path: Prefix + "/security/settings",
		Summary: "Set the tenant's audit check settings", Description: "Tenant admins (keys:write) only."},
		access{perm: authz.KeysWrite, tenant: true},
		func(ctx context.Context, in *settingsIn) (*settingsOut, error) {
			det, err := a.detectionSettings(ctx, in.Body.Detection)
			if err != nil {
				return nil, err
			}
			s, err := eng.SetSettings(ctx, authz.From(ctx).Actor(), tenantOf(ctx), model.SecuritySettings{
				StaleAfterDays: in.Body.StaleAfterDays, MaxTenantAdminKeys: in.Body.MaxTenantAdminKeys,
				UnusedKeyDays: in.Body.UnusedKeyDays, FlowWindowHours: in.Body.FlowWindowHours, Detection: det})
			if err != nil {
				return nil, secErr(err)
			}
			a.detectionChanged(ctx, tenantOf(ctx))
			return &settingsOut{s}, nil
		})
}
