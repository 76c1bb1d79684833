package sechard

import (
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

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
	// (The names are canonical, so the map is used directly.)
	for _, h := range identityHeaders {
		delete(r.Header, h)
	}
	keys := r.Header[a.keyHeader]
	if len(keys) > 0 {
		delete(r.Header, a.keyHeader)
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
	d := decision{Count: a.metrics.authSuccessCounter(id)}
	switch a.AuditAllows {
	case auditAllowsAccessLog:
		// Not an entry of its own: the decision's fields ride on Caddy's
		// access-log line.
		if extra, ok := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok && extra != nil {
			extra.Add(zap.Inline(id))
		}
	case auditAllowsOff:
	default:
		d.Audit = ex.auditAuth(zapcore.InfoLevel, "allow", "authenticated", id.method, id, nil, "")
	}
	return d
}

// authenticate finds the request's credential in precedence order and
// verifies it. method names the kind of credential presented ("" for
// none). On a refusal, id may still name who it was (a matched API key in
// jwt_only, a revoked token's subject) for the audit log.
func (a *Auth) authenticate(ex *exchange, keys []string) (id *identity, cerr *credError, method string) {
	r := ex.r
	auth := r.Header["Authorization"]
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
