package jwtverify

// Kind says why a token was refused. The caller maps it to what the client
// and the audit log see; nothing needs to match an error's text.
type Kind uint8

// The kinds of refusal, in no particular order.
const (
	TooLarge                Kind = iota + 1 // longer than MaxTokenSize
	Malformed                               // not a compact JWS, bad base64url or JSON, a claim of the wrong type
	DuplicateMember                         // a JSON member named twice (also differing only in case)
	CriticalHeader                          // a `crit` header: no extension is understood
	AlgorithmRefused                        // alg not allowed, unknown, or not the key's
	NoKeyID                                 // no kid, and more than one key is configured
	UnknownKey                              // a kid no configured key has
	BadSignature                            // the signature does not verify
	Expired                                 // exp (plus leeway) has passed
	NotYetValid                             // nbf (minus leeway) is in the future
	IssuedInFuture                          // iat (minus leeway) is in the future
	NoExpiry                                // no exp claim
	NoIssuedAt                              // no iat claim
	LifetimeTooLong                         // exp - iat exceeds the maximum lifetime
	WrongIssuer                             // iss missing or not the configured issuer
	WrongAudience                           // aud missing or without the configured audience
	InvalidClaims                           // any other claim check golang-jwt failed
	UnsupportedConfirmation                 // a cnf claim other than one well-formed x5t#S256
)

var kindNames = [...]string{
	TooLarge:                "token too large",
	Malformed:               "malformed token",
	DuplicateMember:         "duplicate JSON member in token",
	CriticalHeader:          "unsupported critical header",
	AlgorithmRefused:        "algorithm not accepted",
	NoKeyID:                 "token has no kid",
	UnknownKey:              "unknown key",
	BadSignature:            "invalid signature",
	Expired:                 "token expired",
	NotYetValid:             "token not valid yet",
	IssuedInFuture:          "token issued in the future",
	NoExpiry:                "token has no exp",
	NoIssuedAt:              "token has no iat",
	LifetimeTooLong:         "token lifetime exceeds max_ttl",
	WrongIssuer:             "wrong issuer",
	WrongAudience:           "wrong audience",
	InvalidClaims:           "invalid claims",
	UnsupportedConfirmation: "unsupported token confirmation method (cnf)",
}

// String is a short description of the kind, fit for an error_description.
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "invalid token"
}

// Error is a refused token. [Verifier.Verify] returns only *Error values,
// one shared value per kind, so a refusal allocates nothing.
type Error struct {
	Kind Kind
}

func (e *Error) Error() string { return e.Kind.String() }

// Is reports whether target is an *Error of the same kind, so that
// errors.Is(err, &jwtverify.Error{Kind: jwtverify.Expired}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Kind == e.Kind
}

var refusals [len(kindNames)]Error

func init() {
	for k := range refusals {
		refusals[k].Kind = Kind(k)
	}
}

// refuse returns the shared *Error of kind k.
func refuse(k Kind) *Error { return &refusals[k] }

var _ error = (*Error)(nil)
