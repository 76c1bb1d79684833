package sechard

import (
	"slices"
	"strings"
	"time"

	"github.com/sechard/sechard/internal/jwtverify"
	"go.uber.org/zap/zapcore"
)

// identity is who a credential proved to be. It is immutable once built and
// shared between requests (cached tokens).
type identity struct {
	method  string // "jwt", "api_key" or "mtls"
	subject string // the token's sub, the API key's name, or the client_cert identity
	scopes  []string
	joined  string // scopes, space-separated
	full    bool   // legacy API key with full access
	jti     string
	iat     time.Time
	// bound is the client certificate a JWT is bound to (cnf.x5t#S256,
	// RFC 8705 §3), nil for a plain bearer token. It is checked against
	// the request's connection on every request, cached token or not.
	bound *certBinding

	// The placeholder values, boxed once by seal: an identity is shared
	// (by every request of an API key, by the token cache), and boxing a
	// string for the replacer allocates.
	boxedSubject, boxedScopes, boxedMethod any
}

// seal computes the derived fields of a complete identity; after it, the
// identity is read-only and may be shared between requests.
func (id *identity) seal() *identity {
	id.joined = strings.Join(id.scopes, " ")
	id.boxedSubject, id.boxedScopes, id.boxedMethod = id.subject, id.joined, id.method
	return id
}

// jwtIdentity is the identity of a verified token's claims; the verifiers
// cache it with the token.
func jwtIdentity(c jwtverify.Claims) *identity {
	id := &identity{method: "jwt", subject: c.Subject, scopes: c.Scopes, jti: c.ID, iat: c.IssuedAt}
	if c.Cert.X5tS256 != "" {
		id.bound = &certBinding{sum: c.Cert.SHA256, x5t: c.Cert.X5tS256}
	}
	return id.seal()
}

// MarshalLogObject writes the allowed decision's fields on Caddy's access
// log line (audit_allows access_log); user_id is there already.
func (id *identity) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("auth_method", id.method)
	if id.method == authMethodAPIKey {
		enc.AddString("auth_key", id.subject)
	}
	if id.full {
		enc.AddBool("auth_full_access", true)
	} else {
		enc.AddString("auth_scopes", id.joined)
	}
	if id.jti != "" {
		enc.AddString("auth_jti", id.jti)
	}
	return nil
}

var _ zapcore.ObjectMarshaler = (*identity)(nil)

func (id *identity) has(scope string) bool {
	return id.full || slices.Contains(id.scopes, scope)
}

// credError is a rejected credential; desc becomes the error_description
// of the 401 (short, fixed strings; never token content).
type credError struct {
	reason string
	desc   string
}

func (e *credError) Error() string { return e.desc }

var (
	errTokenTooLarge   = &credError{"auth_invalid", "token too large"}
	errTokenMalformed  = &credError{"auth_invalid", "malformed token"}
	errTokenDuplicate  = &credError{"auth_invalid", "duplicate JSON member in token"}
	errTokenCrit       = &credError{"auth_invalid", "unsupported critical header"}
	errTokenAlg        = &credError{"auth_invalid", "algorithm not accepted"}
	errTokenKID        = &credError{"auth_invalid", "unknown key"}
	errTokenNoKID      = &credError{"auth_invalid", "token has no kid"}
	errTokenSignature  = &credError{"auth_invalid", "invalid signature"}
	errTokenExpired    = &credError{"auth_invalid", "token expired"}
	errTokenNotYet     = &credError{"auth_invalid", "token not valid yet"}
	errTokenIAT        = &credError{"auth_invalid", "token issued in the future"}
	errTokenNoExp      = &credError{"auth_invalid", "token has no exp"}
	errTokenNoIAT      = &credError{"auth_invalid", "token has no iat"}
	errTokenTTL        = &credError{"auth_invalid", "token lifetime exceeds max_ttl"}
	errTokenIssuer     = &credError{"auth_invalid", "wrong issuer"}
	errTokenAudience   = &credError{"auth_invalid", "wrong audience"}
	errTokenClaims     = &credError{"auth_invalid", "invalid claims"}
	errTokenRevoked    = &credError{"auth_invalid", "token revoked"}
	errKeyUnknown      = &credError{"auth_invalid", "unknown API key"}
	errKeyDisabled     = &credError{"api_key_disabled", "API keys are no longer accepted; use a JWT"}
	errCredAmbiguous   = &credError{"auth_invalid", "more than one credential header"}
	errBearerMalformed = &credError{"auth_invalid", "malformed bearer credential"}
	errJWTNotAccepted  = &credError{"auth_invalid", "bearer tokens are not configured"}
)

// tokenErrors are the refusals of a token by the kind of its
// jwtverify.Error.
var tokenErrors = map[jwtverify.Kind]*credError{
	jwtverify.TooLarge:                errTokenTooLarge,
	jwtverify.Malformed:               errTokenMalformed,
	jwtverify.DuplicateMember:         errTokenDuplicate,
	jwtverify.CriticalHeader:          errTokenCrit,
	jwtverify.AlgorithmRefused:        errTokenAlg,
	jwtverify.NoKeyID:                 errTokenNoKID,
	jwtverify.UnknownKey:              errTokenKID,
	jwtverify.BadSignature:            errTokenSignature,
	jwtverify.Expired:                 errTokenExpired,
	jwtverify.NotYetValid:             errTokenNotYet,
	jwtverify.IssuedInFuture:          errTokenIAT,
	jwtverify.NoExpiry:                errTokenNoExp,
	jwtverify.NoIssuedAt:              errTokenNoIAT,
	jwtverify.LifetimeTooLong:         errTokenTTL,
	jwtverify.WrongIssuer:             errTokenIssuer,
	jwtverify.WrongAudience:           errTokenAudience,
	jwtverify.InvalidClaims:           errTokenClaims,
	jwtverify.UnsupportedConfirmation: errTokenCnf,
}

// tokenError is the refusal of a token the verifier did not accept.
func tokenError(err error) *credError {
	if e, ok := err.(*jwtverify.Error); ok {
		if ce := tokenErrors[e.Kind]; ce != nil {
			return ce
		}
	}
	return errTokenClaims
}
