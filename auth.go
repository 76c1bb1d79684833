package sechard

import "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

// Auth authenticates clients and enforces scopes per endpoint (SEC-10).
// STUB: the auth issue replaces this.
type Auth struct {
	// Mode is enforce (default) or report.
	Mode string `json:"mode,omitempty"`
}

func (a *Auth) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		return d.Errf("unrecognized auth option %q", d.Val())
	}
	return nil
}

// requiredSecrets names the secrets the auth config needs (its API keys), so
// they are required automatically.
func (a *Auth) requiredSecrets() []string { return nil }

func (a *Auth) provision(env *provisionEnv) error { return nil }

func (a *Auth) cleanup() error { return nil }

func (a *Auth) mode() string {
	if a == nil {
		return ""
	}
	return a.Mode
}

func (a *Auth) decide(ex *exchange) decision { return allow }
