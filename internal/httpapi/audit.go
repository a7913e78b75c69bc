package httpapi

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/steward-iot/steward/internal/auditlog"
	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
)

type auditListIn struct {
	After int64 `query:"after" minimum:"0" doc:"Return records with a sequence number above this."`
	Limit int   `query:"limit" minimum:"1" maximum:"1000" default:"100"`
}

type auditList struct {
	Body struct {
		Items []model.AuditRecord `json:"items"`
		Next  int64               `json:"next_after,omitempty" doc:"Pass as after to read on; absent at the end."`
	}
}

type auditVerifyOut struct {
	Body struct {
		OK     bool                   `json:"ok"`
		Chains []auditlog.ChainReport `json:"chains"`
	}
}

func (a *API) routesAudit() {
	reg(a, huma.Operation{OperationID: "listAudit", Method: http.MethodGet, Path: Prefix + "/audit",
		Summary:     "Read the tenant's audit trail, oldest first",
		Description: "Platform admins without " + TenantHeader + " read the platform chain."},
		access{perm: authz.AuditRead},
		func(ctx context.Context, in *auditListIn) (*auditList, error) {
			items, err := a.Store.ListAudit(ctx, tenantOf(ctx), in.After, in.Limit)
			if err != nil {
				return nil, err
			}
			out := &auditList{}
			out.Body.Items = nonNil(items)
			if len(items) == in.Limit {
				out.Body.Next = items[len(items)-1].Seq
			}
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "verifyAudit", Method: http.MethodGet, Path: Prefix + "/audit/verify",
		Summary:     "Check the hash chain of the tenant's audit trail",
		Description: "Platform admins without " + TenantHeader + " check every chain."},
		access{perm: authz.AuditRead},
		func(ctx context.Context, _ *struct{}) (*auditVerifyOut, error) {
			var only *string
			if p := authz.From(ctx); !p.Platform() || p.TenantID != "" {
				t := tenantOf(ctx)
				only = &t
			}
			reps, err := auditlog.Verify(ctx, a.Store, only, nil)
			if err != nil {
				return nil, err
			}
			out := &auditVerifyOut{}
			out.Body.OK = true
			out.Body.Chains = nonNil(reps)
			for _, r := range reps {
				out.Body.OK = out.Body.OK && r.OK
			}
			return out, nil
		})
}
