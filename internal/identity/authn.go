// Package identity is the platform's device PKI: the built-in (or imported)
// CA, certificate issuance, enrollment, claim codes, bootstrap tokens,
// rotation and revocation. This file is the contract the MQTT broker and
// the EST endpoint rely on to learn who a connecting device is.
package identity

import (
	"context"
	"crypto/x509"
	"errors"
)

// Method is how a device proved who it is.
type Method string

const (
	MethodCertificate Method = "certificate" // mTLS with a platform-issued certificate
	MethodToken       Method = "token"       // device token over TLS (constrained devices)
)

// Device is an authenticated device identity.
type Device struct {
	TenantID   string
	DeviceID   string
	Method     Method
	CertSerial string // hex serial of the presented certificate (certificate method)
}

// Authentication failures, so edges can answer with the right reason code.
var (
	ErrUnknownIdentity = errors.New("identity: not a known device credential")
	ErrRevoked         = errors.New("identity: credential revoked")
	ErrExpired         = errors.New("identity: credential expired")
	// ErrNotAllowed: the device exists but its lifecycle state forbids
	// connecting (suspended, decommissioned, not yet provisioned).
	ErrNotAllowed = errors.New("identity: device may not connect in its current state")
)

// Authenticator turns presented credentials into a device identity.
type Authenticator interface {
	// AuthenticateCert checks a verified-or-not peer chain (leaf first):
	// issued by the platform CA, not expired, not revoked, device allowed.
	// With ErrRevoked it also returns whose certificate it was.
	AuthenticateCert(ctx context.Context, chain []*x509.Certificate) (*Device, error)
	// AuthenticateToken checks a device token presented as MQTT
	// username (device ID) and password (token).
	AuthenticateToken(ctx context.Context, deviceID, token string) (*Device, error)
}
