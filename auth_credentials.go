package sechard

import "strings"

// Finding and verifying the bearer credential of a request; Auth.authenticate
// decides which credential counts.

// bearer returns the token of a single `Authorization: Bearer` header.
func (a *Auth) bearer(auth []string) (string, bool) {
	if len(auth) != 1 {
		return "", false
	}
	token, ok := bearerToken(auth[0])
	return token, ok && token != ""
}

// verifierFor is the verifier of a bearer token: the token service's own
// when the token carries one of its headers (each key set checks its own
// issuer), else the jwt block's; nil when neither is configured.
func (a *Auth) verifierFor(token string) *verifier {
	if a.issued.owns(token) {
		return a.issued.verifier
	}
	return a.jwt
}

// verifyBearer verifies a bearer token's signature and claims (a cached
// token skips the signature). Revocation and the certificate binding are
// the caller's: they depend on the request.
func (a *Auth) verifyBearer(token string) (*identity, *credError) {
	v := a.verifierFor(token)
	if v == nil {
		return nil, errJWTNotAccepted
	}
	if token == "" {
		return nil, errBearerMalformed
	}
	id, err := v.Verify(token, a.now())
	if err != nil {
		return nil, tokenError(err)
	}
	return id, nil
}

// bearerToken extracts the token of an `Authorization: Bearer` value (RFC
// 6750 §2.1; the scheme is case-insensitive). ok is false for other schemes.
func bearerToken(v string) (token string, ok bool) {
	const scheme = "bearer"
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	rest := v[len(scheme):]
	if rest == "" {
		return "", true
	}
	if rest[0] != ' ' {
		return "", false // "Bearerx": another scheme
	}
	return strings.TrimLeft(rest, " "), true
}
