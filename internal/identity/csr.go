package identity

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxCSRSize bounds a certificate request in any encoding.
const MaxCSRSize = 16 << 10

// CSRError is a certificate request that cannot be accepted; the message
// says why.
type CSRError struct{ Msg string }

func (e *CSRError) Error() string { return "CSR: " + e.Msg }

func csrErr(format string, a ...any) error { return &CSRError{Msg: fmt.Sprintf(format, a...)} }

// ParseCSR decodes a PKCS#10 request given as DER, as base64 of the DER (the
// RFC 7030 wire form, line breaks allowed) or as PEM, then checks it with
// CheckCSR.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) > MaxCSRSize {
		return nil, csrErr("larger than %d bytes", MaxCSRSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, csrErr("the body is empty; send a base64-encoded DER PKCS#10 request")
	}
	der, err := csrDER(data)
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, csrErr("not a PKCS#10 certificate request: %v", err)
	}
	if err := CheckCSR(csr); err != nil {
		return nil, err
	}
	return csr, nil
}

func csrDER(data []byte) ([]byte, error) {
	// DER starts with a SEQUENCE tag (0x30; base64 of it starts with "M").
	// It is taken as is: trimming could cut signature bytes that happen to
	// look like white space.
	if data[0] == 0x30 {
		return data, nil
	}
	trimmed := bytes.TrimSpace(data)
	if bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		block, _ := pem.Decode(trimmed)
		if block == nil {
			return nil, csrErr("broken PEM")
		}
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return nil, csrErr("PEM block %q is not a CERTIFICATE REQUEST", block.Type)
		}
		return block.Bytes, nil
	}
	clean := make([]byte, 0, len(trimmed))
	for _, c := range trimmed {
		if c != '\r' && c != '\n' && c != ' ' && c != '\t' {
			clean = append(clean, c)
		}
	}
	der, err := base64.StdEncoding.DecodeString(string(clean))
	if err != nil {
		if der, err = base64.RawStdEncoding.DecodeString(string(clean)); err != nil {
			return nil, csrErr("not base64-encoded DER (nor DER or PEM): %v", err)
		}
	}
	return der, nil
}

// CheckCSR accepts a request whose signature verifies (the requester holds
// the key) and whose key is ECDSA P-256 or P-384, Ed25519, or RSA of 2048 to
// 8192 bits. Subject and extensions are not copied into the certificate
// (the platform sets them), but a subject serialNumber must be sane
// because enrollment may match a device by it.
func CheckCSR(csr *x509.CertificateRequest) error {
	if _, err := KeyAlgorithm(csr.PublicKey); err != nil {
		return &CSRError{Msg: err.Error()}
	}
	if err := csr.CheckSignature(); err != nil {
		return csrErr("the signature does not verify with the request's own key: %v", err)
	}
	if s := csr.Subject.SerialNumber; s != "" {
		if err := checkSerial(s); err != nil {
			return csrErr("subject serialNumber: %v", err)
		}
	}
	if cn := csr.Subject.CommonName; !utf8.ValidString(cn) || len(cn) > 256 {
		return csrErr("subject commonName is not valid UTF-8 of at most 256 bytes")
	}
	return nil
}

// KeyAlgorithm names an accepted public key, or says why it is refused.
func KeyAlgorithm(pub any) (string, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ECDSA-P256", nil
		case elliptic.P384():
			return "ECDSA-P384", nil
		}
		return "", fmt.Errorf("ECDSA curve %s is not accepted; use P-256 or P-384", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return "Ed25519", nil
	case *rsa.PublicKey:
		n := k.N.BitLen()
		if n < 2048 {
			return "", fmt.Errorf("RSA key of %d bits is too weak; use at least 2048 bits (or ECDSA P-256)", n)
		}
		if n > 8192 {
			return "", fmt.Errorf("RSA key of %d bits is larger than 8192 bits", n)
		}
		return fmt.Sprintf("RSA-%d", n), nil
	case nil:
		return "", errors.New("the public key algorithm is not supported; use ECDSA P-256")
	}
	return "", fmt.Errorf("public key type %T is not accepted; use ECDSA P-256", pub)
}

// KeyFingerprint is the hex SHA-256 of a public key's DER SubjectPublicKeyInfo.
func KeyFingerprint(pub any) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:]), nil
}

// checkSerial accepts what the registry accepts as a device serial:
// 1-128 characters of letters, digits and -_.:/
func checkSerial(v string) error {
	if v == "" || len(v) > 128 {
		return errors.New("must be 1 to 128 characters")
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == ':' || r == '/') {
			return fmt.Errorf("may only hold letters, digits and -_.:/ (found %q)", r)
		}
	}
	return nil
}
