package jwtverify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenSize is the longest token verified; a longer one is refused
// before any decoding.
const MaxTokenSize = 8 << 10

// Algorithms are the JWS algorithms a Verifier can accept: the asymmetric
// ones golang-jwt implements. `none` and HMAC (HS*) are never accepted.
var Algorithms = []string{"ES256", "ES384", "ES512", "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// CheckAlgorithms reports the first of algs that is not in [Algorithms].
func CheckAlgorithms(algs []string) error {
	for _, a := range algs {
		if !slices.Contains(Algorithms, a) {
			return fmt.Errorf("algorithm %q is not accepted (supported: %s; none and HMAC never are)", a, strings.Join(Algorithms, " "))
		}
	}
	return nil
}

// Config configures a Verifier.
type Config struct {
	// Algorithms are the accepted `alg` values, a subset of [Algorithms].
	Algorithms []string
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway time.Duration
	// MaxTTL is the longest accepted lifetime, exp - iat.
	MaxTTL time.Duration
	// Issuer is the required iss; not checked when "".
	Issuer string
	// Audience: the token's aud must contain one of these; not checked
	// when none is given ("" entries are ignored).
	Audience []string
	// Now is the clock.
	Now func() time.Time
	// Keys are the static keys. When two share a kid, the first wins.
	Keys []*Key
	// JWKS, when set, adds the keys of a JWKS URL.
	JWKS *RemoteConfig
}

// Verifier checks compact JWS tokens (RFC 7515, RFC 7519) and turns their
// claims into a T, the caller's notion of a client, which it caches with
// the token. It is built once and safe for concurrent use.
type Verifier[T any] struct {
	parser *jwt.Parser
	algs   []string
	keys   atomic.Pointer[keySet]
	static []*Key
	remote *Remote // nil without a JWKS URL
	leeway time.Duration
	maxTTL time.Duration
	// issuer and audience are checked by the parser; they are kept to tell
	// which required claim it found missing.
	issuer   string
	audience []string
	accept   func(Claims) T
	cache    *tokenCache[T] // nil: no caching
}

// New builds a Verifier. accept turns the claims of a token that verified
// into the value Verify returns; that value is cached and returned for the
// same token again, so it must be immutable. With a JWKS URL, the first
// fetch happens here (it failing is an error only when Keys is empty), and
// the background refresh runs until ctx is done.
func New[T any](ctx context.Context, c Config, accept func(Claims) T) (*Verifier[T], error) {
	if err := CheckAlgorithms(c.Algorithms); err != nil {
		return nil, err
	}
	if len(c.Keys) == 0 && c.JWKS == nil {
		return nil, errors.New("no keys configured (public_key, jwks_file or jwks_url)")
	}
	audience := slices.DeleteFunc(slices.Clone(c.Audience), func(a string) bool { return a == "" })
	v := &Verifier[T]{
		algs:     slices.Clone(c.Algorithms),
		static:   slices.Clone(c.Keys),
		leeway:   c.Leeway,
		maxTTL:   c.MaxTTL,
		issuer:   c.Issuer,
		audience: audience,
		accept:   accept,
		cache:    newTokenCache[T](),
	}
	v.keys.Store(newKeySet(v.static))
	v.parser = newParser(c.Leeway, c.Now, c.Issuer, audience)
	if c.JWKS != nil {
		v.remote = &Remote{
			ctx:     ctx,
			config:  *c.JWKS,
			client:  &http.Client{Timeout: jwksHTTPTimeout},
			now:     c.Now,
			install: func(keys []*Key) { v.keys.Store(newKeySet(v.static, keys)) },
		}
		if err := v.remote.start(len(v.static) > 0); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Leeway is the clock skew the Verifier allows.
func (v *Verifier[T]) Leeway() time.Duration { return v.leeway }

// MaxTTL is the longest token lifetime the Verifier accepts.
func (v *Verifier[T]) MaxTTL() time.Duration { return v.maxTTL }

// Remote is the Verifier's JWKS fetcher, nil without a JWKS URL.
func (v *Verifier[T]) Remote() *Remote { return v.remote }

// newParser is the JWT parser of a verifier: exp and iat required, leeway
// on all times, canonical base64url only, and iss/aud checked when given.
// The algorithm allowlist is checked by the keyfunc (lookupKey), so that
// each refusal has its own sentinel error.
func newParser(leeway time.Duration, now func() time.Time, issuer string, audience []string) *jwt.Parser {
	opts := []jwt.ParserOption{
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithStrictDecoding(), // canonical base64url only (no stray bits)
		jwt.WithTimeFunc(now),
	}
	if issuer != "" {
		opts = append(opts, jwt.WithIssuer(issuer))
	}
	if len(audience) > 0 {
		opts = append(opts, jwt.WithAudience(audience...))
	}
	return jwt.NewParser(opts...)
}

// lookupKey is the jwt.Keyfunc. It finds the key by `kid` only: `jku`,
// `x5u`, `jwk` and `x5c` headers are never read, so a token can never
// bring its own key. It returns typed public keys only. Its errors are
// *Error values, found again with errors.As since golang-jwt wraps them.
func (v *Verifier[T]) lookupKey(t *jwt.Token) (*Key, error) {
	if !slices.Contains(v.algs, t.Method.Alg()) {
		return nil, refuse(AlgorithmRefused)
	}
	if _, ok := t.Header["crit"]; ok {
		// RFC 7515 §4.1.11: a recipient must reject extensions it does
		// not understand; this package understands none.
		return nil, refuse(CriticalHeader)
	}
	k, err := v.keyFor(t.Header["kid"])
	if err != nil {
		return nil, err
	}
	if !k.accepts(t.Method.Alg()) {
		return nil, refuse(AlgorithmRefused)
	}
	return k, nil
}

func (v *Verifier[T]) keyFor(kidv any) (*Key, error) {
	ks := v.keys.Load()
	if kidv == nil {
		if ks.only == nil {
			return nil, refuse(NoKeyID)
		}
		return ks.only, nil
	}
	kid, ok := kidv.(string)
	if !ok {
		return nil, refuse(UnknownKey)
	}
	if k := ks.byKID[kid]; k != nil {
		return k, nil
	}
	if v.remote != nil && v.remote.refetchUnknown() {
		if k := v.keys.Load().byKID[kid]; k != nil {
			return k, nil
		}
	}
	return nil, refuse(UnknownKey)
}

// splitToken checks the compact serialization's shape: exactly three
// segments.
func splitToken(token string) (header, payload string, ok bool) {
	i := strings.IndexByte(token, '.')
	if i < 0 {
		return "", "", false
	}
	j := strings.IndexByte(token[i+1:], '.')
	if j < 0 {
		return "", "", false
	}
	j += i + 1
	if strings.IndexByte(token[j+1:], '.') >= 0 {
		return "", "", false
	}
	return token[:i], token[i+1 : j], true
}

// Verify checks a token at time now and returns what accept made of its
// claims. A token verified before, still valid and whose key is still
// configured, is answered from the cache without a signature check. Every
// error is an *Error. Checks that depend on the request (revocation, the
// certificate binding) are the caller's, on every request.
func (v *Verifier[T]) Verify(token string, now time.Time) (T, error) {
	var zero T
	if len(token) > MaxTokenSize {
		return zero, refuse(TooLarge)
	}
	if value, ok := v.cache.get(token, now, v.keys.Load()); ok {
		return value, nil
	}
	h, p, ok := splitToken(token)
	if !ok {
		return zero, refuse(Malformed)
	}
	// Duplicate member names are rejected before golang-jwt decodes the
	// segments (its decoder keeps the last duplicate silently).
	var buf [MaxTokenSize * 3 / 4]byte // a decoded segment always fits
	for _, seg := range [2]string{h, p} {
		n, err := strictB64.Decode(buf[:], []byte(seg))
		if err != nil {
			return zero, refuse(Malformed)
		}
		if err := checkJSONObject(buf[:n]); err != nil {
			if errors.Is(err, errDuplicateKey) {
				return zero, refuse(DuplicateMember)
			}
			return zero, refuse(Malformed)
		}
	}
	claims := new(tokenClaims)
	var used *Key
	t, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		k, err := v.lookupKey(t)
		if err != nil {
			return nil, err
		}
		used = k
		return k.Public, nil
	})
	if err != nil {
		return zero, v.classify(err, claims)
	}
	// Rules golang-jwt has no option for. The nil checks matter: exp is
	// required by the parser, iat only checked when present.
	if claims.ExpiresAt == nil {
		return zero, refuse(NoExpiry)
	}
	if claims.IssuedAt == nil {
		return zero, refuse(NoIssuedAt)
	}
	if claims.ExpiresAt.Sub(claims.IssuedAt.Time) > v.maxTTL {
		return zero, refuse(LifetimeTooLong)
	}
	cert, err := claims.Cnf.binding()
	if err != nil {
		return zero, err
	}
	value := v.accept(Claims{
		Subject:   claims.Subject,
		ID:        claims.ID,
		IssuedAt:  claims.IssuedAt.Time,
		ExpiresAt: claims.ExpiresAt.Time,
		Scopes:    claims.scopes(),
		Cert:      cert,
	})
	kid, _ := t.Header["kid"].(string)
	v.cache.put(token, value, claims.ExpiresAt.Add(v.leeway), kid, used, now)
	return value, nil
}

// classify maps golang-jwt's errors to kinds, by its sentinel errors and
// the decoded claims (never its messages). When several checks failed, the
// first case here wins.
func (v *Verifier[T]) classify(err error, claims *tokenClaims) *Error {
	var own *Error
	switch {
	case errors.As(err, &own):
		return own
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refuse(Malformed)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return refuse(BadSignature)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return refuse(AlgorithmRefused) // alg unknown or unspecified
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// The claims decoded (else the token was malformed): which of
		// the required ones is missing is read from them.
		switch {
		case claims.ExpiresAt == nil:
			return refuse(NoExpiry)
		case v.issuer != "" && claims.Issuer == "":
			return refuse(WrongIssuer)
		case len(v.audience) > 0 && (len(claims.Audience) == 0 || len(claims.Audience) == 1 && claims.Audience[0] == ""):
			return refuse(WrongAudience)
		}
		return refuse(InvalidClaims)
	case errors.Is(err, jwt.ErrTokenExpired):
		return refuse(Expired)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return refuse(NotYetValid)
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return refuse(IssuedInFuture)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return refuse(WrongIssuer)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return refuse(WrongAudience)
	}
	return refuse(InvalidClaims)
}
