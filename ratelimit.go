package sechard

import "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

// RateLimit limits request rates per client and route (SEC-09). STUB: the
// rate-limit issue replaces this.
type RateLimit struct {
	// Mode is enforce (default) or report.
	Mode string `json:"mode,omitempty"`
}

func (c *RateLimit) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		return d.Errf("unrecognized rate_limit option %q", d.Val())
	}
	return nil
}

func (c *RateLimit) provision(env *provisionEnv) error { return nil }

func (c *RateLimit) cleanup() error { return nil }

func (c *RateLimit) mode() string {
	if c == nil {
		return ""
	}
	return c.Mode
}

func (c *RateLimit) decide(ex *exchange) decision { return allow }
