package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/ota"
	"github.com/steward-iot/steward/internal/ota/tufmeta"
)

type otaSignedIn struct {
	RawBody []byte `contentType:"application/json" doc:"Signed TUF metadata (JSON), as written by steward ota."`
}

// otaSignedOut answers with a signed document exactly as stored.
type otaSignedOut struct {
	ContentType string `header:"Content-Type"`
	Body        []byte
}

type vendorRootOut struct{ Body model.VendorRoot }
type vendorTargetsOut struct{ Body model.VendorTargets }

type otaAssignIn struct {
	DeviceID string `path:"deviceID" maxLength:"64"`
	Body     struct {
		ArtifactID string `json:"artifact_id" minLength:"1" maxLength:"64" doc:"The uploaded artifact the device should install; the vendor's targets must list it."`
	}
}

type assignmentOut struct{ Body model.Assignment }

type otaDeviceIn struct {
	DeviceID string `path:"deviceID" maxLength:"64"`
}

type otaBundleIn struct {
	DeviceID          string `path:"deviceID" maxLength:"64"`
	VendorRootVersion int64  `query:"vendor_root_version" minimum:"0" doc:"The vendor root version the device trusts; newer roots are included."`
}

type otaBundleOut struct {
	Body struct {
		tufmeta.Bundle
		Assignment model.Assignment `json:"assignment"`
	}
}

// otaMetaErr maps refused metadata onto 422 with the reason.
func otaMetaErr(err error, id string) error {
	var me *ota.MetadataError
	switch {
	case errors.As(err, &me):
		return huma.Error422UnprocessableEntity(me.Error(), &huma.ErrorDetail{Location: "body", Message: me.Error()})
	case errors.Is(err, ota.ErrNoDirector):
		return huma.Error503ServiceUnavailable(err.Error())
	}
	return otaErr(err, id)
}

func (a *API) routesOTAMetadata() {
	svc := a.OTA.Artifacts
	tag := []string{"ota"}
	const maxMeta = tufmeta.MaxTargetsBytes
	reg(a, huma.Operation{OperationID: "putVendorRoot", Method: http.MethodPut, Path: Prefix + "/ota/vendor/root", Tags: tag,
		Summary: "Store the vendor's root metadata (first one or the next rotation)", MaxBodyBytes: tufmeta.MaxRootBytes, SkipValidateBody: true,
		Description: "A TUF root naming the vendor's root and targets keys and thresholds, signed offline with `steward ota root`. " +
			"The first root must be signed by its own root keys; each later one must be the next version, signed by a threshold of " +
			"the previous root's keys and of its own."},
		access{perm: authz.ProductsWrite, tenant: true},
		func(ctx context.Context, in *otaSignedIn) (*vendorRootOut, error) {
			r, err := svc.PutVendorRoot(ctx, authz.From(ctx).Actor(), tenantOf(ctx), in.RawBody)
			if err != nil {
				return nil, otaMetaErr(err, "")
			}
			return &vendorRootOut{Body: *r}, nil
		})
	reg(a, huma.Operation{OperationID: "getVendorRoot", Method: http.MethodGet, Path: Prefix + "/ota/vendor/root", Tags: tag,
		Summary: "Read the vendor's current root metadata, as signed"},
		access{perm: authz.ProductsRead, tenant: true},
		func(ctx context.Context, _ *struct{}) (*otaSignedOut, error) {
			r, err := a.Store.LatestVendorRoot(ctx, tenantOf(ctx))
			if err != nil {
				return nil, notFoundAs(err, "vendor root of tenant", tenantOf(ctx))
			}
			return &otaSignedOut{ContentType: "application/json", Body: r.Body}, nil
		})
	reg(a, huma.Operation{OperationID: "putVendorTargets", Method: http.MethodPut, Path: Prefix + "/ota/vendor/targets", Tags: tag,
		Summary: "Store the vendor's signed targets metadata", MaxBodyBytes: maxMeta, SkipValidateBody: true,
		Description: "TUF targets signed offline with `steward ota sign` by a threshold of the vendor root's targets keys, " +
			"with a version above the stored one. Each image it lists must be an uploaded artifact of the tenant with the same " +
			"SHA-256, length and version."},
		access{perm: authz.ProductsWrite, tenant: true},
		func(ctx context.Context, in *otaSignedIn) (*vendorTargetsOut, error) {
			t, err := svc.PutVendorTargets(ctx, authz.From(ctx).Actor(), tenantOf(ctx), in.RawBody)
			if err != nil {
				return nil, otaMetaErr(err, "")
			}
			return &vendorTargetsOut{Body: *t}, nil
		})
	reg(a, huma.Operation{OperationID: "getVendorTargets", Method: http.MethodGet, Path: Prefix + "/ota/vendor/targets", Tags: tag,
		Summary: "Read the vendor's current targets metadata, as signed"},
		access{perm: authz.ProductsRead, tenant: true},
		func(ctx context.Context, _ *struct{}) (*otaSignedOut, error) {
			t, err := a.Store.LatestVendorTargets(ctx, tenantOf(ctx))
			if err != nil {
				return nil, notFoundAs(err, "vendor targets of tenant", tenantOf(ctx))
			}
			return &otaSignedOut{ContentType: "application/json", Body: t.Body}, nil
		})
	reg(a, huma.Operation{OperationID: "getDirectorRoot", Method: http.MethodGet, Path: Prefix + "/ota/director/root", Tags: tag,
		Summary: "Read the platform's director root metadata"},
		access{perm: authz.ProductsRead, tenant: true},
		func(ctx context.Context, _ *struct{}) (*otaSignedOut, error) {
			root := svc.DirectorRoot()
			if root == nil {
				return nil, otaMetaErr(ota.ErrNoDirector, "")
			}
			return &otaSignedOut{ContentType: "application/json", Body: root}, nil
		})
	reg(a, huma.Operation{OperationID: "assignUpdate", Method: http.MethodPut, Path: Prefix + "/devices/{deviceID}/ota/assignment", Tags: tag,
		Summary: "Tell a device to install an image",
		Description: "The director signs the device's next targets metadata naming the image as the vendor signed it. " +
			"The image must be in the vendor's current targets and fit the device's hardware ID (its `hardware_id` attribute, " +
			"else its product's hardware revision, else its product ID)."},
		access{perm: authz.DevicesLifecycle, tenant: true},
		func(ctx context.Context, in *otaAssignIn) (*assignmentOut, error) {
			as, err := svc.Assign(ctx, authz.From(ctx).Actor(), tenantOf(ctx), in.DeviceID, in.Body.ArtifactID, "")
			if err != nil {
				return nil, campaignErr(err, "device", in.DeviceID)
			}
			return &assignmentOut{Body: *as}, nil
		})
	reg(a, huma.Operation{OperationID: "getAssignment", Method: http.MethodGet, Path: Prefix + "/devices/{deviceID}/ota/assignment", Tags: tag,
		Summary: "Show the image the director tells a device to install"},
		access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *otaDeviceIn) (*assignmentOut, error) {
			as, err := a.Store.GetAssignment(ctx, tenantOf(ctx), in.DeviceID)
			if err != nil {
				return nil, notFoundAs(err, "update assignment of device", in.DeviceID)
			}
			return &assignmentOut{Body: *as}, nil
		})
	reg(a, huma.Operation{OperationID: "getUpdateMetadata", Method: http.MethodGet, Path: Prefix + "/devices/{deviceID}/ota/metadata", Tags: tag,
		Summary: "The signed metadata a device verifies before installing its assigned image",
		Description: "Vendor roots newer than vendor_root_version, the vendor targets and the device's director targets " +
			"(signed again when more than half of their validity has passed)."},
		access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *otaBundleIn) (*otaBundleOut, error) {
			b, as, err := svc.Bundle(ctx, tenantOf(ctx), in.DeviceID, in.VendorRootVersion)
			if err != nil {
				return nil, otaMetaErr(notFoundAs(err, "update assignment of device", in.DeviceID), in.DeviceID)
			}
			out := &otaBundleOut{}
			out.Body.Bundle, out.Body.Assignment = *b, *as
			return out, nil
		})
}
