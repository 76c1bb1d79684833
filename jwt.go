package sechard

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap/zapcore"
)

// JWT configures how bearer tokens (RFC 7519) are verified. Only
// asymmetric signatures are accepted: keys come from PEM files, a JWKS file
// or a JWKS URL, never from the token itself.
type JWT struct {
	// Public keys in PEM files (RSA of 2048 bits or more, ECDSA P-256, P-384,
	// P-521, or Ed25519), each with an optional key ID. A key without a
	// key ID gets its RFC 7638 thumbprint as key ID (the `kid` that
	// `caddy sechard keygen` prints).
	PublicKeys []PublicKey `json:"public_keys,omitempty"`

	// A JWKS (RFC 7517) file with more public keys. Read when the config
	// loads; reload to pick up changes. In it and in the JWKS URL's set,
	// keys sechard cannot use are skipped with a warning; a set with no
	// usable key is an error.
	JWKSFile string `json:"jwks_file,omitempty"`

	// A JWKS URL. Fetched when the config loads (a failed first fetch fails
	// the load, unless other keys are configured), refreshed in the
	// background every `refresh`, and refetched (at most once per 30 s,
	// with a request never waiting more than 2 s) when a token names an
	// unknown `kid`. Each fetch times out after 5 s; a failed refresh keeps
	// the last good key set.
	JWKSURL string `json:"jwks_url,omitempty"`

	// How often the JWKS URL is refreshed. Default: 5m.
	Refresh caddy.Duration `json:"refresh,omitempty"`

	// The required `iss` claim. Not checked when empty.
	Issuer string `json:"issuer,omitempty"`

	// An `aud` value the token must contain. Not checked when empty.
	Audience string `json:"audience,omitempty"`

	// The accepted `alg` values: ES256, ES384, ES512, EdDSA, RS256, RS384,
	// RS512, PS256, PS384, PS512. Default: ES256 EdDSA RS256. `none` and
	// HMAC (HS*) are never accepted: they are config errors. Each
	// algorithm must also match the type of the key that verifies the
	// token.
	Algorithms []string `json:"algorithms,omitempty"`

	// Clock skew allowed on `exp`, `nbf` and `iat`. Default: 30s.
	Leeway *caddy.Duration `json:"leeway,omitempty"`

	// The longest accepted token lifetime, `exp - iat`. Default: 5m.
	MaxTTL caddy.Duration `json:"max_ttl,omitempty"`
}

// PublicKey is a PEM file holding one public key, with an optional key ID.
type PublicKey struct {
	// Path of the PEM file (PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE).
	File string `json:"file"`
	// The key ID tokens name in their `kid` header. Default: the key's RFC
	// 7638 thumbprint.
	KID string `json:"kid,omitempty"`
}

const (
	defaultJWKSRefresh = 5 * time.Minute
	defaultLeeway      = 30 * time.Second
	defaultMaxTTL      = 5 * time.Minute
	// maxTokenSize: larger bearer tokens are refused before any decoding.
	maxTokenSize = 8 << 10
)

var defaultAlgorithms = []string{"ES256", "EdDSA", "RS256"}

// supportedAlgorithms are the asymmetric JWS algorithms golang-jwt
// implements; anything else (none, HS*) is a config error.
var supportedAlgorithms = []string{"ES256", "ES384", "ES512", "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

func (j *JWT) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "public_key":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.ArgErr()
			}
			pk := PublicKey{File: args[0]}
			if len(args) == 2 {
				pk.KID = args[1]
			}
			j.PublicKeys = append(j.PublicKeys, pk)
		case "jwks_file":
			if !d.NextArg() {
				return d.ArgErr()
			}
			j.JWKSFile = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "jwks_url":
			if !d.NextArg() {
				return d.ArgErr()
			}
			j.JWKSURL = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "issuer", "audience":
			opt := d.Val()
			if !d.NextArg() {
				return d.ArgErr()
			}
			if opt == "issuer" {
				j.Issuer = d.Val()
			} else {
				j.Audience = d.Val()
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "algorithms":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			for _, a := range args {
				if !slices.Contains(supportedAlgorithms, a) {
					return d.Errf("algorithm %q is not accepted (supported: %s; none and HMAC never are)", a, strings.Join(supportedAlgorithms, " "))
				}
			}
			j.Algorithms = append(j.Algorithms, args...)
		case "refresh", "leeway", "max_ttl":
			opt := d.Val()
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("%s: %v", opt, err)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			switch opt {
			case "refresh":
				j.Refresh = caddy.Duration(dur)
			case "leeway":
				l := caddy.Duration(dur)
				j.Leeway = &l
			case "max_ttl":
				j.MaxTTL = caddy.Duration(dur)
			}
		default:
			return d.Errf("unrecognized jwt option %q", d.Val())
		}
	}
	return nil
}

// verifyKey is one public key tokens may be verified with.
type verifyKey struct {
	kid string
	// key is *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey: typed
	// public keys only, never []byte, so no HMAC verification can ever use
	// a public key's bytes as its secret (algorithm confusion).
	key crypto.PublicKey
	// alg is the JWK's own "alg" when it names one; a token must then use it.
	alg string
}

// accepts reports whether alg may be verified with this key: the algorithm
// family must match the key type, and for ECDSA the curve too (RFC 7518
// §3.4).
func (k *verifyKey) accepts(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch key := k.key.(type) {
	case *rsa.PublicKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return true
		}
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return key.Curve == elliptic.P256()
		case "ES384":
			return key.Curve == elliptic.P384()
		case "ES512":
			return key.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// checkKey accepts only the public key types and sizes sechard verifies with.
func checkKey(key any) (crypto.PublicKey, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits is too short (2048 or more)", k.N.BitLen())
		}
		// crypto/rsa refuses to verify with these; refuse them at load.
		if k.N.Bit(0) == 0 || k.E < 3 || k.E&1 == 0 || k.E > 1<<31-1 {
			return nil, errors.New("invalid RSA key (even modulus or bad exponent)")
		}
		return k, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return k, nil
		}
		return nil, fmt.Errorf("unsupported ECDSA curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 key size")
		}
		return k, nil
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return nil, errors.New("a private key; configure only the public key")
	}
	return nil, fmt.Errorf("unsupported key type %T", key)
}

// loadPEMKey reads a public key from a PEM file.
func loadPEMKey(file string) (crypto.PublicKey, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var key any
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		if strings.Contains(block.Type, "PRIVATE KEY") {
			return nil, errors.New("a private key; configure only the public key")
		}
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	return checkKey(key)
}

// thumbprint computes the RFC 7638 JWK thumbprint of a public key, the
// default key ID.
func thumbprint(key crypto.PublicKey) string {
	b64 := base64.RawURLEncoding.EncodeToString
	var members string
	switch k := key.(type) {
	case *rsa.PublicKey:
		e := make([]byte, 0, 4)
		for v := k.E; v > 0; v >>= 8 {
			e = append([]byte{byte(v)}, e...)
		}
		members = fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, b64(e), b64(k.N.Bytes()))
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		ecdh, err := k.Bytes() // uncompressed point: 0x04 || X || Y
		if err != nil {
			return ""
		}
		members = fmt.Sprintf(`{"crv":%q,"kty":"EC","x":%q,"y":%q}`, k.Curve.Params().Name,
			b64(ecdh[1:1+size]), b64(ecdh[1+size:]))
	case ed25519.PublicKey:
		members = fmt.Sprintf(`{"crv":"Ed25519","kty":"OKP","x":%q}`, b64(k))
	}
	sum := sha256.Sum256([]byte(members))
	return b64(sum[:])
}

// keySet is an immutable snapshot of every key; a new one replaces it
// atomically when the JWKS URL brings new keys.
type keySet struct {
	byKID map[string]*verifyKey
	// only is the single configured key, which tokens may use without kid.
	only *verifyKey
}

func newKeySet(groups ...[]*verifyKey) *keySet {
	ks := &keySet{byKID: make(map[string]*verifyKey)}
	for _, g := range groups {
		for _, k := range g {
			if _, dup := ks.byKID[k.kid]; dup {
				continue // earlier groups (static keys) win
			}
			ks.byKID[k.kid] = k
		}
	}
	if len(ks.byKID) == 1 {
		for _, k := range ks.byKID {
			ks.only = k
		}
	}
	return ks
}

// tokenClaims are the claims sechard reads; a typed struct, so that a
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

// scopeList is a JSON array of scope strings or, where allowed, one
// space-separated string.
type scopeList struct {
	list     []string
	isString bool
}

func (s *scopeList) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		s.list = strings.Fields(str)
		s.isString = true
		return nil
	}
	return json.Unmarshal(b, &s.list)
}

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

// verifier checks JWTs. Built once at provision; safe for concurrent use.
type verifier struct {
	parser *jwt.Parser
	keys   atomic.Pointer[keySet]
	static []*verifyKey
	remote *jwksRemote // nil without jwks_url
	leeway time.Duration
	maxTTL time.Duration
	cache  *tokenCache
}

func (j *JWT) newVerifier(env *provisionEnv) (*verifier, error) {
	v := &verifier{leeway: defaultLeeway, maxTTL: defaultMaxTTL}
	if j.Leeway != nil {
		if *j.Leeway < 0 {
			return nil, errors.New("leeway must not be negative")
		}
		v.leeway = time.Duration(*j.Leeway)
	}
	if j.MaxTTL < 0 {
		return nil, errors.New("max_ttl must not be negative")
	}
	if j.MaxTTL > 0 {
		v.maxTTL = time.Duration(j.MaxTTL)
	}
	algs := j.Algorithms
	if len(algs) == 0 {
		algs = defaultAlgorithms
	}
	for _, a := range algs {
		if !slices.Contains(supportedAlgorithms, a) {
			return nil, fmt.Errorf("algorithm %q is not accepted (supported: %s; none and HMAC never are)", a, strings.Join(supportedAlgorithms, " "))
		}
	}

	for _, pk := range j.PublicKeys {
		key, err := loadPEMKey(pk.File)
		if err != nil {
			return nil, fmt.Errorf("public_key %s: %v", pk.File, err)
		}
		kid := pk.KID
		if kid == "" {
			kid = thumbprint(key)
		}
		for _, k := range v.static {
			if k.kid == kid {
				return nil, fmt.Errorf("public_key %s: key ID %q configured twice", pk.File, kid)
			}
		}
		v.static = append(v.static, &verifyKey{kid: kid, key: key})
	}
	if j.JWKSFile != "" {
		data, err := os.ReadFile(j.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("jwks_file: %v", err)
		}
		keys, skipped, err := parseJWKS(data)
		warnSkipped(env.logger.Named("auth"), j.JWKSFile, skipped)
		if err != nil {
			return nil, fmt.Errorf("jwks_file %s: %v", j.JWKSFile, err)
		}
		for _, k := range keys {
			for _, s := range v.static {
				if s.kid == k.kid {
					return nil, fmt.Errorf("jwks_file %s: key ID %q configured twice", j.JWKSFile, k.kid)
				}
			}
			v.static = append(v.static, k)
		}
	}
	v.keys.Store(newKeySet(v.static))
	if j.JWKSURL != "" {
		refresh := time.Duration(j.Refresh)
		if refresh <= 0 {
			refresh = defaultJWKSRefresh
		}
		v.remote = newJWKSRemote(env, j.JWKSURL, refresh, func(keys []*verifyKey) {
			v.keys.Store(newKeySet(v.static, keys))
		})
		if err := v.remote.start(len(v.static) > 0); err != nil {
			return nil, err
		}
	} else if len(v.static) == 0 {
		return nil, errors.New("jwt: no keys configured (public_key, jwks_file or jwks_url)")
	}

	v.parser = newParser(algs, v.leeway, env.now, j.Issuer, j.Audience)
	v.cache = newTokenCache()
	return v, nil
}

// newParser is the JWT parser of a verifier: exp and iat required, leeway
// on all times, canonical base64url only, and iss/aud checked when given.
func newParser(algs []string, leeway time.Duration, now func() time.Time, issuer string, audience ...string) *jwt.Parser {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(algs),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithStrictDecoding(), // canonical base64url only (no stray bits)
		jwt.WithTimeFunc(now),
	}
	if issuer != "" {
		opts = append(opts, jwt.WithIssuer(issuer))
	}
	if audience = slices.DeleteFunc(audience, func(a string) bool { return a == "" }); len(audience) > 0 {
		opts = append(opts, jwt.WithAudience(audience...))
	}
	return jwt.NewParser(opts...)
}

// errCrit, errKID... are returned from the keyfunc and found again with
// errors.Is, since golang-jwt wraps them.
var (
	errCritHeader = errors.New("crit header")
	errNoKID      = errors.New("no kid")
	errUnknownKID = errors.New("unknown kid")
	errKeyAlg     = errors.New("alg does not match key")
)

// lookupKey is the jwt.Keyfunc. It finds the key by `kid` only: `jku`,
// `x5u`, `jwk` and `x5c` headers are never read, so a token can never
// bring its own key. It returns typed public keys only.
func (v *verifier) lookupKey(t *jwt.Token) (*verifyKey, error) {
	if _, ok := t.Header["crit"]; ok {
		// RFC 7515 §4.1.11: a recipient must reject extensions it does
		// not understand; sechard understands none.
		return nil, errCritHeader
	}
	k, err := v.keyFor(t.Header["kid"])
	if err != nil {
		return nil, err
	}
	if !k.accepts(t.Method.Alg()) {
		return nil, errKeyAlg
	}
	return k, nil
}

func (v *verifier) keyFor(kidv any) (*verifyKey, error) {
	ks := v.keys.Load()
	if kidv == nil {
		if ks.only == nil {
			return nil, errNoKID
		}
		return ks.only, nil
	}
	kid, ok := kidv.(string)
	if !ok {
		return nil, errUnknownKID
	}
	if k := ks.byKID[kid]; k != nil {
		return k, nil
	}
	if v.remote != nil && v.remote.refetchUnknown() {
		if k := v.keys.Load().byKID[kid]; k != nil {
			return k, nil
		}
	}
	return nil, errUnknownKID
}

var strictB64 = base64.RawURLEncoding.Strict()

// splitToken checks the compact serialization's shape: exactly three
// base64url segments.
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

// verify checks a bearer token and returns who it belongs to. The cache
// spares the signature check for a token seen before; revocation and the
// certificate binding (identity.bound) are checked by the caller on every
// request. A token with a `cnf` sechard does not understand is refused.
func (v *verifier) verify(token string, now time.Time) (*identity, error) {
	if len(token) > maxTokenSize {
		return nil, errTokenTooLarge
	}
	if id, ok := v.cache.get(token, now, v); ok {
		return id, nil
	}
	h, p, ok := splitToken(token)
	if !ok {
		return nil, errTokenMalformed
	}
	// Duplicate member names are rejected before golang-jwt decodes the
	// segments (its decoder keeps the last duplicate silently).
	var buf [maxTokenSize * 3 / 4]byte // a decoded segment always fits
	for _, seg := range [2]string{h, p} {
		n, err := strictB64.Decode(buf[:], []byte(seg))
		if err != nil {
			return nil, errTokenMalformed
		}
		if err := checkJSONObject(buf[:n]); err != nil {
			if errors.Is(err, errDuplicateKey) {
				return nil, errTokenDuplicate
			}
			return nil, errTokenMalformed
		}
	}
	claims := new(tokenClaims)
	var used *verifyKey
	t, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		k, err := v.lookupKey(t)
		if err != nil {
			return nil, err
		}
		used = k
		return k.key, nil
	})
	if err != nil {
		return nil, classify(err)
	}
	// Rules golang-jwt has no option for. The nil checks matter: exp is
	// required by the parser, iat only checked when present.
	if claims.ExpiresAt == nil {
		return nil, errTokenNoExp
	}
	if claims.IssuedAt == nil {
		return nil, errTokenNoIAT
	}
	if claims.ExpiresAt.Sub(claims.IssuedAt.Time) > v.maxTTL {
		return nil, errTokenTTL
	}
	bound, cerr := claims.Cnf.binding()
	if cerr != nil {
		return nil, cerr
	}
	id := &identity{method: "jwt", subject: claims.Subject, jti: claims.ID, iat: claims.IssuedAt.Time, bound: bound}
	id.scopes = append(id.scopes, claims.Scopes...)
	if claims.Scope != nil {
		id.scopes = append(id.scopes, strings.Fields(*claims.Scope)...)
	}
	if claims.Scp != nil {
		id.scopes = append(id.scopes, claims.Scp.list...)
	}
	id.scopes = dedupe(id.scopes)
	id.seal()
	var kid string
	if s, ok := t.Header["kid"].(string); ok {
		kid = s
	}
	v.cache.put(token, id, claims.ExpiresAt.Add(v.leeway), kid, used, now)
	return id, nil
}

func dedupe(s []string) []string {
	out := s[:0]
	for i, x := range s {
		if x != "" && !slices.Contains(s[:i], x) {
			out = append(out, x)
		}
	}
	return out
}

// classify maps golang-jwt's errors to the short descriptions clients see.
func classify(err error) *credError {
	switch {
	case errors.Is(err, errCritHeader):
		return errTokenCrit
	case errors.Is(err, errNoKID):
		return errTokenNoKID
	case errors.Is(err, errUnknownKID):
		return errTokenKID
	case errors.Is(err, errKeyAlg):
		return errTokenAlg
	case errors.Is(err, jwt.ErrTokenMalformed):
		return errTokenMalformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if strings.Contains(err.Error(), "signing method") {
			return errTokenAlg
		}
		return errTokenSignature
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return errTokenAlg // alg unknown or unspecified
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		switch msg := err.Error(); {
		case strings.Contains(msg, "exp claim"):
			return errTokenNoExp
		case strings.Contains(msg, "iss claim"):
			return errTokenIssuer
		case strings.Contains(msg, "aud claim"):
			return errTokenAudience
		}
		return errTokenClaims
	case errors.Is(err, jwt.ErrTokenExpired):
		return errTokenExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return errTokenNotYet
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return errTokenIAT
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return errTokenIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return errTokenAudience
	}
	return errTokenClaims
}
