// Package est is the device enrollment edge: an HTTPS listener with the
// RFC 7030 (Enrollment over Secure Transport) routes devices use to get,
// and renew, their operational certificates from the platform CA.
//
//	GET  /.well-known/est/cacerts         the CA chain (base64 PKCS#7 certs-only)
//	POST /.well-known/est/simpleenroll    base64 DER PKCS#10 in, base64 PKCS#7 certificate out
//	POST /.well-known/est/simplereenroll  the same, authenticated by the current certificate
//	GET  /pki/crl, /pki/ca.crt            the CRL (DER) and the CA chain (PEM)
//
// The listener asks for (but does not require) a TLS client certificate,
// so a device can present its factory certificate or its operational one.
// Enrollment credentials: a factory client certificate, "Authorization:
// Bearer stb_…" (bootstrap token) or "Authorization: Basic" with the
// device serial as user name and its claim code as password. Every refusal
// is RFC 9457 problem details with a "reason" code, and is logged.
package est

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/steward-iot/steward/internal/identity"
)

// Paths of the routes.
const (
	PathCACerts        = "/.well-known/est/cacerts"
	PathSimpleEnroll   = "/.well-known/est/simpleenroll"
	PathSimpleReenroll = "/.well-known/est/simplereenroll"
	PathCRL            = "/pki/crl"
	PathCACert         = "/pki/ca.crt"

	// ContentTypeCerts is the answer to cacerts and (re)enroll.
	ContentTypeCerts = "application/pkcs7-mime; smime-type=certs-only"
	// ContentTypeCSR is what (re)enroll accepts.
	ContentTypeCSR = "application/pkcs10"

	maxBody     = 64 << 10
	problemBase = "https://steward.dev/problems/"
)

// Server serves the enrollment routes.
type Server struct {
	svc *identity.Service
	log *slog.Logger
	mux *http.ServeMux

	srv *http.Server
	ln  net.Listener
}

// New returns the enrollment edge over svc.
func New(svc *identity.Service, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{svc: svc, log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc(PathCACerts, s.cacerts)
	s.mux.HandleFunc(PathSimpleEnroll, s.enroll)
	s.mux.HandleFunc(PathSimpleReenroll, s.enroll)
	s.mux.HandleFunc(PathCRL, s.crl)
	s.mux.HandleFunc(PathCACert, s.caPEM)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.problem(w, r, http.StatusNotFound, "not_found", "no such enrollment route; see "+PathSimpleEnroll)
	})
	return s
}

// Handle mounts another device-facing handler on the enrollment listener
// (e.g. the certificate-authenticated update routes under /device/v1/).
// pattern is a net/http ServeMux pattern; call it before Start.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Handler is the HTTP handler (also usable behind another TLS listener
// that passes client certificates through r.TLS). A panic in a request is
// logged as an error and answered with a 500 problem; the server goes on.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in an enrollment request", "value", fmt.Sprint(v), "path", r.URL.Path, "remote", r.RemoteAddr,
					"stack", string(debug.Stack()))
				s.problem(w, r, http.StatusInternalServerError, "internal", "internal error; the server log has the details")
			}
		}()
		s.mux.ServeHTTP(w, r)
	})
}

// TLSConfig serves cert and requests an optional client certificate.
func TLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert}
}

// Start listens on addr with a server certificate from the platform CA for
// hosts (names and IP addresses) and serves until Shutdown.
func (s *Server) Start(addr string, hosts []string) error {
	cert, err := s.svc.CA().ServerCertificate(hosts)
	if err != nil {
		return fmt.Errorf("est: server certificate: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("est: listening on %s: %w (change est.listen)", addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.Handler(), TLSConfig: TLSConfig(cert), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	go func() {
		if err := s.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("enrollment server stopped", "err", err)
		}
	}()
	return nil
}

// Addr is the bound address ("" before Start).
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops accepting and waits for running requests.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

// ---- handlers ----

func (s *Server) cacerts(w http.ResponseWriter, r *http.Request) {
	if !s.method(w, r, http.MethodGet) {
		return
	}
	var der []byte
	for _, c := range s.svc.CA().Chain {
		der = append(der, c.Raw...)
	}
	s.writeCerts(w, der)
}

func (s *Server) crl(w http.ResponseWriter, r *http.Request) {
	if !s.method(w, r, http.MethodGet) {
		return
	}
	der, err := s.svc.CRL(r.Context())
	if err != nil {
		s.fail(w, r, "crl", err)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Header().Set("Cache-Control", "max-age=60")
	w.Write(der)
}

func (s *Server) caPEM(w http.ResponseWriter, r *http.Request) {
	if !s.method(w, r, http.MethodGet) {
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(s.svc.CA().ChainPEM())
}

// enroll serves simpleenroll and simplereenroll.
func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	if !s.method(w, r, http.MethodPost) {
		return
	}
	op := "simpleenroll"
	if r.URL.Path == PathSimpleReenroll {
		op = "simplereenroll"
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != ContentTypeCSR {
			s.refuse(w, r, op, &identity.Error{Kind: identity.KindInvalid, Reason: "unsupported_media_type",
				Detail: fmt.Sprintf("Content-Type %q: send the CSR as %s (base64-encoded DER)", ct, ContentTypeCSR)}, http.StatusUnsupportedMediaType)
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		s.refuse(w, r, op, &identity.Error{Kind: identity.KindInvalid, Reason: "too_large",
			Detail: fmt.Sprintf("the request body is larger than %d bytes", maxBody)}, http.StatusRequestEntityTooLarge)
		return
	}
	var peer []*x509.Certificate
	if r.TLS != nil {
		peer = r.TLS.PeerCertificates
	}
	var res *identity.Enrolled
	if op == "simplereenroll" {
		res, err = s.svc.Renew(r.Context(), peer, body)
	} else {
		cred := identity.Credential{PeerCerts: peer}
		if err := credential(r, &cred); err != nil {
			s.fail(w, r, op, err)
			return
		}
		res, err = s.svc.Enroll(r.Context(), cred, body)
	}
	if err != nil {
		s.fail(w, r, op, err)
		return
	}
	s.log.Info("enrolled", "op", op, "tenant", res.Device.TenantID, "device", res.Device.ID, "serial", res.Record.Serial,
		"method", res.Record.Method, "remote", r.RemoteAddr)
	s.writeCerts(w, res.Cert.Raw)
}

// credential reads the Authorization header: a bootstrap token (Bearer) or
// a device serial and claim code (Basic).
func credential(r *http.Request, c *identity.Credential) error {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil
	}
	scheme, value, _ := strings.Cut(h, " ")
	value = strings.TrimSpace(value)
	switch strings.ToLower(scheme) {
	case "bearer":
		c.BootstrapToken = value
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			return &identity.Error{Kind: identity.KindUnauthenticated, Reason: identity.ReasonBadClaimCode,
				Detail: "Authorization: Basic must carry base64 of \"<device serial>:<claim code>\""}
		}
		serial, code, ok := strings.Cut(string(raw), ":")
		if !ok || code == "" {
			return &identity.Error{Kind: identity.KindUnauthenticated, Reason: identity.ReasonBadClaimCode,
				Detail: "Authorization: Basic must carry \"<device serial>:<claim code>\""}
		}
		c.ClaimSerial, c.ClaimCode = serial, code
	default:
		return &identity.Error{Kind: identity.KindUnauthenticated, Reason: identity.ReasonNoCredential,
			Detail: fmt.Sprintf("Authorization scheme %q is not accepted; use Bearer (bootstrap token) or Basic (serial:claim code)", scheme)}
	}
	return nil
}

// writeCerts answers with a base64 PKCS#7 certs-only structure (RFC 7030 §4.1.3, §4.2.3).
func (s *Server) writeCerts(w http.ResponseWriter, der []byte) {
	p7, err := pkcs7.DegenerateCertificate(der)
	if err != nil {
		s.log.Error("encoding PKCS#7", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ContentTypeCerts)
	w.Header().Set("Content-Transfer-Encoding", "base64")
	w.Write(wrap76(base64.StdEncoding.EncodeToString(p7)))
}

// wrap76 breaks base64 into lines of 76 characters (RFC 2045). Lines end
// in LF, which MIME decoders and shell tools (base64 -d) both accept.
func wrap76(s string) []byte {
	var b bytes.Buffer
	for len(s) > 76 {
		b.WriteString(s[:76])
		b.WriteByte('\n')
		s = s[76:]
	}
	b.WriteString(s)
	b.WriteByte('\n')
	return b.Bytes()
}

func (s *Server) method(w http.ResponseWriter, r *http.Request, m string) bool {
	if r.Method == m || (m == http.MethodGet && r.Method == http.MethodHead) {
		return true
	}
	w.Header().Set("Allow", m)
	s.problem(w, r, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; use "+m)
	return false
}

// fail answers a refusal (an *identity.Error) or an internal error.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	e, ok := identity.AsError(err)
	if !ok {
		if errors.Is(err, context.Canceled) {
			return
		}
		s.log.Error("enrollment failed", "op", op, "err", err, "remote", r.RemoteAddr)
		s.problem(w, r, http.StatusInternalServerError, "internal", "internal error; the server log has the details")
		return
	}
	s.refuse(w, r, op, e, status(e.Kind))
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, op string, e *identity.Error, code int) {
	attrs := []any{"op", op, "status", code, "reason", e.Reason, "detail", e.Detail, "remote", r.RemoteAddr}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		c := r.TLS.PeerCertificates[0]
		attrs = append(attrs, "client_cert_subject", c.Subject.String(), "client_cert_issuer", c.Issuer.String())
	}
	s.log.Warn("enrollment refused", attrs...)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="steward-est", Bearer realm="steward-est"`)
	}
	s.problem(w, r, code, e.Reason, e.Detail)
}

func status(k identity.Kind) int {
	switch k {
	case identity.KindInvalid:
		return http.StatusBadRequest
	case identity.KindUnauthenticated:
		return http.StatusUnauthorized
	case identity.KindForbidden:
		return http.StatusForbidden
	case identity.KindNotFound:
		return http.StatusNotFound
	case identity.KindConflict:
		return http.StatusConflict
	case identity.KindUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Problem is the RFC 9457 body of every refusal.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	// Reason is a stable code for the refusal (e.g. certificate_revoked).
	Reason string `json:"reason"`
}

func (s *Server) problem(w http.ResponseWriter, r *http.Request, code int, reason, detail string) {
	b, _ := json.Marshal(Problem{Type: problemBase + strings.ReplaceAll(reason, "_", "-"), Title: http.StatusText(code),
		Status: code, Detail: detail, Reason: reason})
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(b)
}
