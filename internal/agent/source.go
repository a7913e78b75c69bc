package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/ota/tufmeta"
)

// HTTPSource reads metadata and images over HTTPS: by default from the
// operator API (Authorize adds the credential to each request); with
// DeviceRoutes from the device routes (/device/v1/…) of the enrollment
// listener, authenticated by the client certificate of Client's TLS
// configuration (NewDeviceSource).
type HTTPSource struct {
	BaseURL      string // e.g. https://steward.example:8443
	DeviceID     string
	Client       *http.Client
	Authorize    func(*http.Request)
	DeviceRoutes bool
	// IdleTimeout cuts a download that receives nothing for this long
	// (default DefaultIdleTimeout); the updater then resumes it.
	IdleTimeout time.Duration
}

// NewDeviceSource reads from the device routes of the enrollment listener
// at baseURL; client must present the device certificate (mutual TLS).
func NewDeviceSource(baseURL string, client *http.Client) *HTTPSource {
	return &HTTPSource{BaseURL: strings.TrimSuffix(baseURL, "/"), Client: client, DeviceRoutes: true}
}

func (s *HTTPSource) metadataPath(have int64) string {
	q := "?vendor_root_version=" + strconv.FormatInt(have, 10)
	if s.DeviceRoutes {
		return "/device/v1/ota/metadata" + q
	}
	return "/api/v1/devices/" + url.PathEscape(s.DeviceID) + "/ota/metadata" + q
}

func (s *HTTPSource) contentPath(artifactID string) string {
	if s.DeviceRoutes {
		return "/device/v1/ota/artifacts/" + url.PathEscape(artifactID) + "/content"
	}
	return "/api/v1/artifacts/" + url.PathEscape(artifactID) + "/content"
}

func (s *HTTPSource) get(ctx context.Context, path string, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.BaseURL+path, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if s.Authorize != nil {
		s.Authorize(req)
	}
	return s.Client.Do(req)
}

// metadataTimeout bounds a metadata or roots request (the client has no
// overall timeout, for long downloads).
const metadataTimeout = 2 * time.Minute

func (s *HTTPSource) Metadata(ctx context.Context, haveVendorRoot int64) (*tufmeta.Bundle, error) {
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	res, err := s.get(ctx, s.metadataPath(haveVendorRoot), map[string]string{"Accept": "application/json"})
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	// The bundle is at most a few roots and two targets documents.
	limit := int64(tufmeta.MaxRootChain*tufmeta.MaxRootBytes + 3*tufmeta.MaxTargetsBytes)
	body, err := io.ReadAll(io.LimitReader(res.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%w: metadata answer longer than %d bytes", tufmeta.ErrTooLarge, limit)
	}
	if res.StatusCode == http.StatusNotFound && bytes.Contains(body, []byte(`"no_assignment"`)) {
		return nil, ErrNoAssignment
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metadata: %s: %s", res.Status, body)
	}
	var b tufmeta.Bundle
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, fmt.Errorf("%w: %v", tufmeta.ErrMalformed, err)
	}
	return &b, nil
}

func (s *HTTPSource) Fetch(ctx context.Context, artifactID string, offset int64, etag string) (io.ReadCloser, error) {
	hdr := map[string]string{}
	if offset > 0 {
		hdr["Range"] = "bytes=" + strconv.FormatInt(offset, 10) + "-"
		hdr["If-Range"] = etag
	}
	// A download that stalls is cut after IdleTimeout without a byte, so
	// that the updater resumes it instead of waiting for ever.
	ctx, cancel := context.WithCancel(ctx)
	idle := s.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	timer := time.AfterFunc(idle, cancel)
	res, err := s.get(ctx, s.contentPath(artifactID), hdr)
	if err != nil {
		timer.Stop()
		cancel()
		return nil, err
	}
	switch {
	case offset > 0 && res.StatusCode == http.StatusPartialContent:
	case offset > 0 && res.StatusCode == http.StatusOK:
		res.Body.Close()
		timer.Stop()
		cancel()
		return nil, ErrRangeIgnored
	case offset == 0 && res.StatusCode == http.StatusOK:
	default:
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		res.Body.Close()
		timer.Stop()
		cancel()
		return nil, fmt.Errorf("download: %s: %s", res.Status, b)
	}
	return &idleBody{rc: res.Body, timer: timer, idle: idle, cancel: cancel}, nil
}

// DefaultIdleTimeout is how long a download may go without a byte.
const DefaultIdleTimeout = time.Minute

type idleBody struct {
	rc     io.ReadCloser
	timer  *time.Timer
	idle   time.Duration
	cancel context.CancelFunc
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.idle)
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel()
	return err
}

// RootsAnswer is what GET /device/v1/ota/roots returns.
type RootsAnswer struct {
	VendorRoot   json.RawMessage `json:"vendor_root"`
	DirectorRoot json.RawMessage `json:"director_root"`
	DeviceID     string          `json:"device_id"`
	HardwareID   string          `json:"hardware_id"`
}

// Roots fetches the roots to pin at first use (device routes only).
func (s *HTTPSource) Roots(ctx context.Context) (*RootsAnswer, error) {
	if !s.DeviceRoutes {
		return nil, fmt.Errorf("roots are served on the device routes only")
	}
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	res, err := s.get(ctx, "/device/v1/ota/roots", map[string]string{"Accept": "application/json"})
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 2*tufmeta.MaxRootBytes+4096))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("update roots: %s: %s", res.Status, body)
	}
	var r RootsAnswer
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("update roots: %w", err)
	}
	if len(r.VendorRoot) == 0 || len(r.DirectorRoot) == 0 {
		return nil, fmt.Errorf("update roots: the answer lacks a root")
	}
	return &r, nil
}
