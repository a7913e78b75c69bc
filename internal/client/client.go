// Package client is a small Go client for the Steward REST API, used by the
// admin verbs of the CLI and by tests.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// Client talks to one server with one API key.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:8080
	Key     string
	Tenant  string // sent as X-Steward-Tenant when set (platform admins)
	HTTP    *http.Client
}

// Options for New.
type Options struct {
	CAFile             string // trust this CA (PEM) for https
	InsecureSkipVerify bool   // accept any server certificate (self-signed dev certificates)
	Timeout            time.Duration
}

// New returns a client.
func New(baseURL, key, tenant string, o Options) (*Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.CAFile != "" || o.InsecureSkipVerify {
		cfg := &tls.Config{InsecureSkipVerify: o.InsecureSkipVerify}
		if o.CAFile != "" {
			pem, err := os.ReadFile(o.CAFile)
			if err != nil {
				return nil, fmt.Errorf("--ca-file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", o.CAFile)
			}
			cfg.RootCAs = pool
		}
		tr.TLSClientConfig = cfg
	}
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), Key: key, Tenant: tenant,
		HTTP: &http.Client{Transport: tr, Timeout: o.Timeout}}, nil
}

// Problem is an RFC 9457 error answer.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Errors []struct {
		Message  string `json:"message"`
		Location string `json:"location"`
		Value    any    `json:"value"`
	} `json:"errors"`
}

func (p *Problem) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", p.Status, p.Title)
	if p.Detail != "" {
		b.WriteString(": " + p.Detail)
	}
	for _, e := range p.Errors {
		b.WriteString("\n  - ")
		if e.Location != "" {
			b.WriteString(e.Location + ": ")
		}
		b.WriteString(e.Message)
	}
	return b.String()
}

// Do sends body (JSON-encoded unless nil) and decodes a JSON answer into out.
func (c *Client) Do(ctx context.Context, method, path string, body, out any, hdr ...string) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Key != "" {
		req.Header.Set("Authorization", "Bearer "+c.Key)
	}
	if c.Tenant != "" {
		req.Header.Set("X-Steward-Tenant", c.Tenant)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the server at %s: %w (is `steward server` running? set --server)", c.BaseURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		p := &Problem{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode)}
		if json.Unmarshal(data, p) != nil || p.Status == 0 {
			p.Status, p.Detail = resp.StatusCode, strings.TrimSpace(string(data))
		}
		return p
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decoding the answer of %s %s: %w", method, path, err)
		}
	}
	return nil
}
