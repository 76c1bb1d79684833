package sechard

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sechard/sechard/internal/oauthreq"

	"github.com/sechard/sechard/internal/secrets"
)

// TokenService is an OAuth 2.0 token endpoint for the client-credentials
// grant (RFC 6749 §4.4): a service trades the API key or client certificate
// that `auth` already knows for a short-lived JWT access token (RFC 9068),
// which the same handler's `auth` then accepts with no further config. It is
// the runbook's phase 1, "Deploy JWT token generation service".
//
// Clients authenticate with `client_secret_basic` or `client_secret_post`
// (client_id is the API key's secret name, the secret is the key) or
// `tls_client_auth` (RFC 8705: a verified client certificate mapped by a
// `client_cert` line). Bearer tokens are never accepted here. No refresh
// tokens are issued: a service asks again before its token expires. Tokens
// issued through `tls_client_auth` are bound to the client's certificate
// (RFC 8705 §3, `cnf.x5t#S256`): `auth` accepts them only on connections
// that present it.
//
// Besides the token endpoint it serves `GET /.well-known/jwks.json` (every
// signing key's public half) and the RFC 8414 metadata at
// `/.well-known/oauth-authorization-server`.
type TokenService struct {
	// Path of the token endpoint. Default: `/oauth2/token`.
	Path string `json:"path,omitempty"`

	// Issuer is the `iss` of issued tokens and the `issuer` of the
	// metadata: the URL clients reach this edge at, such as
	// `https://edge.example.com`. Required.
	Issuer string `json:"issuer,omitempty"`

	// Audience is the `aud` of issued tokens: the API they are for.
	// Required; with several, tokens carry them all.
	Audience []string `json:"audience,omitempty"`

	// SigningKeys are names of secrets (resolved like every secret: env
	// NAME, the file in NAME_FILE, or <dir>/NAME) holding PEM private keys:
	// PKCS#8, SEC 1 or PKCS#1; EC P-256/384/521, Ed25519 or RSA of 2048 bits
	// or more. The first signs; all are published in the JWKS and accepted
	// by `auth`. To rotate: add the new key second, reload every instance,
	// swap the order, reload, and remove the old key once the last token
	// it signed has expired (`ttl`). Required.
	SigningKeys []string `json:"signing_keys,omitempty"`

	// TTL is the lifetime of issued tokens. Default 5m; it may not be longer
	// than the `max_ttl` of `auth`'s `jwt` block (default 5m), or `auth`
	// would refuse the tokens.
	TTL caddy.Duration `json:"ttl,omitempty"`

	path, jwksPath, metadataPath string
	ttl                          time.Duration
	audience                     any // a string for one audience, else the list (RFC 7519 §4.1.3)
	signer                       *tokenSigner
	jwksBody, metadataBody       []byte
	auth                         *Auth
	issued                       map[string]prometheus.Counter // sechard_tokens_issued_total by client
	audit                        *zap.Logger
	metrics                      *handlerMetrics
	now                          func() time.Time
}

const (
	defaultTokenPath   = "/oauth2/token"
	defaultTokenTTL    = 5 * time.Minute
	jwksWellKnown      = "/.well-known/jwks.json"
	metadataWellKnown  = "/.well-known/oauth-authorization-server"
	tokenMetadataCache = "public, max-age=300"
)

// Refusal reasons of the token endpoint, in logs and metrics.
const (
	reasonTokenInvalidRequest = "token_invalid_request"
	reasonTokenInvalidClient  = "token_invalid_client"
	reasonTokenInvalidScope   = "token_invalid_scope"
	reasonTokenGrantType      = "token_unsupported_grant_type"
)

func (t *TokenService) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "path", "issuer", "ttl":
			var v string
			if !d.Args(&v) || d.NextArg() {
				return d.ArgErr()
			}
			switch opt {
			case "path":
				if !strings.HasPrefix(v, "/") {
					return d.Errf("token_service path must start with /, got %q", v)
				}
				t.Path = v
			case "issuer":
				if err := checkIssuer(v); err != nil {
					return d.Errf("token_service issuer: %v", err)
				}
				t.Issuer = v
			case "ttl":
				ttl, err := caddy.ParseDuration(v)
				if err != nil || ttl <= 0 {
					return d.Errf("token_service ttl must be a positive duration, got %q", v)
				}
				t.TTL = caddy.Duration(ttl)
			}
		case "audience":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			t.Audience = append(t.Audience, args...)
		case "signing_key":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			for _, name := range args {
				if err := secrets.CheckName(name); err != nil {
					return d.Errf("token_service signing_key: %v", err)
				}
			}
			t.SigningKeys = append(t.SigningKeys, args...)
		default:
			return d.Errf("unrecognized token_service option %q", opt)
		}
	}
	return nil
}

// checkIssuer accepts an http(s) URL with a host and nothing after the path
// (RFC 8414 §2: no query or fragment).
func checkIssuer(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("must be an http(s) URL with a host and no query, fragment or user info, got %q", v)
	}
	return nil
}

// requiredSecrets names the signing keys, so they are required
// automatically (SEC-03).
func (t *TokenService) requiredSecrets() []string {
	if t == nil {
		return nil
	}
	return t.SigningKeys
}

// provision compiles the service against the handler's auth, whose
// credentials are the clients and whose verifier learns the issued keys.
func (t *TokenService) provision(env *provisionEnv, auth *Auth) error {
	if t == nil {
		return nil
	}
	if auth == nil {
		return errors.New("token_service needs an auth block: its api_key and client_cert lines are the clients, and it verifies the tokens")
	}
	t.auth, t.now, t.metrics = auth, env.now, env.metrics
	t.audit = env.logger.Named("audit")
	if err := checkIssuer(t.Issuer); err != nil {
		return fmt.Errorf("issuer: %v", err)
	}
	if len(t.Audience) == 0 {
		return errors.New("audience is required")
	}
	t.audience = t.Audience[0]
	if len(t.Audience) > 1 {
		t.audience = t.Audience
	}
	t.path = t.Path
	if t.path == "" {
		t.path = defaultTokenPath
	}
	if !strings.HasPrefix(t.path, "/") {
		return fmt.Errorf("path must start with /, got %q", t.path)
	}
	t.jwksPath = jwksWellKnown
	issuer, _ := url.Parse(t.Issuer)
	t.metadataPath = metadataWellKnown + strings.TrimSuffix(issuer.EscapedPath(), "/") // RFC 8414 §3

	leeway, maxTTL := defaultLeeway, defaultMaxTTL
	if auth.jwt != nil {
		leeway, maxTTL = auth.jwt.leeway, auth.jwt.maxTTL
	}
	t.ttl = time.Duration(t.TTL)
	if t.ttl == 0 {
		t.ttl = defaultTokenTTL
	}
	if t.ttl < 0 || t.ttl > maxTTL {
		return fmt.Errorf("ttl %s must be positive and not longer than auth's jwt max_ttl (%s)", t.ttl, maxTTL)
	}

	if len(t.SigningKeys) == 0 {
		return errors.New("signing_key is required")
	}
	var keys []*verifyKey
	var jwks jwkset.JWKSMarshal
	for i, name := range t.SigningKeys {
		if slices.Contains(t.SigningKeys[:i], name) {
			return fmt.Errorf("signing_key %s given twice", name)
		}
		sec, ok := env.secrets[name]
		if !ok {
			return fmt.Errorf("missing required secret: %s", name)
		}
		s, err := newTokenSigner([]byte(sec.Value()))
		if err != nil {
			return fmt.Errorf("signing_key %s: %v", name, err) // never the value
		}
		if i == 0 {
			t.signer = s
		}
		for _, k := range keys {
			if k.kid == s.kid {
				return fmt.Errorf("signing_key %s: the same key as an earlier signing_key", name)
			}
		}
		keys = append(keys, &verifyKey{kid: s.kid, key: s.pub, alg: s.method.Alg()})
		jwk, err := jwkset.NewJWKFromKey(s.pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
			ALG: jwkset.ALG(s.method.Alg()), KID: s.kid, USE: jwkset.UseSig,
		}})
		if err != nil {
			return fmt.Errorf("signing_key %s: %v", name, err)
		}
		jwks.Keys = append(jwks.Keys, jwk.Marshal())
	}
	var err error
	if t.jwksBody, err = json.Marshal(jwks); err != nil {
		return err
	}

	// auth accepts these tokens: their own key set, tied to this issuer
	// and audience, beside (never mixed with) the jwt block's keys.
	algs := make([]string, 0, len(keys))
	for _, k := range keys {
		if !slices.Contains(algs, k.alg) {
			algs = append(algs, k.alg)
		}
	}
	v := &verifier{leeway: leeway, maxTTL: maxTTL, static: keys, cache: newTokenCache()}
	v.keys.Store(newKeySet(keys))
	v.parser = newParser(algs, leeway, env.now, t.Issuer, t.Audience...)
	auth.issued = &issuedTokens{verifier: v, headers: make([]string, 0, len(keys))}
	for _, k := range keys {
		auth.issued.headers = append(auth.issued.headers, tokenHeader(k.alg, k.kid)+".")
	}

	t.metadataBody, err = t.metadata(issuer)
	if err != nil {
		return err
	}
	t.issued = t.metrics.provisionTokens(t.clients())
	return nil
}

// clients lists every credential that may ask for a token: API keys (the
// secret name is the client_id) outside jwt_only, and client_cert identities.
func (t *TokenService) clients() []string {
	var names []string
	if t.auth.Phase != phaseJWTOnly {
		for _, k := range t.auth.APIKeys {
			names = append(names, k.Secret)
		}
	}
	for _, c := range t.auth.ClientCerts {
		names = append(names, c.Identity)
	}
	return names
}

// metadata is the RFC 8414 document.
func (t *TokenService) metadata(issuer *url.URL) ([]byte, error) {
	origin := issuer.Scheme + "://" + issuer.Host
	methods := []string{}
	if len(t.auth.APIKeys) > 0 && t.auth.Phase != phaseJWTOnly {
		methods = append(methods, oauthreq.ClientSecretBasic, oauthreq.ClientSecretPost)
	}
	if len(t.auth.ClientCerts) > 0 {
		methods = append(methods, oauthreq.TLSClientAuth)
	}
	scopes := []string{}
	for _, k := range t.auth.APIKeys {
		scopes = append(scopes, k.Scopes...)
	}
	for _, c := range t.auth.ClientCerts {
		scopes = append(scopes, c.Scopes...)
	}
	slices.Sort(scopes)
	return json.Marshal(map[string]any{
		"issuer":                                t.Issuer,
		"token_endpoint":                        origin + t.path,
		"jwks_uri":                              origin + t.jwksPath,
		"grant_types_supported":                 []string{"client_credentials"},
		"response_types_supported":              []string{}, // no authorization endpoint
		"token_endpoint_auth_methods_supported": methods,
		"scopes_supported":                      slices.Compact(scopes),
		// RFC 8705 §3.3: tokens issued to tls_client_auth clients are
		// bound to their certificate, and auth checks every bound token.
		"tls_client_certificate_bound_access_tokens": true,
	})
}

// decide answers the service's own paths and lets every other request go
// on. Its answers are written by conclude; they are never report-mode
// decisions, so a refused client credential is refused in every mode.
func (t *TokenService) decide(ex *exchange) decision {
	if t == nil {
		return allow
	}
	switch ex.r.URL.Path {
	case t.path:
		return t.token(ex)
	case t.jwksPath:
		return publicDocument(ex, t.jwksBody, "application/jwk-set+json")
	case t.metadataPath:
		return publicDocument(ex, t.metadataBody, "application/json")
	}
	return allow
}

// publicDocument answers GET or HEAD with a cacheable JSON document.
func publicDocument(ex *exchange, body []byte, contentType string) decision {
	h := http.Header{"Cache-Control": {tokenMetadataCache}}
	if m := ex.r.Method; m != http.MethodGet && m != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		return decision{Status: http.StatusMethodNotAllowed, Answer: true, Header: h}
	}
	h.Set("Content-Type", contentType)
	if ex.r.Method == http.MethodHead {
		body = nil
	}
	return decision{Status: http.StatusOK, Answer: true, Header: h, Body: body}
}

// tokenResponseHeader is the header of every token endpoint response:
// JSON, never cached (RFC 6749 §5.1).
func tokenResponseHeader() http.Header {
	return http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}, "Pragma": {"no-cache"}}
}

// tokenResponse is RFC 6749 §5.1's success body.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// token runs the client-credentials grant.
func (t *TokenService) token(ex *exchange) decision {
	req, oerr := oauthreq.Parse(ex.r)
	if oerr != nil {
		return t.refuse(ex, oerr, "", "")
	}
	id, method, oerr := t.authenticateClient(ex, req)
	if oerr != nil {
		return t.refuse(ex, oerr, req.ClientID, method)
	}
	scopes := id.scopes
	if req.Scopes != nil {
		for _, s := range req.Scopes {
			if !id.has(s) {
				return t.refuse(ex, oauthreq.InvalidScope("scope "+s+" is not granted to this client"), id.subject, method)
			}
		}
		scopes = req.Scopes
	} else if id.full {
		return t.refuse(ex, oauthreq.InvalidScope("this client's key has no scopes configured; request the scopes it needs"), id.subject, method)
	}

	now := t.now()
	joined := strings.Join(scopes, " ")
	claims := issuedClaims{
		Issuer: t.Issuer, Subject: id.subject, Audience: t.audience, ClientID: id.subject, Scope: joined,
		IssuedAt: now.Unix(), Expires: now.Add(t.ttl).Unix(),
	}
	if method == oauthreq.TLSClientAuth {
		// RFC 8705 §3.1: bound to the certificate the client just
		// authenticated with (the one Caddy verified), so the token is
		// useless without that certificate's private key.
		claims.Cnf = &issuedCnf{X5tS256: x5tS256(verifiedLeaf(ex.r.TLS))}
	}
	token, jti, err := t.signer.sign(claims)
	if err != nil {
		t.audit.Error("signing an access token failed", zap.Error(err), zap.String("request_id", ex.requestID))
		return decision{Status: http.StatusInternalServerError, Reason: "token_signing_failed", Detail: err.Error()}
	}
	body, _ := json.Marshal(tokenResponse{AccessToken: token, TokenType: "Bearer", ExpiresIn: int64(t.ttl / time.Second), Scope: joined})
	h := tokenResponseHeader()
	if method != oauthreq.TLSClientAuth && t.auth.Phase == phaseJWTRollout {
		// Trading a key for a token is an API-key use like any other.
		h.Set("Deprecation", t.auth.depHeader)
		if t.auth.sunsetHeader != "" {
			h.Set("Sunset", t.auth.sunsetHeader)
		}
	}
	if c := t.issued[id.subject]; c != nil {
		c.Inc()
	}
	if c := t.audit.Check(zapcore.InfoLevel, "token issued"); c != nil {
		fields := []zap.Field{zap.String("decision", "issue"), zap.String("client", id.subject), zap.String("method", method),
			zap.String("scopes", joined), zap.String("jti", jti), zap.Int64("exp", now.Add(t.ttl).Unix()),
			zap.String("client_ip", clientIP(ex.r)), zap.String("request_id", ex.requestID)}
		if claims.Cnf != nil {
			fields = append(fields, zap.String("cnf_x5t_s256", claims.Cnf.X5tS256))
		}
		c.Write(fields...)
	}
	return decision{Status: http.StatusOK, Answer: true, Header: h, Body: body}
}

// authenticateClient finds the client: a secret (an API key, named by its
// client_id) when one was sent, else a verified, mapped client certificate.
func (t *TokenService) authenticateClient(ex *exchange, req *oauthreq.Request) (*identity, string, *oauthreq.Error) {
	if req.AuthMethod != "" {
		if len(req.ClientSecret) > maxTokenSize {
			return nil, req.AuthMethod, oauthreq.InvalidClient("unknown client or wrong secret")
		}
		id := t.auth.apiKeys.match(req.ClientSecret) // constant time over every key
		if id == nil || id.subject != req.ClientID {
			return nil, req.AuthMethod, oauthreq.InvalidClient("unknown client or wrong secret")
		}
		if t.auth.Phase == phaseJWTOnly {
			return nil, req.AuthMethod, oauthreq.InvalidClient("API keys are no longer accepted; use a client certificate")
		}
		return id, req.AuthMethod, nil
	}
	id, cerr := t.auth.authenticateCert(ex.r.TLS)
	switch {
	case id != nil && cerr == nil:
		if req.ClientID != "" && req.ClientID != id.subject {
			return nil, oauthreq.TLSClientAuth, oauthreq.InvalidClient("client_id does not match the client certificate")
		}
		return id, oauthreq.TLSClientAuth, nil
	case cerr != nil:
		return nil, oauthreq.TLSClientAuth, oauthreq.InvalidClient(cerr.desc)
	}
	return nil, "", oauthreq.InvalidClient("client authentication required")
}

// refuse answers with an RFC 6749 §5.2 error, audits and counts it.
func (t *TokenService) refuse(ex *exchange, e *oauthreq.Error, client, method string) decision {
	reason := reasonTokenInvalidRequest
	switch e.Code {
	case "invalid_client":
		reason = reasonTokenInvalidClient
	case "invalid_scope":
		reason = reasonTokenInvalidScope
	case "unsupported_grant_type":
		reason = reasonTokenGrantType
	}
	t.metrics.reject(modeEnforce, reason)
	if c := t.audit.Check(zapcore.WarnLevel, "token refused"); c != nil {
		c.Write(zap.String("decision", "deny"), zap.String("reason", reason), zap.String("error", e.Code),
			zap.String("detail", e.Description), zap.String("client", quoteForLog(client)), zap.String("method", method),
			zap.String("client_ip", clientIP(ex.r)), zap.String("request_id", ex.requestID))
	}
	h := tokenResponseHeader()
	switch e.Status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Basic realm="sechard"`)
	case http.StatusMethodNotAllowed:
		h.Set("Allow", http.MethodPost)
	}
	return decision{Status: e.Status, Answer: true, Header: h, Body: e.JSON()}
}

// issuedClaims are the claims of an RFC 9068 access token.
type issuedClaims struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"`
	Audience any    `json:"aud"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope,omitempty"`
	IssuedAt int64  `json:"iat"`
	Expires  int64  `json:"exp"`
	ID       string `json:"jti"`
	// Cnf is set for clients that authenticated with a certificate.
	Cnf *issuedCnf `json:"cnf,omitempty"`
}

// issuedCnf is the confirmation claim of a certificate-bound token (RFC
// 8705 §3.1).
type issuedCnf struct {
	X5tS256 string `json:"x5t#S256"`
}

// tokenSigner signs access tokens with one private key.
type tokenSigner struct {
	key    crypto.Signer
	pub    crypto.PublicKey
	method jwt.SigningMethod
	kid    string // RFC 7638 thumbprint of pub
	header string // the encoded JOSE header, the same for every token
}

// newTokenSigner parses a PEM private key (PKCS#8, SEC 1 or PKCS#1).
func newTokenSigner(pemData []byte) (*tokenSigner, error) {
	key, err := parsePrivateKeyPEM(pemData)
	if err != nil {
		return nil, err
	}
	s := &tokenSigner{}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		s.key = k
		switch k.Curve {
		case elliptic.P256():
			s.method = jwt.SigningMethodES256
		case elliptic.P384():
			s.method = jwt.SigningMethodES384
		case elliptic.P521():
			s.method = jwt.SigningMethodES512
		default:
			return nil, errors.New("EC keys must be on P-256, P-384 or P-521")
		}
	case ed25519.PrivateKey:
		s.key, s.method = k, jwt.SigningMethodEdDSA
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits is too short (2048 or more)", k.N.BitLen())
		}
		s.key, s.method = k, jwt.SigningMethodRS256
	default:
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	if s.pub, err = checkKey(s.key.Public()); err != nil {
		return nil, err
	}
	s.kid = thumbprint(s.pub)
	s.header = tokenHeader(s.method.Alg(), s.kid)
	return s, nil
}

// parsePrivateKeyPEM reads the first PEM block of data as a private key:
// PKCS#8, SEC 1 (EC) or PKCS#1 (RSA). Errors never quote the key.
func parsePrivateKeyPEM(data []byte) (any, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing the private key: %v", err)
	}
	return key, nil
}

// tokenHeader is the encoded JOSE header of an issued token (RFC 9068 §2.1:
// typ at+jwt).
func tokenHeader(alg, kid string) string {
	h, _ := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{alg, kid, "at+jwt"})
	return base64.RawURLEncoding.EncodeToString(h)
}

// sign fills in a fresh jti (128 random bits) and returns the compact JWS.
func (s *tokenSigner) sign(c issuedClaims) (token, jti string, err error) {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	c.ID = base64.RawURLEncoding.EncodeToString(b[:])
	payload, err := json.Marshal(c)
	if err != nil {
		return "", "", err
	}
	signing := s.header + "." + base64.RawURLEncoding.EncodeToString(payload)
	sig, err := s.method.Sign(signing, s.key)
	if err != nil {
		return "", "", err
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), c.ID, nil
}

// issuedTokens is what auth needs to accept the token service's tokens: a
// verifier of its own (its keys, its issuer and audience), and the encoded
// headers those tokens start with, so a bearer token is routed to it by a
// prefix comparison, not by decoding.
type issuedTokens struct {
	verifier *verifier
	headers  []string // "<encoded header>."
}

// owns reports whether token was (or claims to be) issued by the token
// service: its header is byte for byte one the service writes. A token that
// does not is verified by the jwt block's verifier, which never knows the
// service's keys, so routing cannot widen what either accepts.
func (it *issuedTokens) owns(token string) bool {
	if it == nil {
		return false
	}
	for _, h := range it.headers {
		if strings.HasPrefix(token, h) {
			return true
		}
	}
	return false
}
