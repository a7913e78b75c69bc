package est

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/smallstep/pkcs7"
)

// Client talks to an EST server (this one or any RFC 7030 server). Its
// HTTP client carries the TLS settings: the trusted CA and, for renewal
// or factory enrollment, the client certificate.
type Client struct {
	// BaseURL is e.g. https://steward.example.com:8443 (no trailing slash).
	BaseURL string
	HTTP    *http.Client
}

// ProblemError is a refusal from the server.
type ProblemError struct {
	Status  int
	Problem Problem
}

func (e *ProblemError) Error() string {
	if e.Problem.Detail != "" {
		return fmt.Sprintf("est: %d %s: %s", e.Status, e.Problem.Reason, e.Problem.Detail)
	}
	return fmt.Sprintf("est: HTTP %d", e.Status)
}

// CACerts fetches the CA chain.
func (c *Client) CACerts(ctx context.Context) ([]*x509.Certificate, error) {
	return c.do(ctx, http.MethodGet, PathCACerts, nil, "")
}

// SimpleEnroll sends a DER CSR with an Authorization header value
// ("Bearer stb_…", "Basic …", or "" for a factory client certificate) and
// returns the issued certificate.
func (c *Client) SimpleEnroll(ctx context.Context, csrDER []byte, authorization string) (*x509.Certificate, error) {
	certs, err := c.do(ctx, http.MethodPost, PathSimpleEnroll, csrDER, authorization)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// SimpleReenroll renews the client certificate the HTTP client presents.
func (c *Client) SimpleReenroll(ctx context.Context, csrDER []byte) (*x509.Certificate, error) {
	certs, err := c.do(ctx, http.MethodPost, PathSimpleReenroll, csrDER, "")
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// BasicClaim is the Authorization value for claim-code enrollment.
func BasicClaim(serial, code string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(serial+":"+code))
}

func (c *Client) do(ctx context.Context, method, path string, csrDER []byte, authorization string) ([]*x509.Certificate, error) {
	var body io.Reader
	if csrDER != nil {
		body = strings.NewReader(base64.StdEncoding.EncodeToString(csrDER))
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return nil, err
	}
	if csrDER != nil {
		req.Header.Set("Content-Type", ContentTypeCSR)
		req.Header.Set("Content-Transfer-Encoding", "base64")
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		pe := &ProblemError{Status: resp.StatusCode}
		json.Unmarshal(raw, &pe.Problem)
		return nil, pe
	}
	return ParseCertsOnly(raw)
}

// ParseCertsOnly decodes a base64 PKCS#7 certs-only body.
func ParseCertsOnly(body []byte) ([]*x509.Certificate, error) {
	clean := bytes.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, body)
	der, err := base64.StdEncoding.DecodeString(string(clean))
	if err != nil {
		return nil, fmt.Errorf("est: answer is not base64: %w", err)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, fmt.Errorf("est: answer is not PKCS#7: %w", err)
	}
	if len(p7.Certificates) == 0 {
		return nil, fmt.Errorf("est: the PKCS#7 answer holds no certificate")
	}
	return p7.Certificates, nil
}
