package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/steward-iot/steward/internal/ota/tufmeta"
)

// HTTPSource reads metadata and images from the platform's HTTPS API.
// Authorize adds the credential to each request.
type HTTPSource struct {
	BaseURL   string // e.g. https://steward.example:8443
	DeviceID  string
	Client    *http.Client
	Authorize func(*http.Request)
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

func (s *HTTPSource) Metadata(ctx context.Context, haveVendorRoot int64) (*tufmeta.Bundle, error) {
	res, err := s.get(ctx, "/api/v1/devices/"+url.PathEscape(s.DeviceID)+"/ota/metadata?vendor_root_version="+
		strconv.FormatInt(haveVendorRoot, 10), map[string]string{"Accept": "application/json"})
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
	res, err := s.get(ctx, "/api/v1/artifacts/"+url.PathEscape(artifactID)+"/content", hdr)
	if err != nil {
		return nil, err
	}
	switch {
	case offset > 0 && res.StatusCode == http.StatusPartialContent:
	case offset > 0 && res.StatusCode == http.StatusOK:
		res.Body.Close()
		return nil, ErrRangeIgnored
	case offset == 0 && res.StatusCode == http.StatusOK:
	default:
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		res.Body.Close()
		return nil, fmt.Errorf("download: %s: %s", res.Status, b)
	}
	return res.Body, nil
}
