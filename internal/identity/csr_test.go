package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func csrFor(t testing.TB, key crypto.Signer, subject pkix.Name) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

var (
	keysOnce sync.Once
	p256     *ecdsa.PrivateKey
	p384     *ecdsa.PrivateKey
	p224     *ecdsa.PrivateKey
	edKey    ed25519.PrivateKey
	rsa2048  *rsa.PrivateKey
	rsa1024  *rsa.PrivateKey
)

func testKeys() {
	keysOnce.Do(func() {
		p256, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		p384, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		p224, _ = ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
		_, edKey, _ = ed25519.GenerateKey(rand.Reader)
		rsa2048, _ = rsa.GenerateKey(rand.Reader, 2048)
		rsa1024, _ = rsa.GenerateKey(rand.Reader, 1024)
	})
}

func TestParseCSR(t *testing.T) {
	testKeys()
	good := csrFor(t, p256, pkix.Name{SerialNumber: "SN-1"})
	b64 := base64.StdEncoding.EncodeToString(good)
	wrapped := b64[:40] + "\r\n" + b64[40:] + "\n"
	badSig := append([]byte(nil), good...)
	badSig[len(badSig)-2] ^= 0x55
	cases := []struct {
		name string
		in   []byte
		want string // "" = accepted; otherwise part of the error
	}{
		{"DER P-256", good, ""},
		{"base64", []byte(b64), ""},
		{"base64 with line breaks", []byte(wrapped), ""},
		{"base64 without padding", []byte(strings.TrimRight(b64, "=")), ""},
		{"PEM", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: good}), ""},
		{"P-384", csrFor(t, p384, pkix.Name{}), ""},
		{"Ed25519", csrFor(t, edKey, pkix.Name{}), ""},
		{"RSA 2048", csrFor(t, rsa2048, pkix.Name{}), ""},
		{"RSA 1024", csrFor(t, rsa1024, pkix.Name{}), "at least 2048"},
		{"P-224", csrFor(t, p224, pkix.Name{}), "P-224"},
		{"broken signature", badSig, "signature"},
		{"empty", nil, "empty"},
		{"garbage", []byte("hello, world"), "base64"},
		{"base64 of garbage", []byte(base64.StdEncoding.EncodeToString([]byte("not DER"))), "PKCS#10"},
		{"truncated DER", good[:len(good)/2], "PKCS#10"},
		{"a certificate in PEM", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: good}), "not a CERTIFICATE REQUEST"},
		{"broken PEM", []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAA"), "PEM"},
		{"too large", make([]byte, MaxCSRSize+1), "larger"},
		{"bad serial", csrFor(t, p256, pkix.Name{SerialNumber: "SN 1; drop"}), "serialNumber"},
		{"DER ending in a white-space byte", derEndingInSpace(t), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			csr, err := ParseCSR(c.in)
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if csr.PublicKey == nil {
					t.Fatal("no key")
				}
				return
			}
			var ce *CSRError
			if err == nil || !errors.As(err, &ce) {
				t.Fatalf("want a CSR error with %q, got %v", c.want, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
		})
	}
}

var (
	fuzzCAOnce sync.Once
	fuzzCA     *CA
)

// FuzzParseCSR feeds arbitrary bytes to the CSR handling of enrollment.
// It must never panic, and whatever it accepts must be a request whose
// signature verifies with an accepted key, from which a device
// certificate can be issued that verifies against the CA. The seed corpus
// in testdata/fuzz/FuzzParseCSR holds valid requests of every accepted
// key type in every accepted encoding, and refused ones of each kind.
//
//	go test ./internal/identity -run '^$' -fuzz FuzzParseCSR -fuzztime 60s
func FuzzParseCSR(f *testing.F) {
	fuzzCAOnce.Do(func() {
		var err error
		if fuzzCA, err = LoadOrCreateCA(PKIConfig{Dir: f.TempDir()}); err != nil {
			f.Fatal(err)
		}
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ParseCSR(data)
		if err != nil {
			var ce *CSRError
			if !errors.As(err, &ce) {
				t.Fatalf("ParseCSR returned a %T, not a *CSRError: %v", err, err)
			}
			return
		}
		if _, err := KeyAlgorithm(csr.PublicKey); err != nil {
			t.Fatalf("accepted a refused key: %v", err)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a request whose signature does not verify: %v", err)
		}
		c, err := fuzzCA.IssueDevice(DeviceCertRequest{DeviceID: "dev_fuzz", PublicKey: csr.PublicKey, Validity: time.Hour})
		if err != nil {
			t.Fatalf("accepted a request that cannot be certified: %v", err)
		}
		if _, err := c.Verify(fuzzCA.VerifyOptions(time.Now())); err != nil {
			t.Fatalf("issued certificate does not verify: %v", err)
		}
		if _, err := KeyFingerprint(csr.PublicKey); err != nil {
			t.Fatal(err)
		}
	})
}

// TestWriteFuzzSeeds regenerates the seed corpus of FuzzParseCSR:
//
//	STEWARD_WRITE_FUZZ_SEEDS=1 go test ./internal/identity -run TestWriteFuzzSeeds
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("STEWARD_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set STEWARD_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz/FuzzParseCSR")
	}
	testKeys()
	good := csrFor(t, p256, pkix.Name{SerialNumber: "SN-0001", CommonName: "SN-0001"})
	b64 := base64.StdEncoding.EncodeToString(good)
	badSig := append([]byte(nil), good...)
	badSig[len(badSig)-2] ^= 0x55
	seeds := map[string][]byte{
		"p256-der":          good,
		"p256-base64":       []byte(b64),
		"p256-base64-lines": []byte(b64[:64] + "\r\n" + b64[64:] + "\r\n"),
		"p256-pem":          pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: good}),
		"p384-der":          csrFor(t, p384, pkix.Name{CommonName: "dev"}),
		"ed25519-der":       csrFor(t, edKey, pkix.Name{SerialNumber: "ED-1"}),
		"rsa2048-base64":    []byte(base64.StdEncoding.EncodeToString(csrFor(t, rsa2048, pkix.Name{}))),
		"rsa1024-refused":   csrFor(t, rsa1024, pkix.Name{}),
		"p224-refused":      csrFor(t, p224, pkix.Name{}),
		"bad-signature":     badSig,
		"truncated":         good[:len(good)/2],
		"bad-serial":        csrFor(t, p256, pkix.Name{SerialNumber: "SN 1;x"}),
		"certificate-pem":   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: good}),
		"garbage":           []byte("not a certificate request"),
		"empty":             {},
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParseCSR")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// derEndingInSpace is a valid DER request whose last byte looks like white
// space, which must not be trimmed away.
func derEndingInSpace(t *testing.T) []byte {
	for range 10000 {
		der := csrFor(t, p256, pkix.Name{})
		switch der[len(der)-1] {
		case ' ', '\t', '\n', '\r', '\v', '\f':
			return der
		}
	}
	t.Fatal("no request ending in a white-space byte in 10000 tries")
	return nil
}

func TestMain(m *testing.M) {
	// Cheap key encryption in tests: the parameters are stored with each
	// key, so decryption follows them.
	argonTime, argonMemory, argonThreads = 1, 8*1024, 1
	os.Exit(m.Run())
}
