package sechard

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/sechard/sechard/internal/jwtverify"
	"go.uber.org/zap"
)

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

func (a *Auth) provision(env *provisionEnv) error {
	if a == nil {
		return nil
	}
	a.logger = env.logger.Named("auth")
	a.now = env.now
	a.metrics = env.metrics
	a.metrics.provisionAuth(a.keyHolders()) // one auth-success series per API-key holder, jwt and mtls

	// The block's own rules, all reported together.
	errs := []error{checkAuditAllows(a.AuditAllows), checkPhase(a.Phase)}
	a.Phase = cmp.Or(a.Phase, phaseDual)

	// Canonical, so the request path never canonicalizes (and allocates)
	// it again: the default's spelling, X-API-Key, is not.
	a.keyHeader = http.CanonicalHeaderKey(cmp.Or(a.APIKeyHeader, defaultAPIKeyHeader))
	reqID := env.requestIDHeader
	if reqID == "" {
		reqID = (*RequestID)(nil).headerName()
	}
	errs = append(errs, checkAPIKeyHeader(a.keyHeader, reqID), a.provisionDates())

	// API keys: named, once each, resolved.
	seen := make(map[string]bool, len(a.APIKeys))
	for _, k := range a.APIKeys {
		switch _, ok := env.secrets[k.Secret]; {
		case k.Secret == "":
			errs = append(errs, errors.New("api_key: a secret name is required"))
		case seen[k.Secret]:
			errs = append(errs, fmt.Errorf("api_key %s configured twice", k.Secret))
		case !ok:
			errs = append(errs, fmt.Errorf("missing required secret: %s", k.Secret))
		}
		seen[k.Secret] = true
	}
	if err := errors.Join(errs...); err != nil {
		return err
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
		r := compiledRule{scopes: jwtverify.NormalizeScopes(append([]string(nil), req.Scopes...))}
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
