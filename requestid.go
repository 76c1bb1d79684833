package sechard

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/google/uuid"
)

// RequestID decides each request's ID (SEC-06). STUB: the foundation issue
// replaces this with the full implementation.
type RequestID struct {
	// The header that carries the ID in both directions. Default: X-Request-ID.
	Header string `json:"header,omitempty"`
}

func (c *RequestID) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		return d.Errf("unrecognized request_id option %q", d.Val())
	}
	return nil
}

func (c *RequestID) provision(env *provisionEnv) error {
	if c.Header == "" {
		c.Header = "X-Request-ID"
	}
	return nil
}

// assign sets ex.requestID and puts it on the request.
func (c *RequestID) assign(ex *exchange) {
	ex.requestID = uuid.NewString()
	ex.r.Header.Set(c.Header, ex.requestID)
}
