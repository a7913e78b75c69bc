package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humachi"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/ota"
	"github.com/steward-iot/steward/internal/store"
)

// OTA are the update service's parts behind the /artifacts routes.
type OTA struct {
	Artifacts *ota.Service
}

type artifactCreateIn struct {
	Body struct {
		Name         string   `json:"name" minLength:"1" maxLength:"255" doc:"A file name for the image, e.g. firmware-1.4.2.bin."`
		Version      string   `json:"version" minLength:"1" maxLength:"64" doc:"The firmware version the image installs."`
		ProductIDs   []string `json:"product_ids" minItems:"1" maxItems:"64" doc:"Products of this tenant the image is for."`
		HardwareIDs  []string `json:"hardware_ids" minItems:"1" maxItems:"64" doc:"Hardware identifiers the image fits."`
		SBOMRef      string   `json:"sbom_ref,omitempty" maxLength:"1024" doc:"Where the image's SBOM is."`
		ReleaseNotes string   `json:"release_notes,omitempty" maxLength:"65536"`
	}
}

type artifactOut struct{ Body model.Artifact }

type artifactIDIn struct {
	ArtifactID string `path:"artifactID" maxLength:"64"`
}

type artifactList struct {
	Body struct {
		Items      []model.Artifact `json:"items"`
		NextCursor string           `json:"next_cursor,omitempty"`
	}
}

// artifactUploadIn streams the request body: the resolver hands the body
// reader to the handler instead of huma reading it into memory.
type artifactUploadIn struct {
	ArtifactID string `path:"artifactID" maxLength:"64"`
	SHA256     string `query:"sha256" maxLength:"64" doc:"Hex SHA-256 the content must have (optional; checked after the upload)."`
	body       io.Reader
}

func (in *artifactUploadIn) Resolve(ctx huma.Context) []error {
	in.body = ctx.BodyReader()
	return nil
}

// otaErr maps the update service's errors onto answers.
func otaErr(err error, id string) error {
	var inv *ota.InvalidError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &inv):
		return huma.Error422UnprocessableEntity(inv.Error(), &huma.ErrorDetail{Location: "body." + inv.Field, Message: inv.Message})
	case errors.Is(err, ota.ErrTooLarge):
		return huma.Error413RequestEntityTooLarge(err.Error())
	case errors.Is(err, ota.ErrDigestMismatch):
		return huma.Error422UnprocessableEntity(err.Error(), &huma.ErrorDetail{Location: "query.sha256", Message: err.Error()})
	case errors.Is(err, ota.ErrUploaded), errors.Is(err, ota.ErrNoContent), errors.Is(err, ota.ErrInUse):
		return huma.Error409Conflict(err.Error())
	}
	return notFoundAs(err, "artifact", id)
}

// octetStream describes a binary body. A new value each time: huma
// annotates the schema it is given, so one shared value would be written by
// every API instance built (tests build several at once).
func octetStream() map[string]*huma.MediaType {
	return map[string]*huma.MediaType{"application/octet-stream": {Schema: &huma.Schema{Type: "string", Format: "binary"}}}
}

func (a *API) routesOTA() {
	if a.OTA.Artifacts == nil {
		return
	}
	a.routesOTAMetadata()
	svc := a.OTA.Artifacts
	tag := []string{"artifacts"}
	reg(a, huma.Operation{OperationID: "createArtifact", Method: http.MethodPost, Path: Prefix + "/artifacts", Tags: tag,
		Summary: "Describe a new update image", DefaultStatus: http.StatusCreated,
		Description: "Records what the image is for; upload its content next with PUT …/content."},
		access{perm: authz.ProductsWrite, tenant: true},
		func(ctx context.Context, in *artifactCreateIn) (*artifactOut, error) {
			b := in.Body
			art, err := svc.CreateArtifact(ctx, authz.From(ctx).Actor(), tenantOf(ctx), ota.ArtifactInput{Name: b.Name,
				Version: b.Version, ProductIDs: b.ProductIDs, HardwareIDs: b.HardwareIDs, SBOMRef: b.SBOMRef, ReleaseNotes: b.ReleaseNotes})
			if err != nil {
				return nil, otaErr(err, "")
			}
			return &artifactOut{Body: *art}, nil
		})
	reg(a, huma.Operation{OperationID: "listArtifacts", Method: http.MethodGet, Path: Prefix + "/artifacts", Tags: tag,
		Summary: "List update images, newest first"},
		access{perm: authz.ProductsRead, tenant: true},
		func(ctx context.Context, in *PageIn) (*artifactList, error) {
			items, next, err := a.Store.ListArtifacts(ctx, tenantOf(ctx), store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, err
			}
			out := &artifactList{}
			out.Body.Items, out.Body.NextCursor = items, next
			if out.Body.Items == nil {
				out.Body.Items = []model.Artifact{}
			}
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "getArtifact", Method: http.MethodGet, Path: Prefix + "/artifacts/{artifactID}", Tags: tag,
		Summary: "Show an update image"},
		access{perm: authz.ProductsRead, tenant: true},
		func(ctx context.Context, in *artifactIDIn) (*artifactOut, error) {
			art, err := a.Store.GetArtifact(ctx, tenantOf(ctx), in.ArtifactID)
			if err != nil {
				return nil, otaErr(err, in.ArtifactID)
			}
			return &artifactOut{Body: *art}, nil
		})
	reg(a, huma.Operation{OperationID: "deleteArtifact", Method: http.MethodDelete, Path: Prefix + "/artifacts/{artifactID}", Tags: tag,
		Summary: "Delete an update image", DefaultStatus: http.StatusNoContent},
		access{perm: authz.ProductsWrite, tenant: true},
		func(ctx context.Context, in *artifactIDIn) (*struct{}, error) {
			return nil, otaErr(svc.DeleteArtifact(ctx, authz.From(ctx).Actor(), tenantOf(ctx), in.ArtifactID), in.ArtifactID)
		})
	reg(a, huma.Operation{OperationID: "uploadArtifactContent", Method: http.MethodPut, Path: Prefix + "/artifacts/{artifactID}/content",
		Tags: tag, Summary: "Upload an update image's content",
		Description: fmt.Sprintf("The body is the image, streamed to storage (any content type, at most %d bytes by default) "+
			"and stored by its SHA-256. The content is set once; the answer holds its digest and length.", ota.DefaultMaxArtifactBytes),
		RequestBody: &huma.RequestBody{Required: true, Content: octetStream()}},
		access{perm: authz.ProductsWrite, tenant: true},
		func(ctx context.Context, in *artifactUploadIn) (*artifactOut, error) {
			art, err := svc.Upload(ctx, authz.From(ctx).Actor(), tenantOf(ctx), in.ArtifactID, in.body, in.SHA256)
			if err != nil {
				return nil, otaErr(err, in.ArtifactID)
			}
			return &artifactOut{Body: *art}, nil
		})
	reg(a, huma.Operation{OperationID: "downloadArtifactContent", Method: http.MethodGet, Path: Prefix + "/artifacts/{artifactID}/content",
		Tags: tag, Summary: "Download an update image",
		Description: "Supports Range requests (resume) and conditional requests: the ETag is the content's SHA-256.",
		Responses: map[string]*huma.Response{
			"200": {Description: "The whole image.", Content: octetStream()},
			"206": {Description: "The requested range.", Content: octetStream()},
		}},
		access{perm: authz.ProductsRead, tenant: true},
		func(ctx context.Context, in *artifactIDIn) (*huma.StreamResponse, error) {
			art, f, err := svc.Open(ctx, tenantOf(ctx), in.ArtifactID)
			if err != nil {
				return nil, otaErr(err, in.ArtifactID)
			}
			return &huma.StreamResponse{Body: func(hctx huma.Context) {
				defer f.Close()
				r, w := humachi.Unwrap(hctx)
				ServeArtifact(w, r, art, f)
			}}, nil
		})
}

// ServeArtifact answers a download of an artifact's content with Range and
// conditional request support (http.ServeContent); the ETag is the
// content's SHA-256 and Repr-Digest (RFC 9530) carries it too.
func ServeArtifact(w http.ResponseWriter, r *http.Request, art *model.Artifact, content io.ReadSeeker) {
	h := w.Header()
	h.Set("ETag", `"sha256:`+art.SHA256+`"`)
	if sum, err := hex.DecodeString(art.SHA256); err == nil {
		h.Set("Repr-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum)+":")
	}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": art.Name}))
	h.Set("Cache-Control", "private, max-age=0")
	var mod = art.CreatedAt
	if art.UploadedAt != nil {
		mod = *art.UploadedAt
	}
	http.ServeContent(w, r, "", mod, content)
}
