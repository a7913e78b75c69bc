package identity

import (
	"errors"
	"fmt"
)

// Kind classifies a refusal; edges turn it into a status code.
type Kind int

const (
	// KindInvalid: the input is malformed (bad CSR, bad PEM, bad field).
	KindInvalid Kind = iota + 1
	// KindUnauthenticated: no credential, or one that does not prove anything.
	KindUnauthenticated
	// KindForbidden: a valid credential that may not do this now.
	KindForbidden
	// KindNotFound: the named thing does not exist (in this tenant).
	KindNotFound
	// KindConflict: the thing was already used, revoked or taken.
	KindConflict
	// KindUnavailable: the platform cannot answer now (e.g. no CRL signing right).
	KindUnavailable
)

// Reason codes: stable, machine-readable names of refusals, sent as the
// "reason" member of problem details and logged with every refusal.
const (
	ReasonNoCredential       = "no_credential"
	ReasonBadCSR             = "bad_csr"
	ReasonBadRequest         = "bad_request"
	ReasonUnknownCA          = "unknown_ca"
	ReasonCertExpired        = "certificate_expired"
	ReasonCertRevoked        = "certificate_revoked"
	ReasonUnknownCert        = "unknown_certificate"
	ReasonOperationalCert    = "operational_certificate"
	ReasonBadToken           = "bad_bootstrap_token"
	ReasonTokenUsed          = "bootstrap_token_used"
	ReasonTokenExpired       = "bootstrap_token_expired"
	ReasonTokenRevoked       = "bootstrap_token_revoked"
	ReasonBadClaimCode       = "bad_claim_code"
	ReasonClaimCodeUsed      = "claim_code_used"
	ReasonNotClaimed         = "not_claimed"
	ReasonUnknownDevice      = "unknown_device"
	ReasonDeviceState        = "device_state"
	ReasonKeyInUse           = "key_in_use"
	ReasonAmbiguousSerial    = "ambiguous_serial"
	ReasonSerialMismatch     = "serial_mismatch"
	ReasonAlreadyRevoked     = "already_revoked"
	ReasonInvalid            = "invalid"
	ReasonNotFound           = "not_found"
	ReasonConflict           = "conflict"
	ReasonCRLUnavailable     = "crl_unavailable"
	ReasonCertificateInvalid = "certificate_invalid"
)

// Error is a refusal with its kind, a reason code and a sentence that says
// what is wrong and, where it helps, what to do instead.
type Error struct {
	Kind   Kind
	Reason string
	Detail string
	// Field names the bad input field (e.g. "code"), when there is one.
	Field string
}

func (e *Error) Error() string { return e.Detail }

func refuse(k Kind, reason, format string, a ...any) *Error {
	return &Error{Kind: k, Reason: reason, Detail: fmt.Sprintf(format, a...)}
}

func invalidField(field, format string, a ...any) *Error {
	return &Error{Kind: KindInvalid, Reason: ReasonInvalid, Field: field, Detail: field + ": " + fmt.Sprintf(format, a...)}
}

// AsError returns err as an *Error when it is one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
