package sechard

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
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
