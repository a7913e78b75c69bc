package httpapi

import (
	"context"
	"encoding/pem"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// Device identity: manufacturer CAs, factory keys, claim codes, claims,
// bootstrap tokens, certificates and their revocation, device tokens, and
// the public CA chain and CRL. Devices themselves enroll on the EST
// listener (package est), not here.

type certView struct {
	model.Certificate
	PEM string `json:"pem" doc:"The certificate (PEM)."`
}

func certOf(c *model.Certificate) certView {
	return certView{Certificate: *c, PEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER}))}
}

type mcaView struct {
	model.ManufacturerCA
	PEM string `json:"pem"`
}

func mcaOf(c *model.ManufacturerCA) mcaView {
	return mcaView{ManufacturerCA: *c, PEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER}))}
}

type mcaCreateIn struct {
	ProductID string `path:"productID" maxLength:"64"`
	Body      struct {
		Name        string `json:"name,omitempty" maxLength:"128"`
		Certificate string `json:"certificate" minLength:"1" maxLength:"65536" doc:"The manufacturer CA certificate (PEM)."`
	}
}

type mcaOut struct{ Body mcaView }

type mcaList struct {
	Body struct {
		Items []mcaView `json:"items"`
	}
}

type mcaIDIn struct {
	ProductID string `path:"productID" maxLength:"64"`
	CAID      string `path:"caID" maxLength:"64"`
}

type keysUploadIn struct {
	ProductID string `path:"productID" maxLength:"64"`
	Body      struct {
		Devices []struct {
			Serial    string `json:"serial" minLength:"1" maxLength:"128"`
			PublicKey string `json:"public_key" minLength:"1" maxLength:"16384" doc:"PEM PUBLIC KEY (or CERTIFICATE) of the device."`
		} `json:"devices" minItems:"1" maxItems:"1000"`
	}
}

type keysUploadOut struct {
	Body struct {
		Items []identity.UploadedKey `json:"items"`
	}
}

type claimCodeOut struct {
	Body struct {
		Code      string    `json:"code" doc:"The claim code, shown only in this response: print it on the device's label."`
		DeviceID  string    `json:"device_id"`
		CreatedAt time.Time `json:"created_at"`
	}
}

type claimIn struct {
	Body struct {
		Code string `json:"code" minLength:"1" maxLength:"64" doc:"The claim code from the device's label."`
	}
}

type bootstrapCreateIn struct {
	Body struct {
		Name      string `json:"name,omitempty" maxLength:"128"`
		ProductID string `json:"product_id,omitempty" maxLength:"64" doc:"Only devices of this product; enrollment registers a missing one."`
		TTL       string `json:"ttl,omitempty" maxLength:"32" doc:"How long the token is valid, e.g. 30m (default 1h, at most 168h)."`
	}
}

type bootstrapCreated struct {
	Body struct {
		*model.BootstrapToken
		Token string `json:"token" doc:"The token, shown only in this response. A device sends it as Authorization: Bearer to simpleenroll."`
	}
}

type bootstrapList struct {
	Body struct {
		Items      []model.BootstrapToken `json:"items"`
		NextCursor string                 `json:"next_cursor,omitempty"`
	}
}

type bootstrapIDIn struct {
	BootstrapTokenID string `path:"bootstrapTokenID" maxLength:"64"`
}

type certListIn struct {
	DeviceID string `path:"deviceID" maxLength:"64"`
	PageIn
}

type certList struct {
	Body struct {
		Items      []certView `json:"items"`
		NextCursor string     `json:"next_cursor,omitempty"`
	}
}

type serialIn struct {
	Serial string `path:"serial" maxLength:"64" doc:"Hex serial number."`
}

type certOut struct{ Body certView }

type revokeIn struct {
	Serial string `path:"serial" maxLength:"64"`
	Body   struct {
		Reason model.RevocationReason `json:"reason" enum:"unspecified,key_compromise,affiliation_changed,superseded,cessation_of_operation,privilege_withdrawn"`
		Note   string                 `json:"note,omitempty" maxLength:"1024" doc:"Why, in words; kept in the audit trail."`
	}
}

type deviceTokenOut struct {
	Body struct {
		*model.DeviceToken
		Token string `json:"token" doc:"The token, shown only in this response: the device's MQTT password (user name: its device ID)."`
	}
}

type deviceTokenInfo struct{ Body *model.DeviceToken }

type rawOut struct {
	ContentType  string `header:"Content-Type"`
	CacheControl string `header:"Cache-Control"`
	Body         []byte
}

// idErr turns identity refusals into problem answers.
func idErr(err error) error {
	e, ok := identity.AsError(err)
	if !ok {
		return err
	}
	switch e.Kind {
	case identity.KindInvalid:
		if e.Field != "" {
			return huma.Error422UnprocessableEntity(e.Detail, &huma.ErrorDetail{Location: "body." + e.Field, Message: e.Detail})
		}
		return huma.Error422UnprocessableEntity(e.Detail)
	case identity.KindUnauthenticated:
		return huma.Error401Unauthorized(e.Detail)
	case identity.KindForbidden:
		return huma.Error403Forbidden(e.Detail)
	case identity.KindNotFound:
		return huma.Error404NotFound(e.Detail)
	case identity.KindConflict:
		return huma.Error409Conflict(e.Detail)
	case identity.KindUnavailable:
		return huma.Error503ServiceUnavailable(e.Detail)
	}
	return err
}

func (a *API) routesIdentity() {
	id := a.Identity
	if id == nil {
		return
	}
	tag := []string{"identity"}

	// ---- manufacturer CAs and factory keys ----
	reg(a, huma.Operation{OperationID: "createManufacturerCA", Method: http.MethodPost, Path: Prefix + "/products/{productID}/manufacturer-cas",
		Summary: "Register a manufacturer CA for a product", Tags: tag, DefaultStatus: http.StatusCreated,
		Description: "A device whose factory certificate chains to this CA (subject serialNumber or CN = its serial) may enroll."},
		access{perm: authz.ProductsWrite, tenant: true},
		func(ctx context.Context, in *mcaCreateIn) (*mcaOut, error) {
			c, err := id.AddManufacturerCA(ctx, authz.From(ctx), tenantOf(ctx), in.ProductID, in.Body.Name, []byte(in.Body.Certificate))
			if err != nil {
				return nil, idErr(err)
			}
			return &mcaOut{Body: mcaOf(c)}, nil
		})
	reg(a, huma.Operation{OperationID: "listManufacturerCAs", Method: http.MethodGet, Path: Prefix + "/products/{productID}/manufacturer-cas",
		Summary: "A product's manufacturer CAs", Tags: tag}, access{perm: authz.ProductsRead, tenant: true},
		func(ctx context.Context, in *productIDIn) (*mcaList, error) {
			items, err := id.ListManufacturerCAs(ctx, tenantOf(ctx), in.ProductID)
			if err != nil {
				return nil, idErr(err)
			}
			out := &mcaList{}
			out.Body.Items = make([]mcaView, len(items))
			for i := range items {
				out.Body.Items[i] = mcaOf(&items[i])
			}
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "deleteManufacturerCA", Method: http.MethodDelete, Path: Prefix + "/products/{productID}/manufacturer-cas/{caID}",
		Summary: "Stop trusting a manufacturer CA", Tags: tag, DefaultStatus: http.StatusNoContent},
		access{perm: authz.ProductsWrite, tenant: true},
		func(ctx context.Context, in *mcaIDIn) (*struct{}, error) {
			return nil, idErr(id.DeleteManufacturerCA(ctx, authz.From(ctx), tenantOf(ctx), in.ProductID, in.CAID))
		})
	reg(a, huma.Operation{OperationID: "uploadDeviceKeys", Method: http.MethodPost, Path: Prefix + "/products/{productID}/device-keys",
		Summary: "Upload factory public keys of devices", Tags: tag,
		Description: "Registers each device's factory key (devices that do not exist yet are registered as manufactured). " +
			"A device that proves its key (TLS client certificate with it) may enroll. All or nothing; at most 1000 per call."},
		access{perm: authz.DevicesWrite, tenant: true},
		func(ctx context.Context, in *keysUploadIn) (*keysUploadOut, error) {
			keys := make([]identity.DeviceKey, len(in.Body.Devices))
			for i, d := range in.Body.Devices {
				keys[i] = identity.DeviceKey{Serial: d.Serial, PublicKey: d.PublicKey}
			}
			res, err := id.UploadDeviceKeys(ctx, authz.From(ctx), tenantOf(ctx), in.ProductID, keys)
			if err != nil {
				return nil, idErr(err)
			}
			out := &keysUploadOut{}
			out.Body.Items = res
			return out, nil
		})

	// ---- claim codes and claims ----
	reg(a, huma.Operation{OperationID: "createClaimCode", Method: http.MethodPost, Path: Prefix + "/devices/{deviceID}/claim-code",
		Summary: "Make a device's one-time claim code", Tags: tag, DefaultStatus: http.StatusCreated,
		Description: "For a manufactured device; replaces an unused earlier code. The code is returned once (stored hashed): print it on the label."},
		access{perm: authz.DevicesWrite, tenant: true},
		func(ctx context.Context, in *deviceIDIn) (*claimCodeOut, error) {
			code, c, err := id.CreateClaimCode(ctx, authz.From(ctx), tenantOf(ctx), in.DeviceID)
			if err != nil {
				return nil, idErr(err)
			}
			out := &claimCodeOut{}
			out.Body.Code, out.Body.DeviceID, out.Body.CreatedAt = code, c.DeviceID, c.CreatedAt
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "claimDevice", Method: http.MethodPost, Path: Prefix + "/claims",
		Summary: "Claim a device into this tenant with its claim code", Tags: tag,
		Description: "Moves the unowned (manufactured) device into the caller's tenant as claimed. A code claims once; " +
			"the device then enrolls with its serial and the same code."},
		access{perm: authz.DevicesLifecycle, tenant: true},
		func(ctx context.Context, in *claimIn) (*deviceOut, error) {
			d, err := id.Claim(ctx, authz.From(ctx), tenantOf(ctx), in.Body.Code)
			if err != nil {
				return nil, idErr(err)
			}
			return &deviceOut{ETag: etag(d.Version), Body: view(d)}, nil
		})

	// ---- bootstrap tokens ----
	reg(a, huma.Operation{OperationID: "createBootstrapToken", Method: http.MethodPost, Path: Prefix + "/bootstrap-tokens",
		Summary: "Create a single-use enrollment token", Tags: tag, DefaultStatus: http.StatusCreated,
		Description: "For devices without a factory identity. The token is returned once; it enrolls one device, once, before it expires."},
		access{perm: authz.DevicesWrite, tenant: true},
		func(ctx context.Context, in *bootstrapCreateIn) (*bootstrapCreated, error) {
			var ttl time.Duration
			if in.Body.TTL != "" {
				d, err := time.ParseDuration(in.Body.TTL)
				if err != nil {
					return nil, huma.Error422UnprocessableEntity("ttl: "+in.Body.TTL+" is not a duration such as 30m or 2h",
						&huma.ErrorDetail{Location: "body.ttl", Message: "not a duration"})
				}
				ttl = d
			}
			secret, t, err := id.CreateBootstrapToken(ctx, authz.From(ctx), tenantOf(ctx), identity.BootstrapInput{
				Name: in.Body.Name, ProductID: in.Body.ProductID, TTL: ttl})
			if err != nil {
				return nil, idErr(err)
			}
			out := &bootstrapCreated{}
			out.Body.BootstrapToken, out.Body.Token = t, secret
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "listBootstrapTokens", Method: http.MethodGet, Path: Prefix + "/bootstrap-tokens",
		Summary: "List bootstrap tokens (never their secrets)", Tags: tag}, access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *PageIn) (*bootstrapList, error) {
			items, next, err := id.ListBootstrapTokens(ctx, tenantOf(ctx), store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, err
			}
			out := &bootstrapList{}
			out.Body.Items, out.Body.NextCursor = nonNil(items), next
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "revokeBootstrapToken", Method: http.MethodDelete, Path: Prefix + "/bootstrap-tokens/{bootstrapTokenID}",
		Summary: "Revoke an unused bootstrap token", Tags: tag, DefaultStatus: http.StatusNoContent},
		access{perm: authz.DevicesWrite, tenant: true},
		func(ctx context.Context, in *bootstrapIDIn) (*struct{}, error) {
			return nil, idErr(id.RevokeBootstrapToken(ctx, authz.From(ctx), tenantOf(ctx), in.BootstrapTokenID))
		})

	// ---- certificates ----
	reg(a, huma.Operation{OperationID: "listDeviceCertificates", Method: http.MethodGet, Path: Prefix + "/devices/{deviceID}/certificates",
		Summary: "A device's certificates, newest first", Tags: tag}, access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *certListIn) (*certList, error) {
			items, next, err := id.ListCertificates(ctx, tenantOf(ctx), in.DeviceID, store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, idErr(err)
			}
			out := &certList{}
			out.Body.Items = make([]certView, len(items))
			for i := range items {
				out.Body.Items[i] = certOf(&items[i])
			}
			out.Body.NextCursor = next
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "getCertificate", Method: http.MethodGet, Path: Prefix + "/certificates/{serial}",
		Summary: "A certificate by serial number", Tags: tag}, access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *serialIn) (*certOut, error) {
			c, err := id.GetCertificate(ctx, tenantOf(ctx), in.Serial)
			if err != nil {
				return nil, idErr(err)
			}
			return &certOut{Body: certOf(c)}, nil
		})
	reg(a, huma.Operation{OperationID: "revokeCertificate", Method: http.MethodPost, Path: Prefix + "/certificates/{serial}/revoke",
		Summary: "Revoke a device certificate", Tags: tag,
		Description: "The device is refused at its next connect and a connected session using it is dropped; the CRL lists it."},
		access{perm: authz.DevicesLifecycle, tenant: true},
		func(ctx context.Context, in *revokeIn) (*certOut, error) {
			c, err := id.RevokeCertificate(ctx, authz.From(ctx), tenantOf(ctx), in.Serial, in.Body.Reason, in.Body.Note)
			if err != nil {
				return nil, idErr(err)
			}
			return &certOut{Body: certOf(c)}, nil
		})

	// ---- device tokens ----
	reg(a, huma.Operation{OperationID: "createDeviceToken", Method: http.MethodPost, Path: Prefix + "/devices/{deviceID}/token",
		Summary: "Make (or replace) a device's MQTT token", Tags: tag, DefaultStatus: http.StatusCreated,
		Description: "For constrained devices without client certificates. Returned once; a new token replaces the old one at once."},
		access{perm: authz.DevicesWrite, tenant: true},
		func(ctx context.Context, in *deviceIDIn) (*deviceTokenOut, error) {
			secret, t, err := id.CreateDeviceToken(ctx, authz.From(ctx), tenantOf(ctx), in.DeviceID)
			if err != nil {
				return nil, idErr(err)
			}
			out := &deviceTokenOut{}
			out.Body.DeviceToken, out.Body.Token = t, secret
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "getDeviceToken", Method: http.MethodGet, Path: Prefix + "/devices/{deviceID}/token",
		Summary: "A device's token (never the secret)", Tags: tag}, access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *deviceIDIn) (*deviceTokenInfo, error) {
			t, err := id.DeviceTokenInfo(ctx, tenantOf(ctx), in.DeviceID)
			if err != nil {
				return nil, idErr(err)
			}
			return &deviceTokenInfo{Body: t}, nil
		})
	reg(a, huma.Operation{OperationID: "revokeDeviceToken", Method: http.MethodDelete, Path: Prefix + "/devices/{deviceID}/token",
		Summary: "Revoke a device's token", Tags: tag, DefaultStatus: http.StatusNoContent},
		access{perm: authz.DevicesWrite, tenant: true},
		func(ctx context.Context, in *deviceIDIn) (*struct{}, error) {
			return nil, idErr(id.RevokeDeviceToken(ctx, authz.From(ctx), tenantOf(ctx), in.DeviceID))
		})

	// ---- public PKI material ----
	reg(a, huma.Operation{OperationID: "getCRL", Method: http.MethodGet, Path: "/pki/crl", Tags: []string{"pki"},
		Summary: "The certificate revocation list (DER)", Description: "Signed by the issuing CA; rebuilt after each revocation."},
		access{public: true},
		func(ctx context.Context, _ *struct{}) (*rawOut, error) {
			der, err := id.CRL(ctx)
			if err != nil {
				return nil, idErr(err)
			}
			return &rawOut{ContentType: "application/pkix-crl", CacheControl: "max-age=60", Body: der}, nil
		})
	reg(a, huma.Operation{OperationID: "getCACertificates", Method: http.MethodGet, Path: "/pki/ca.crt", Tags: []string{"pki"},
		Summary: "The CA chain devices trust (PEM)", Description: "The issuing CA first, then its issuers up to the root."},
		access{public: true},
		func(ctx context.Context, _ *struct{}) (*rawOut, error) {
			return &rawOut{ContentType: "application/x-pem-file", CacheControl: "max-age=3600", Body: id.CA().ChainPEM()}, nil
		})
}
