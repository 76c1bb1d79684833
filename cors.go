package sechard

import "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

// CORS enforces a CORS allowlist (SEC-04). STUB: the CORS issue replaces this.
type CORS struct {
	// Mode is enforce (default) or report.
	Mode string `json:"mode,omitempty"`
}

func (c *CORS) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		return d.Errf("unrecognized cors option %q", d.Val())
	}
	return nil
}

func (c *CORS) provision(env *provisionEnv) error { return nil }

func (c *CORS) mode() string {
	if c == nil {
		return ""
	}
	return c.Mode
}

func (c *CORS) decide(ex *exchange) decision { return allow }
