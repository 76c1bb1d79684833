package sechard

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Auth authenticates clients and enforces scopes per endpoint (SEC-10): the
// migration from shared API keys to JWTs in three phases, with an audit
// entry for every decision.
//
// Credentials are a client certificate Caddy's TLS stack verified and a
// `client_cert` line maps, `Authorization: Bearer <JWT>` or the API key
// header (never the query string). When several are sent, the first of
// that list decides: mTLS, then JWT, then API key; but a JWT bound to a
// client certificate (RFC 8705 `cnf.x5t#S256`, from any issuer) is checked
// against the connection's verified certificate on every request, and a
// mismatch is refused whatever else the request carries. `public` paths
// need none; every other path needs valid credentials and the scopes of the
// first `require` rule that matches it.
type Auth struct {
	// The migration phase: `dual` (default: API keys and JWTs both
	// accepted), `jwt_rollout` (both accepted; API-key requests are logged
	// as deprecated and their responses carry `Deprecation` and `Sunset`
	// headers) or `jwt_only` (API keys refused with 401). Changing phase is a
	// `caddy reload`.
	Phase string `json:"phase,omitempty"`

	// Named shared API keys. Each key's secret is required when the config
	// loads, like every secret.
	APIKeys []APIKey `json:"api_keys,omitempty"`

	// The request header carrying an API key. Default: X-API-Key. It is
	// removed from the request once read, so the key never reaches the
	// upstream. It must not be Authorization, an X-Auth-* header or the
	// request-ID header.
	APIKeyHeader string `json:"api_key_header,omitempty"`

	// When API keys became deprecated (RFC 3339). Sent as
	// `Deprecation: @<unix seconds>` (RFC 9745) in `jwt_rollout`, where it
	// is required.
	Deprecated string `json:"deprecated,omitempty"`

	// The announced end of API keys (RFC 3339), sent as a `Sunset`
	// HTTP-date (RFC 8594) in `jwt_rollout`. Must not be earlier than
	// `deprecated`.
	Sunset string `json:"sunset,omitempty"`

	// How JWTs are verified. Without it, only API keys are accepted.
	JWT *JWT `json:"jwt,omitempty"`

	// Scope rules, first match wins. A rule without a path applies to every
	// path not matched by an earlier rule. A path matched by no rule needs
	// valid credentials and no particular scope.
	Require []Requirement `json:"require,omitempty"`

	// Path patterns (as Caddy's path matcher) that need no credentials.
	// Checked before anything else; client-sent X-Auth-* headers are
	// removed on them too.
	Public []string `json:"public,omitempty"`

	// `enforce` (default) or `report`: decide and audit (with
	// "enforced": false), but never refuse.
	Mode string `json:"mode,omitempty"`

	// What is recorded for an allowed request: `log` (default) writes one
	// entry on the audit logger; `access_log` puts the decision's fields
	// (`auth_method`, `auth_key`, `auth_scopes`, `auth_jti`) on Caddy's
	// access-log line for the request instead (it has `user_id` already),
	// which costs much less when access logging is on anyway; `off` records
	// nothing. Denials always get their own audit entry.
	AuditAllows string `json:"audit_allows,omitempty"`

	// Revocation of tokens before they expire.
	Revocation *Revocation `json:"revocation,omitempty"`

	// Client certificates (mutual TLS) mapped to identities and scopes.
	// They need `client_auth` with a `trust_pool` in the site's `tls`
	// block (mode `require_and_verify`, or `verify_if_given` to let other
	// clients use JWTs or API keys): only certificates Caddy verified
	// count. The subject is the identity; X-Auth-Method is `mtls`. A
	// mapped certificate takes precedence over a JWT and an API key (a
	// certificate-bound JWT sent along must still match it); an unmapped
	// one grants nothing. Accepted in every phase. Tokens the token
	// service issues to these clients are bound to their certificate.
	ClientCerts []ClientCert `json:"client_certs,omitempty"`

	keyHeader  string
	apiKeys    *apiKeySet
	certs      *certIdentities
	jwt        *verifier
	issued     *issuedTokens // the token service's tokens, nil without one
	rules      []compiledRule
	public     caddyhttp.MatchPath
	deprecated time.Time
	// depHeader and sunsetHeader are the values of the Deprecation and
	// Sunset headers in jwt_rollout ("" when not sent).
	depHeader    string
	sunsetHeader string
	logger       *zap.Logger // http.handlers.sechard.auth
	now          func() time.Time
	metrics      *handlerMetrics
}

// Requirement is one `require` rule.
type Requirement struct {
	// A path pattern, as Caddy's path matcher. Empty: every path not
	// matched by an earlier rule.
	Path string `json:"path,omitempty"`
	// Scopes that must all be present, matched exactly.
	Scopes []string `json:"scopes,omitempty"`
}

type compiledRule struct {
	match  caddyhttp.MatchPath // nil: every path
	scopes []string
	joined string
}

const (
	phaseDual       = "dual"
	phaseJWTRollout = "jwt_rollout"
	phaseJWTOnly    = "jwt_only"

	defaultAPIKeyHeader = "X-API-Key"

	hdrSubject = "X-Auth-Subject"
	hdrScopes  = "X-Auth-Scopes"
	hdrMethod  = "X-Auth-Method"
)

// What audit_allows may say.
const (
	auditAllowsLog       = "log"
	auditAllowsAccessLog = "access_log"
	auditAllowsOff       = "off"
)

func checkAuditAllows(v string) error {
	switch v {
	case "", auditAllowsLog, auditAllowsAccessLog, auditAllowsOff:
		return nil
	}
	return fmt.Errorf("audit_allows must be log, access_log or off, got %q", v)
}

// identityHeaders are set by sechard only; client-sent copies never pass.
var identityHeaders = [...]string{hdrSubject, hdrScopes, hdrMethod}

func (a *Auth) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "phase", "api_key_header", "deprecated", "sunset":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			var err error
			switch opt {
			case "phase":
				a.Phase, err = v, checkPhase(v)
			case "api_key_header":
				a.APIKeyHeader, err = v, checkAPIKeyHeader(v, "")
			case "deprecated":
				a.Deprecated, err = v, checkDate(opt, v)
			case "sunset":
				a.Sunset, err = v, checkDate(opt, v)
			}
			if err != nil {
				return d.Err(err.Error())
			}
		case "api_key":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.APIKeys = append(a.APIKeys, APIKey{Secret: args[0], Scopes: args[1:]})
		case "jwt":
			if d.NextArg() {
				return d.ArgErr()
			}
			if a.JWT == nil {
				a.JWT = new(JWT)
			}
			if err := a.JWT.unmarshalCaddyfile(d); err != nil {
				return err
			}
		case "require":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			var req Requirement
			if strings.HasPrefix(args[0], "/") || strings.HasPrefix(args[0], "*") {
				req.Path, args = args[0], args[1:]
			}
			req.Scopes = args
			a.Require = append(a.Require, req)
		case "public":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.Public = append(a.Public, args...)
		case "audit_allows":
			if !d.Args(&a.AuditAllows) || d.NextArg() {
				return d.ArgErr()
			}
			if err := checkAuditAllows(a.AuditAllows); err != nil {
				return d.Err(err.Error())
			}
		case "mode":
			var err error
			if a.Mode, err = parseMode(d, "auth"); err != nil {
				return err
			}
		case "client_cert":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			if err := checkCertIdentity(args[0]); err != nil {
				return d.Errf("client_cert: %v", err)
			}
			for _, c := range a.ClientCerts {
				if c.Identity == args[0] {
					return d.Errf("client_cert %s given twice; put all of its scopes on one line", args[0])
				}
			}
			a.ClientCerts = append(a.ClientCerts, ClientCert{Identity: args[0], Scopes: args[1:]})
		case "revocation":
			if d.NextArg() {
				return d.ArgErr()
			}
			a.Revocation = new(Revocation)
			if err := a.Revocation.unmarshalCaddyfile(d); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized auth option %q", opt)
		}
	}
	return nil
}

// keyHolders names the API-key holders: the secrets of the api_key lines.
func (a *Auth) keyHolders() []string {
	if a == nil {
		return nil
	}
	names := make([]string, 0, len(a.APIKeys))
	for _, k := range a.APIKeys {
		names = append(names, k.Secret)
	}
	return names
}

// requiredSecrets names the secrets the auth config needs (its API keys and
// the revocation store's password), so they are required automatically.
func (a *Auth) requiredSecrets() []string {
	if a == nil {
		return nil
	}
	return append(a.keyHolders(), a.Revocation.requiredSecrets()...)
}

// checkAPIKeyHeader refuses an api_key_header that sechard sets or reads
// for something else: the key would be echoed in responses and logs (the
// request-ID header) or mixed up with other credentials. requestID is ""
// at parse time, when the request_id block may not be known yet.
func checkAPIKeyHeader(h, requestID string) error {
	h = http.CanonicalHeaderKey(h)
	switch {
	case h == "Authorization", strings.HasPrefix(h, "X-Auth-"):
		return fmt.Errorf("api_key_header cannot be %s: sechard reads or sets it for other credentials", h)
	case requestID != "" && h == http.CanonicalHeaderKey(requestID):
		return fmt.Errorf("api_key_header cannot be %s: it is the request-ID header, echoed in every response and log", h)
	}
	return nil
}

func (a *Auth) provision(env *provisionEnv) error {
	if a == nil {
		return nil
	}
	a.logger = env.logger.Named("auth")
	a.now = env.now
	a.metrics = env.metrics
	a.metrics.provisionAuth(a.keyHolders()) // one auth-success series per API-key holder, jwt and mtls

	if err := checkAuditAllows(a.AuditAllows); err != nil {
		return err
	}
	if err := checkPhase(a.Phase); err != nil {
		return err
	}
	a.Phase = cmp.Or(a.Phase, phaseDual)

	// Canonical, so the request path never canonicalizes (and allocates)
	// it again: the default's spelling, X-API-Key, is not.
	a.keyHeader = http.CanonicalHeaderKey(cmp.Or(a.APIKeyHeader, defaultAPIKeyHeader))
	reqID := env.requestIDHeader
	if reqID == "" {
		reqID = (*RequestID)(nil).headerName()
	}
	if err := checkAPIKeyHeader(a.keyHeader, reqID); err != nil {
		return err
	}

	if err := a.provisionDates(); err != nil {
		return err
	}

	// API keys: digests of every key, and no two holders with one value.
	seen := make(map[string]bool, len(a.APIKeys))
	for _, k := range a.APIKeys {
		if k.Secret == "" {
			return errors.New("api_key: a secret name is required")
		}
		if seen[k.Secret] {
			return fmt.Errorf("api_key %s configured twice", k.Secret)
		}
		seen[k.Secret] = true
		if _, ok := env.secrets[k.Secret]; !ok {
			return fmt.Errorf("missing required secret: %s", k.Secret)
		}
	}
	a.apiKeys = newAPIKeySet(a.APIKeys, env.secrets)
	for i := range a.apiKeys.digests {
		for j := range i {
			if a.apiKeys.digests[i] == a.apiKeys.digests[j] {
				return fmt.Errorf("api_key %s and api_key %s have the same value; each holder needs its own key",
					a.APIKeys[j].Secret, a.APIKeys[i].Secret)
			}
		}
	}
	for _, k := range a.APIKeys {
		if len(k.Scopes) == 0 {
			a.logger.Warn("API key has no scopes: legacy full access to every path; list its scopes to enforce least privilege",
				zap.String("key", k.Secret))
		}
	}
	if len(a.APIKeys) > 0 && a.Phase == phaseJWTOnly {
		a.logger.Info("phase jwt_only: configured API keys are refused (kept only to name them in logs)")
	}

	if a.JWT != nil {
		v, err := a.JWT.newVerifier(env)
		if err != nil {
			return fmt.Errorf("jwt: %w", err)
		}
		a.jwt = v
	}
	certs, err := newCertIdentities(a.ClientCerts)
	if err != nil {
		return fmt.Errorf("client_cert: %w", err)
	}
	a.certs = certs
	if a.jwt == nil && a.certs == nil && (len(a.APIKeys) == 0 || a.Phase == phaseJWTOnly) {
		return errors.New("no usable credentials: configure a jwt block or client_cert lines (and, outside jwt_only, api_key lines)")
	}

	// Scope rules.
	a.rules = nil
	catchAll := false
	for _, req := range a.Require {
		r := compiledRule{scopes: dedupe(append([]string(nil), req.Scopes...))}
		r.joined = strings.Join(r.scopes, " ")
		if req.Path != "" {
			r.match = caddyhttp.MatchPath{req.Path}
			if err := r.match.Provision(env.Context); err != nil {
				return fmt.Errorf("require %s: %v", req.Path, err)
			}
		}
		if catchAll {
			a.logger.Warn("require rule after a rule without a path can never match", zap.String("path", req.Path))
		}
		catchAll = catchAll || req.Path == ""
		a.rules = append(a.rules, r)
	}
	if len(a.Public) > 0 {
		a.public = append(caddyhttp.MatchPath(nil), a.Public...)
		if err := a.public.Provision(env.Context); err != nil {
			return fmt.Errorf("public: %v", err)
		}
	}

	a.Revocation.setTokenBounds(a.jwt)
	if err := a.Revocation.provision(env); err != nil {
		return fmt.Errorf("revocation: %w", err)
	}
	return nil
}

// checkPhase is the rule for `phase`.
func checkPhase(p string) error {
	switch p {
	case "", phaseDual, phaseJWTRollout, phaseJWTOnly:
		return nil
	}
	return fmt.Errorf("phase must be dual, jwt_rollout or jwt_only, got %q", p)
}

// parseDate reads the `deprecated` or `sunset` time.
func parseDate(opt, v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return t, fmt.Errorf("%s: want an RFC 3339 time such as 2026-12-01T00:00:00Z: %v", opt, err)
	}
	return t, nil
}

func checkDate(opt, v string) error {
	_, err := parseDate(opt, v)
	return err
}

func (a *Auth) provisionDates() error {
	var sunset time.Time
	var err error
	if a.Deprecated != "" {
		if a.deprecated, err = parseDate("deprecated", a.Deprecated); err != nil {
			return err
		}
	}
	if a.Sunset != "" {
		if sunset, err = parseDate("sunset", a.Sunset); err != nil {
			return err
		}
		if a.Deprecated != "" && sunset.Before(a.deprecated) {
			return fmt.Errorf("sunset %s is earlier than deprecated %s (RFC 8594)", a.Sunset, a.Deprecated)
		}
	}
	if a.Phase == phaseJWTRollout {
		if a.Deprecated == "" {
			return errors.New("phase jwt_rollout requires `deprecated` (the date API keys became deprecated)")
		}
		a.depHeader = "@" + strconv.FormatInt(a.deprecated.Unix(), 10)
		if a.Sunset != "" {
			a.sunsetHeader = sunset.UTC().Format(http.TimeFormat)
		}
	}
	return nil
}

func (a *Auth) cleanup() error {
	if a == nil {
		return nil
	}
	// The JWKS refresher stops with Caddy's context of this config.
	return a.Revocation.cleanup()
}

func (a *Auth) name() string { return "auth" }

func (a *Auth) mode() string {
	if a == nil {
		return ""
	}
	return a.Mode
}

func (a *Auth) reasons() []string {
	return []string{reasonAuthMissing, reasonAuthInvalid, reasonAuthScope, errKeyDisabled.reason, reasonTokenBinding}
}

// decide authenticates the request and checks its scopes.
func (a *Auth) decide(ex *exchange) decision {
	if a == nil {
		return allow
	}
	r := ex.r
	// Identity headers are sechard's alone: client-sent copies go first,
	// whatever happens next. The API key leaves the request as soon as it
	// is read, so it never reaches the upstream.
	for _, h := range identityHeaders {
		r.Header.Del(h)
	}
	keys := r.Header.Values(a.keyHeader)
	if len(keys) > 0 {
		r.Header.Del(a.keyHeader)
	}

	if a.public != nil && a.public.Match(r) {
		return decision{Audit: ex.auditAuth(zapcore.DebugLevel, "allow", "public", "", nil, nil, "")}
	}

	id, cerr, method := a.authenticate(ex, keys)
	if cerr != nil {
		if method == "" {
			return decision{Status: http.StatusUnauthorized, Reason: reasonAuthMissing, Detail: "no credentials",
				Header: http.Header{"Www-Authenticate": {`Bearer realm="sechard"`}},
				Audit:  ex.auditAuth(zapcore.WarnLevel, "deny", reasonAuthMissing, method, nil, nil, ""),
				Event:  eventAuthDenied, EventValue: method}
		}
		return decision{Status: http.StatusUnauthorized, Reason: cerr.reason, Detail: cerr.desc,
			Header: http.Header{"Www-Authenticate": {`Bearer realm="sechard", error="invalid_token", error_description="` + cerr.desc + `"`}},
			Audit:  ex.auditAuth(zapcore.WarnLevel, "deny", cerr.reason, method, id, cerr, ""),
			Event:  eventAuthDenied, EventValue: method}
	}

	for _, rule := range a.rules {
		if rule.match != nil && !rule.match.Match(r) {
			continue
		}
		for _, s := range rule.scopes {
			if !id.has(s) {
				return decision{Status: http.StatusForbidden, Reason: reasonAuthScope, Detail: "missing scope " + s,
					Header: http.Header{"Www-Authenticate": {`Bearer error="insufficient_scope", scope="` + rule.joined + `"`}},
					Audit:  ex.auditAuth(zapcore.WarnLevel, "deny", reasonAuthScope, id.method, id, nil, rule.joined),
					Event:  eventAuthDenied, EventValue: id.method}
			}
		}
		break // first match wins
	}

	// One allocation for the three identity headers (each value slice is
	// the request's own: a later handler may write to it).
	vals := make([]string, 3)
	vals[0], vals[1], vals[2] = id.subject, id.joined, id.method
	r.Header[hdrSubject] = vals[0:1:1]
	if id.joined != "" {
		r.Header[hdrScopes] = vals[1:2:2]
	}
	r.Header[hdrMethod] = vals[2:3:3]
	ex.repl.Set("http.auth.user.id", id.boxedSubject)
	ex.repl.Set("http.auth.user.scopes", id.boxedScopes)
	ex.repl.Set("http.auth.user.method", id.boxedMethod)
	ex.identity = id.subject // for rate_limit's identity budgets
	a.metrics.authSuccess(id)
	switch a.AuditAllows {
	case auditAllowsAccessLog:
		if extra, ok := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok && extra != nil {
			extra.Add(zap.Inline(id))
		}
	case auditAllowsOff:
	default:
		return decision{Audit: ex.auditAuth(zapcore.InfoLevel, "allow", "authenticated", id.method, id, nil, "")}
	}
	return allow
}

// authenticate finds the request's credential in precedence order and
// verifies it. method names the kind of credential presented ("" for
// none). On a refusal, id may still name who it was (a matched API key in
// jwt_only, a revoked token's subject) for the audit log.
func (a *Auth) authenticate(ex *exchange, keys []string) (id *identity, cerr *credError, method string) {
	r := ex.r
	auth := r.Header.Values("Authorization")
	// 1. mTLS: a verified certificate that a client_cert line maps
	//    decides. One that grants nothing (unmapped, expired, revoked)
	//    lets the next credential decide, and is the answer only when
	//    there is none.
	certID, certErr := a.authenticateCert(r.TLS)
	if certID != nil && certErr == nil {
		// A certificate-bound bearer token sent along is still checked
		// (RFC 8705 §3): precedence must not let a token bound to another
		// certificate, or with a confirmation method sechard does not
		// know, pass unnoticed. A token that does not verify is ignored
		// here, as before: the certificate decides.
		if token, ok := a.bearer(auth); ok {
			if id, cerr := a.verifyBearer(token); cerr == errTokenCnf {
				return id, cerr, "jwt"
			} else if cerr == nil {
				if berr := checkBinding(id, r.TLS); berr != nil {
					return id, berr, "jwt"
				}
			}
		}
		return certID, nil, "mtls"
	}

	// 2. JWT: when a bearer token is present it decides, even if an API
	//    key was sent too.
	if len(auth) > 0 {
		if len(auth) > 1 {
			return nil, errCredAmbiguous, "jwt"
		}
		if token, ok := bearerToken(auth[0]); ok {
			id, cerr := a.verifyBearer(token)
			if cerr != nil {
				return id, cerr, "jwt"
			}
			// Revocation and the certificate binding are checked on
			// every request, cached token or not.
			if a.Revocation.revoked(id.jti, id.subject, id.iat) {
				return id, errTokenRevoked, "jwt"
			}
			if berr := checkBinding(id, r.TLS); berr != nil {
				return id, berr, "jwt"
			}
			return id, nil, "jwt"
		}
		// Another scheme (Basic, ...) is not a credential sechard knows.
	}

	// 3. API key.
	if len(keys) == 0 {
		if certErr != nil {
			return certID, certErr, "mtls"
		}
		return nil, &credError{reason: "auth_missing"}, ""
	}
	if len(keys) > 1 {
		return nil, errCredAmbiguous, "api_key"
	}
	if a.Phase == phaseJWTRollout {
		// RFC 9745/8594: every API-key response says keys are going away.
		h := ex.w.Header()
		h.Set("Deprecation", a.depHeader)
		if a.sunsetHeader != "" {
			h.Set("Sunset", a.sunsetHeader)
		}
	}
	if len(keys[0]) > maxTokenSize {
		return nil, errTokenTooLarge, "api_key"
	}
	id = a.apiKeys.match(keys[0])
	switch {
	case a.Phase == phaseJWTOnly:
		if id != nil {
			if c := a.logger.Check(zapcore.WarnLevel, "API key refused: phase jwt_only"); c != nil {
				c.Write(zap.String("key", id.subject), zap.String("request_id", ex.requestID))
			}
		}
		return id, errKeyDisabled, "api_key"
	case id == nil:
		return nil, errKeyUnknown, "api_key"
	case a.Phase == phaseJWTRollout:
		if c := a.logger.Check(zapcore.WarnLevel, "deprecated API key used; migrate this client to a JWT"); c != nil {
			c.Write(zap.String("key", id.subject), zap.String("deprecated", a.Deprecated),
				zap.String("sunset", a.Sunset), zap.String("request_id", ex.requestID))
		}
	}
	return id, nil, "api_key"
}
