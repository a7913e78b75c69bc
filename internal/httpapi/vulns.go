package httpapi

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/vuln"
)

type sbomPutIn struct {
	ProductID       string `path:"productID" maxLength:"64"`
	FirmwareVersion string `path:"firmwareVersion" maxLength:"64" doc:"The firmware version the SBOM describes (as devices report it)."`
	RawBody         []byte `contentType:"application/json" doc:"The SBOM: CycloneDX JSON (or XML) or SPDX 2.x JSON."`
}

type sbomOut struct{ Body *vuln.SBOMResult }

type sbomIn struct {
	ProductID       string `path:"productID" maxLength:"64"`
	FirmwareVersion string `path:"firmwareVersion" maxLength:"64"`
}

type sbomGetOut struct{ Body *model.SBOM }

type sbomListIn struct {
	ProductID string `path:"productID" maxLength:"64"`
	PageIn
}

type sbomList struct {
	Body struct {
		Items      []model.SBOM `json:"items"`
		NextCursor string       `json:"next_cursor,omitempty"`
	}
}

type componentListIn struct {
	ProductID       string `path:"productID" maxLength:"64"`
	FirmwareVersion string `path:"firmwareVersion" maxLength:"64"`
	PageIn
}

type componentList struct {
	Body struct {
		Items      []model.SBOMComponent `json:"items"`
		NextCursor string                `json:"next_cursor,omitempty"`
	}
}

type advisoriesIn struct {
	RawBody []byte `contentType:"application/json" doc:"One OSV record (JSON object) or a list of them (JSON array)."`
}

type advisoriesOut struct{ Body *model.AdvisoryImport }

type advisoryList struct {
	Body struct {
		Items      []model.Advisory `json:"items"`
		NextCursor string           `json:"next_cursor,omitempty"`
	}
}

type advisoryIn struct {
	AdvisoryID string `path:"advisoryID" maxLength:"128" doc:"An advisory ID or an alias such as a CVE ID."`
}

type advisoryOut struct {
	Body struct {
		Items []model.Advisory `json:"items" doc:"Every record with this ID or alias."`
	}
}

type exposureIn struct {
	AdvisoryID string `path:"advisoryID" maxLength:"128"`
	PageIn
}

type exposureOut struct{ Body *vuln.Exposure }

type deviceVulnsIn struct {
	DeviceID string `path:"deviceID" maxLength:"64"`
}

type deviceVulnsOut struct{ Body *vuln.DeviceReport }

func (a *API) routesVulns() {
	v := a.Security.Vulns
	tag := []string{"vulnerabilities"}
	reg(a, huma.Operation{OperationID: "importSBOM", Method: http.MethodPut, Path: Prefix + "/products/{productID}/sboms/{firmwareVersion}",
		Summary: "Import the SBOM of a firmware version", Tags: tag, MaxBodyBytes: vuln.MaxSBOMBytes, SkipValidateBody: true,
		Description: "The body is the SBOM document itself: CycloneDX JSON (or XML) or SPDX 2.x JSON, at most 16 MiB. " +
			"It replaces an earlier SBOM of the version. Components are matched against advisories by package URL; " +
			"components without one are counted (components_without_purl) but cannot be matched. A document that is " +
			"malformed, too large or not an SBOM is refused and nothing changes."},
		access{perm: authz.ProductsWrite, tenant: true},
		func(ctx context.Context, in *sbomPutIn) (*sbomOut, error) {
			res, err := v.ImportSBOM(ctx, authz.From(ctx).Actor(), tenantOf(ctx), in.ProductID, in.FirmwareVersion, in.RawBody)
			if err != nil {
				return nil, notFoundAs(secErr(err), "product", in.ProductID)
			}
			return &sbomOut{res}, nil
		})
	reg(a, huma.Operation{OperationID: "listSBOMs", Method: http.MethodGet, Path: Prefix + "/products/{productID}/sboms",
		Summary: "List a product's SBOMs by firmware version", Tags: tag}, access{perm: authz.ProductsRead, tenant: true},
		func(ctx context.Context, in *sbomListIn) (*sbomList, error) {
			if _, err := a.Store.GetProduct(ctx, tenantOf(ctx), in.ProductID); err != nil {
				return nil, notFoundAs(err, "product", in.ProductID)
			}
			items, next, err := a.Store.ListSBOMs(ctx, tenantOf(ctx), in.ProductID, store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, err
			}
			out := &sbomList{}
			out.Body.Items, out.Body.NextCursor = nonNil(items), next
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "getSBOM", Method: http.MethodGet, Path: Prefix + "/products/{productID}/sboms/{firmwareVersion}",
		Summary: "Get the SBOM summary of a firmware version", Tags: tag}, access{perm: authz.ProductsRead, tenant: true},
		func(ctx context.Context, in *sbomIn) (*sbomGetOut, error) {
			b, err := a.Store.GetSBOM(ctx, tenantOf(ctx), in.ProductID, in.FirmwareVersion)
			if err != nil {
				return nil, notFoundAs(err, "SBOM of firmware", in.FirmwareVersion)
			}
			return &sbomGetOut{b}, nil
		})
	reg(a, huma.Operation{OperationID: "listSBOMComponents", Method: http.MethodGet,
		Path:    Prefix + "/products/{productID}/sboms/{firmwareVersion}/components",
		Summary: "List the components of a firmware version's SBOM", Tags: tag}, access{perm: authz.ProductsRead, tenant: true},
		func(ctx context.Context, in *componentListIn) (*componentList, error) {
			items, next, err := a.Store.ListSBOMComponents(ctx, tenantOf(ctx), in.ProductID, in.FirmwareVersion,
				store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, notFoundAs(err, "SBOM of firmware", in.FirmwareVersion)
			}
			out := &componentList{}
			out.Body.Items, out.Body.NextCursor = nonNil(items), next
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "deleteSBOM", Method: http.MethodDelete, Path: Prefix + "/products/{productID}/sboms/{firmwareVersion}",
		Summary: "Delete the SBOM of a firmware version", Tags: tag, DefaultStatus: http.StatusNoContent},
		access{perm: authz.ProductsWrite, tenant: true},
		func(ctx context.Context, in *sbomIn) (*struct{}, error) {
			return nil, notFoundAs(v.DeleteSBOM(ctx, authz.From(ctx).Actor(), tenantOf(ctx), in.ProductID, in.FirmwareVersion),
				"SBOM of firmware", in.FirmwareVersion)
		})

	reg(a, huma.Operation{OperationID: "importAdvisories", Method: http.MethodPost, Path: Prefix + "/advisories",
		Summary: "Import OSV advisories", Tags: tag, MaxBodyBytes: 8 << 20, SkipValidateBody: true,
		Description: "The body is one OSV record or a JSON list of them (at most 8 MiB; import whole exports offline with " +
			"`steward vuln import`). A record replaces a stored one with the same ID only when its modified time is newer. " +
			"A tenant key imports the tenant's own advisories; a platform admin without " + TenantHeader + " imports " +
			"platform-wide advisories every tenant sees. Any bad record refuses the whole body."},
		access{perm: authz.ProductsWrite},
		func(ctx context.Context, in *advisoriesIn) (*advisoriesOut, error) {
			parsed, err := vuln.ParseAdvisories(in.RawBody)
			if err != nil {
				return nil, secErr(err)
			}
			res, err := v.ImportAdvisories(ctx, authz.From(ctx).Actor(), tenantOf(ctx), parsed)
			if err != nil {
				return nil, secErr(err)
			}
			return &advisoriesOut{res}, nil
		})
	reg(a, huma.Operation{OperationID: "listAdvisories", Method: http.MethodGet, Path: Prefix + "/advisories",
		Summary: "List the advisories the tenant sees (platform-wide and its own)", Tags: tag}, access{perm: authz.DevicesRead},
		func(ctx context.Context, in *PageIn) (*advisoryList, error) {
			items, next, err := a.Store.ListAdvisories(ctx, tenantOf(ctx), store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, err
			}
			out := &advisoryList{}
			out.Body.Items, out.Body.NextCursor = nonNil(items), next
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "getAdvisory", Method: http.MethodGet, Path: Prefix + "/advisories/{advisoryID}",
		Summary: "Get an advisory by ID or alias (e.g. a CVE), with its OSV record", Tags: tag}, access{perm: authz.DevicesRead},
		func(ctx context.Context, in *advisoryIn) (*advisoryOut, error) {
			items, err := a.Store.GetAdvisories(ctx, tenantOf(ctx), in.AdvisoryID)
			if err != nil {
				return nil, notFoundAs(err, "advisory", in.AdvisoryID)
			}
			out := &advisoryOut{}
			out.Body.Items = items
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "listExposedDevices", Method: http.MethodGet, Path: Prefix + "/advisories/{advisoryID}/devices",
		Summary: "Which of the tenant's devices an advisory (or CVE) affects", Tags: tag,
		Description: "Matches the SBOMs of the firmware versions the tenant's devices run against the advisory. Lists the " +
			"affected firmware versions with the affected packages, the package version that fixes each, the lowest newer " +
			"firmware version of the product that is not affected, and whether a campaign rolls it out (rollout: null until " +
			"OTA campaigns exist); items are the devices, a page at a time."},
		access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *exposureIn) (*exposureOut, error) {
			res, err := v.Exposure(ctx, tenantOf(ctx), in.AdvisoryID, store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, notFoundAs(secErr(err), "advisory", in.AdvisoryID)
			}
			return &exposureOut{res}, nil
		})
	reg(a, huma.Operation{OperationID: "getDeviceVulnerabilities", Method: http.MethodGet, Path: Prefix + "/devices/{deviceID}/vulnerabilities",
		Summary: "Which advisories affect a device", Tags: tag,
		Description: "Matches the SBOM of the device's firmware version against the advisories the tenant sees, most severe " +
			"first, each with the affected packages, fixed package versions, the lowest newer firmware version without it " +
			"and its rollout."},
		access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *deviceVulnsIn) (*deviceVulnsOut, error) {
			rep, err := v.DeviceVulnerabilities(ctx, tenantOf(ctx), in.DeviceID)
			if err != nil {
				return nil, notFoundAs(err, "device", in.DeviceID)
			}
			return &deviceVulnsOut{rep}, nil
		})
}
