package sechard

import (
	"net/http"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// SecurityHeaders sets security response headers on every response (SEC-07).
// STUB: the foundation issue replaces this with the full implementation.
type SecurityHeaders struct {
	// Off turns every security header off, removals included.
	Off bool `json:"off,omitempty"`
}

func (c *SecurityHeaders) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		return d.Errf("unrecognized security_headers option %q", d.Val())
	}
	return nil
}

func (c *SecurityHeaders) provision(env *provisionEnv) error { return nil }

// apply sets the headers on w and returns the writer the rest of the chain
// writes to.
func (c *SecurityHeaders) apply(w http.ResponseWriter, ex *exchange) http.ResponseWriter {
	w.Header().Set("X-Request-ID", ex.requestID)
	return w
}
