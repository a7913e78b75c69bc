// Package deviceapi is the HTTPS edge a device uses with its own
// operational certificate (mutual TLS) to fetch its updates. It is mounted
// on the enrollment listener, which already asks for client certificates:
//
//	GET /device/v1/ota/metadata?vendor_root_version=N   the signed metadata of the device's assignment
//	GET /device/v1/ota/artifacts/{artifactID}/content   the assigned image (Range, If-Range, ETag)
//	GET /device/v1/ota/roots                            the vendor and director roots to pin
//
// Every refusal is RFC 9457 problem details with a "reason" code, as on the
// enrollment routes. A quarantined device is served: updates are what
// quarantine leaves it.
package deviceapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/steward-iot/steward/internal/est"
	"github.com/steward-iot/steward/internal/httpapi"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/ota"
	"github.com/steward-iot/steward/internal/ota/tufmeta"
	"github.com/steward-iot/steward/internal/store"
)

// Paths of the routes.
const (
	Prefix       = "/device/v1/"
	PathMetadata = "/device/v1/ota/metadata"
	PathRoots    = "/device/v1/ota/roots"
	// PathContentPrefix + artifact ID + "/content".
	PathContentPrefix = "/device/v1/ota/artifacts/"

	problemBase = "https://steward.dev/problems/"
)

// OTA is the update service as these routes need it (*ota.Service).
type OTA interface {
	Bundle(ctx context.Context, tenantID, deviceID string, haveVendorRoot int64) (*tufmeta.Bundle, *model.Assignment, error)
	Open(ctx context.Context, tenantID, id string) (*model.Artifact, io.ReadSeekCloser, error)
	DirectorRoot() []byte
}

// Roots is the answer of GET /device/v1/ota/roots.
type Roots struct {
	// VendorRoot is the tenant's first vendor root, as stored: a device
	// that pins it follows later rotations through the metadata.
	VendorRoot json.RawMessage `json:"vendor_root"`
	// DirectorRoot is the platform's director root.
	DirectorRoot json.RawMessage `json:"director_root"`
	DeviceID     string          `json:"device_id"`
	// HardwareID is what the director matches images against for this
	// device (its hardware_id attribute, else its product's hardware
	// revision, else its product ID).
	HardwareID string `json:"hardware_id"`
}

// Handler serves the device routes.
type Handler struct {
	auth identity.Authenticator
	ota  OTA
	st   store.Reader
	log  *slog.Logger
	mux  *http.ServeMux
}

// New returns the device routes over the authenticator, the update service
// and the store.
func New(auth identity.Authenticator, o OTA, st store.Reader, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{auth: auth, ota: o, st: st, log: log, mux: http.NewServeMux()}
	h.mux.HandleFunc(PathMetadata, h.device(h.metadata))
	h.mux.HandleFunc(PathRoots, h.device(h.roots))
	h.mux.HandleFunc(PathContentPrefix+"{artifactID}/content", h.device(h.content))
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem(w, http.StatusNotFound, "not_found", "no such device route; see "+PathMetadata)
	})
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// device authenticates the client certificate and allows GET (and HEAD).
func (h *Handler) device(next func(http.ResponseWriter, *http.Request, *identity.Device)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			problem(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; use GET")
			return
		}
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			h.refuse(w, r, http.StatusUnauthorized, identity.ReasonNoCredential,
				"no client certificate: present the device's operational certificate (mutual TLS)")
			return
		}
		dev, err := h.auth.AuthenticateCert(r.Context(), r.TLS.PeerCertificates)
		if err != nil {
			code, reason := authStatus(err)
			if code >= 500 {
				h.log.Error("device authentication failed", "err", err, "path", r.URL.Path, "remote", r.RemoteAddr)
				problem(w, code, reason, "the platform cannot check the certificate now; try again later")
				return
			}
			h.refuse(w, r, code, reason, err.Error())
			return
		}
		next(w, r, dev)
	}
}

func authStatus(err error) (int, string) {
	switch {
	case errors.Is(err, identity.ErrRevoked):
		return http.StatusUnauthorized, identity.ReasonCertRevoked
	case errors.Is(err, identity.ErrExpired):
		return http.StatusUnauthorized, identity.ReasonCertExpired
	case errors.Is(err, identity.ErrUnknownIdentity):
		return http.StatusUnauthorized, identity.ReasonUnknownCert
	case errors.Is(err, identity.ErrNotAllowed):
		return http.StatusForbidden, identity.ReasonDeviceState
	}
	return http.StatusServiceUnavailable, "unavailable"
}

func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, code int, reason, detail string) {
	attrs := []any{"path", r.URL.Path, "status", code, "reason", reason, "detail", detail, "remote", r.RemoteAddr}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		attrs = append(attrs, "client_cert_subject", r.TLS.PeerCertificates[0].Subject.String())
	}
	h.log.Warn("device request refused", attrs...)
	problem(w, code, reason, detail)
}

func (h *Handler) metadata(w http.ResponseWriter, r *http.Request, dev *identity.Device) {
	have := int64(0)
	if v := r.URL.Query().Get("vendor_root_version"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			problem(w, http.StatusBadRequest, "invalid", "vendor_root_version must be a whole number ≥ 0 (the vendor root version the device trusts)")
			return
		}
		have = n
	}
	b, as, err := h.ota.Bundle(r.Context(), dev.TenantID, dev.DeviceID, have)
	if err != nil {
		h.otaFail(w, r, dev, err)
		return
	}
	writeJSON(w, struct {
		*tufmeta.Bundle
		Assignment *model.Assignment `json:"assignment"`
	}{b, as})
}

func (h *Handler) otaFail(w http.ResponseWriter, r *http.Request, dev *identity.Device, err error) {
	var me *ota.MetadataError
	switch {
	case errors.Is(err, store.ErrNotFound):
		problem(w, http.StatusNotFound, "no_assignment", "no update is assigned to device "+dev.DeviceID)
	case errors.Is(err, ota.ErrNoDirector):
		problem(w, http.StatusServiceUnavailable, "no_director", "the update director is not configured on this platform")
	case errors.As(err, &me):
		h.log.Error("device update metadata", "tenant", dev.TenantID, "device", dev.DeviceID, "err", err)
		problem(w, http.StatusServiceUnavailable, "metadata_unavailable", "the update metadata cannot be served now: "+me.Error())
	case errors.Is(err, context.Canceled):
	default:
		h.log.Error("device update request failed", "path", r.URL.Path, "tenant", dev.TenantID, "device", dev.DeviceID, "err", err)
		problem(w, http.StatusInternalServerError, "internal", "internal error; the server log has the details")
	}
}

func (h *Handler) content(w http.ResponseWriter, r *http.Request, dev *identity.Device) {
	id := r.PathValue("artifactID")
	as, err := h.st.GetAssignment(r.Context(), dev.TenantID, dev.DeviceID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		h.otaFail(w, r, dev, err)
		return
	}
	if as == nil || as.ArtifactID != id {
		h.refuse(w, r, http.StatusForbidden, "not_assigned", "artifact "+id+" is not the update assigned to device "+dev.DeviceID)
		return
	}
	if as.Status.Final() {
		h.refuse(w, r, http.StatusForbidden, "not_assigned", "the assignment of artifact "+id+" to device "+dev.DeviceID+
			" has ended ("+string(as.Status)+")")
		return
	}
	art, f, err := h.ota.Open(r.Context(), dev.TenantID, id)
	if err != nil {
		if errors.Is(err, ota.ErrNoContent) {
			problem(w, http.StatusNotFound, "no_content", "artifact "+id+" has no content yet")
			return
		}
		h.otaFail(w, r, dev, err)
		return
	}
	defer f.Close()
	httpapi.ServeArtifact(w, r, art, f)
}

func (h *Handler) roots(w http.ResponseWriter, r *http.Request, dev *identity.Device) {
	dir := h.ota.DirectorRoot()
	if dir == nil {
		problem(w, http.StatusServiceUnavailable, "no_director", "the update director is not configured on this platform")
		return
	}
	vr, err := h.st.VendorRoots(r.Context(), dev.TenantID, 0)
	if err != nil {
		h.otaFail(w, r, dev, err)
		return
	}
	if len(vr) == 0 {
		problem(w, http.StatusNotFound, "no_vendor_root", "the vendor has not stored a root yet (PUT /api/v1/ota/vendor/root)")
		return
	}
	first := vr[0]
	for _, v := range vr[1:] {
		if v.Version < first.Version {
			first = v
		}
	}
	d, err := h.st.GetDevice(r.Context(), dev.TenantID, dev.DeviceID)
	if err != nil {
		h.otaFail(w, r, dev, err)
		return
	}
	var prod *model.Product
	if p, err := h.st.GetProduct(r.Context(), dev.TenantID, d.ProductID); err == nil {
		prod = p
	}
	writeJSON(w, Roots{VendorRoot: first.Body, DirectorRoot: dir, DeviceID: dev.DeviceID, HardwareID: ota.HardwareID(d, prod)})
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		problem(w, http.StatusInternalServerError, "internal", "internal error")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

func problem(w http.ResponseWriter, code int, reason, detail string) {
	b, _ := json.Marshal(est.Problem{Type: problemBase + strings.ReplaceAll(reason, "_", "-"), Title: http.StatusText(code),
		Status: code, Detail: detail, Reason: reason})
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	io.WriteString(w, string(b))
}
