package sechard

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sechard/sechard/internal/jwtverify"
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
func (t *TokenService) provision(env *provisionEnv) error {
	if t == nil {
		return nil
	}
	auth := env.auth
	if auth == nil {
		return errors.New("token_service needs an auth block: its api_key and client_cert lines are the clients, and it verifies the tokens")
	}
	t.auth, t.now, t.metrics = auth, env.now, env.metrics
	t.audit = env.logger.Named("audit")
	// The block's own rules, all reported together.
	var errs []error
	if err := checkIssuer(t.Issuer); err != nil {
		errs = append(errs, fmt.Errorf("issuer: %v", err))
	}
	if len(t.Audience) == 0 {
		errs = append(errs, errors.New("audience is required"))
	}
	t.path = cmp.Or(t.Path, defaultTokenPath)
	if !strings.HasPrefix(t.path, "/") {
		errs = append(errs, fmt.Errorf("path must start with /, got %q", t.path))
	}
	leeway, maxTTL := defaultLeeway, defaultMaxTTL
	if auth.jwt != nil {
		leeway, maxTTL = auth.jwt.Leeway(), auth.jwt.MaxTTL()
	}
	t.ttl = cmp.Or(time.Duration(t.TTL), defaultTokenTTL)
	if t.ttl < 0 || t.ttl > maxTTL {
		errs = append(errs, fmt.Errorf("ttl %s must be positive and not longer than auth's jwt max_ttl (%s)", t.ttl, maxTTL))
	}
	if len(t.SigningKeys) == 0 {
		errs = append(errs, errors.New("signing_key is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}

	t.audience = t.Audience[0]
	if len(t.Audience) > 1 {
		t.audience = t.Audience
	}
	t.jwksPath = jwksWellKnown
	issuer, _ := url.Parse(t.Issuer)
	t.metadataPath = metadataWellKnown + strings.TrimSuffix(issuer.EscapedPath(), "/") // RFC 8414 §3

	var keys []*jwtverify.Key
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
			if k.KID == s.kid {
				return fmt.Errorf("signing_key %s: the same key as an earlier signing_key", name)
			}
		}
		keys = append(keys, &jwtverify.Key{KID: s.kid, Public: s.pub, Alg: s.method.Alg()})
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
		if !slices.Contains(algs, k.Alg) {
			algs = append(algs, k.Alg)
		}
	}
	v, err := jwtverify.New(env.Context, jwtverify.Config{
		Algorithms: algs, Leeway: leeway, MaxTTL: maxTTL,
		Issuer: t.Issuer, Audience: t.Audience, Now: env.now, Keys: keys,
	}, jwtIdentity)
	if err != nil {
		return err
	}
	auth.issued = &issuedTokens{verifier: v, headers: make([]string, 0, len(keys))}
	for _, k := range keys {
		auth.issued.headers = append(auth.issued.headers, tokenHeader(k.Alg, k.KID)+".")
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
