package jwtverify

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/golang-jwt/jwt/v5"
)

// Claims are the verified claims of a token, what the caller builds its
// notion of the client from.
type Claims struct {
	Subject   string    // sub
	ID        string    // jti
	IssuedAt  time.Time // iat
	ExpiresAt time.Time // exp
	// Scopes are the scopes of the `scopes` array, the space-separated
	// `scope` string and `scp` (either form), in that order, without
	// duplicates or empty strings.
	Scopes []string
	// Cert is the client certificate the token is bound to (RFC 8705 §3);
	// its X5tS256 is "" for a plain bearer token.
	Cert CertBinding
}

// CertBinding is a `cnf` claim's x5t#S256 (RFC 8705 §3.1): the SHA-256
// thumbprint of the certificate a request carrying the token must present.
type CertBinding struct {
	X5tS256 string   // as in the token: 43 characters of unpadded base64url
	SHA256  [32]byte // X5tS256 decoded
}

// tokenClaims are the claims read from a token; a typed struct, so that a
// present-but-zero `exp` is an expired token, never a missing one.
type tokenClaims struct {
	jwt.RegisteredClaims
	Scopes []string   `json:"scopes,omitempty"` // an array; a string here is a malformed token
	Scope  *string    `json:"scope,omitempty"`
	Scp    *scopeList `json:"scp,omitempty"` // either form
	// Cnf binds the token to a client certificate (RFC 8705 §3).
	Cnf confirmation `json:"cnf"`
}

// claimsOptions decode claims with exact name matching (encoding/json, which
// golang-jwt uses, would read "SUB" as sub) and NumericDates as JSON numbers
// only (golang-jwt's would take "1796000000", RFC 7519 §2 says a number).
var claimsOptions = jsonv2.WithUnmarshalers(jsonv2.UnmarshalFromFunc(func(dec *jsontext.Decoder, _ *jwt.NumericDate) error {
	if k := dec.PeekKind(); k != '0' && k != 'n' {
		return errors.New("NumericDate must be a JSON number")
	}
	return jsonv2.SkipFunc // golang-jwt's own decoding
}))

// UnmarshalJSON is called by golang-jwt's decoder.
func (c *tokenClaims) UnmarshalJSON(b []byte) error {
	type plain tokenClaims // without this method
	return jsonv2.Unmarshal(b, (*plain)(c), claimsOptions)
}

// scopes gathers the scopes of every form, without duplicates.
func (c *tokenClaims) scopes() []string {
	var s []string
	s = append(s, c.Scopes...)
	if c.Scope != nil {
		s = append(s, strings.Fields(*c.Scope)...)
	}
	if c.Scp != nil {
		s = append(s, c.Scp.list...)
	}
	return NormalizeScopes(s)
}

// NormalizeScopes drops empty strings and repeats from s, in place, keeping
// the order: what a token's scopes become, and so what a configured scope
// list compared against them should become too.
func NormalizeScopes(s []string) []string {
	out := s[:0]
	for i, x := range s {
		if x != "" && !slices.Contains(s[:i], x) {
			out = append(out, x)
		}
	}
	return out
}

// scopeList is a JSON array of scope strings or, where allowed, one
// space-separated string.
type scopeList struct {
	list []string
}

func (s *scopeList) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		s.list = strings.Fields(str)
		return nil
	}
	return json.Unmarshal(b, &s.list)
}

// cnfX5tS256 is RFC 8705 §3.1's confirmation method.
const cnfX5tS256 = "x5t#S256"

// confirmation is the `cnf` claim (RFC 7800 §3.1) as read from a token.
type confirmation struct {
	present bool   // the claim was there (null included)
	x5t     string // x5t#S256 as sent
	unknown bool   // another member, a non-string x5t#S256, or not an object
}

// UnmarshalJSON reads `cnf`: an object whose only known member is x5t#S256
// (a string). Anything else is recorded as unknown, so the verifier refuses
// the token after its signature checked out. Member names match exactly;
// duplicates were refused before.
func (c *confirmation) UnmarshalJSON(b []byte) error {
	c.present = true
	var members map[string]jsontext.Value
	if err := jsonv2.Unmarshal(b, &members); err != nil || members == nil {
		c.unknown = true // null, an array, a string...
		return nil
	}
	for name, v := range members {
		if name != cnfX5tS256 || v.Kind() != '"' {
			c.unknown = true
			continue
		}
		if err := jsonv2.Unmarshal(v, &c.x5t); err != nil {
			c.unknown = true
		}
	}
	if len(members) == 0 {
		c.unknown = true // a confirmation without a method confirms nothing
	}
	return nil
}

// strictB64 is canonical, unpadded base64url: no stray bits.
var strictB64 = base64.RawURLEncoding.Strict()

// binding turns a decoded cnf claim into the certificate thumbprint a
// request must match. An unknown confirmation method (DPoP's jkt, RFC 9449;
// a raw jwk, RFC 7800) is refused, never ignored: ignoring it would turn a
// token its issuer meant to be sender-constrained into a plain bearer
// token. It is called only once the token's signature verified.
func (c *confirmation) binding() (CertBinding, error) {
	var b CertBinding
	if !c.present {
		return b, nil
	}
	if c.unknown {
		return b, refuse(UnsupportedConfirmation)
	}
	// A thumbprint is 32 bytes in canonical, unpadded base64url; anything
	// else can match no certificate: refuse it as malformed.
	if n, err := strictB64.Decode(b.SHA256[:], []byte(c.x5t)); err != nil || n != len(b.SHA256) || len(c.x5t) != 43 {
		return CertBinding{}, refuse(UnsupportedConfirmation)
	}
	b.X5tS256 = c.x5t
	return b, nil
}

// golang-jwt decodes claims with encoding/json: without these methods the
// exact-name, number-only and cnf rules would silently not apply.
var (
	_ json.Unmarshaler = (*tokenClaims)(nil)
	_ json.Unmarshaler = (*scopeList)(nil)
	_ json.Unmarshaler = (*confirmation)(nil)
	_ jwt.Claims       = (*tokenClaims)(nil)
)
