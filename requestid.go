package sechard

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/google/uuid"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/net/http/httpguts"
)

// RequestID decides each request's ID (SEC-06) before anything else can log
// or respond.
//
// An inbound ID that matches `^[A-Za-z0-9_-]{1,max_length}$` is kept. A
// missing or empty one is replaced by a new UUID silently; a malformed one
// (too long, any other byte, or the header sent more than once) is replaced
// by a new UUID and a warning is logged with the escaped, truncated bad value
// and the client's address.
//
// The ID is set on the request passed on (so `reverse_proxy` sends it
// upstream), on every response, in the placeholder `{http.vars.request_id}`
// and as the field `request_id` in Caddy's access log. This stage never
// refuses a request.
type RequestID struct {
	// The header that carries the ID in both directions.
	// Default: `X-Request-ID`.
	Header string `json:"header,omitempty"`

	// The longest inbound ID that is kept, in bytes, from 1 to 64.
	// Default: 64.
	MaxLength int `json:"max_length,omitempty"`

	// How new IDs are made: `uuid4` (random, the default) or `uuid7`
	// (time-ordered, RFC 9562).
	Generate string `json:"generate,omitempty"`

	// Whether a valid ID sent by the client is kept. Absent means true;
	// false always generates a new ID and ignores the client's, silently.
	AcceptInbound *bool `json:"accept_inbound,omitempty"`

	header  string // canonical form of Header
	max     int
	accept  bool
	newID   func() string
	logger  *zap.Logger
	metrics *handlerMetrics
}

// requestIDVar is the name of the request variable that holds the ID, read
// as the placeholder {http.vars.request_id}.
const requestIDVar = "request_id"

// maxRequestIDLength is the longest ID sechard accepts (SEC-06: 64).
const maxRequestIDLength = 64

// logValueLimit bounds how much of a malformed ID is logged.
const logValueLimit = 64

func (c *RequestID) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		var v string
		if !d.AllArgs(&v) {
			return d.ArgErr()
		}
		var err error
		switch opt {
		case "header":
			c.Header = v
			err = checkRequestIDHeader(v)
		case "max_length":
			if c.MaxLength, err = strconv.Atoi(v); err != nil {
				return d.Errf("request_id max_length must be an integer from 1 to %d, got %q", maxRequestIDLength, v)
			}
			err = checkRequestIDMaxLength(c.MaxLength)
		case "generate":
			c.Generate = v
			err = checkRequestIDGenerate(v)
		case "accept_inbound":
			if v != "on" && v != "off" {
				return d.Errf("request_id accept_inbound must be on or off, got %q", v)
			}
			on := v == "on"
			c.AcceptInbound = &on
		default:
			return d.Errf("unrecognized request_id option %q", opt)
		}
		if err != nil {
			return d.Errf("request_id %v", err)
		}
	}
	return nil
}

// The rules of the request_id block, checked by the Caddyfile parser (for
// the line number) and by provision (for JSON configs).
func checkRequestIDHeader(h string) error {
	if !httpguts.ValidHeaderFieldName(h) {
		return fmt.Errorf("header: invalid header field name %q", h)
	}
	return nil
}

func checkRequestIDMaxLength(n int) error {
	if n < 1 || n > maxRequestIDLength {
		return fmt.Errorf("max_length must be from 1 to %d, got %d", maxRequestIDLength, n)
	}
	return nil
}

func checkRequestIDGenerate(g string) error {
	if g != "" && g != "uuid4" && g != "uuid7" {
		return fmt.Errorf("generate must be uuid4 or uuid7, got %q", g)
	}
	return nil
}

func (c *RequestID) provision(env *provisionEnv) error {
	if c.Header == "" {
		c.Header = "X-Request-ID"
	}
	errs := []error{checkRequestIDHeader(c.Header), checkRequestIDGenerate(c.Generate)}
	if c.MaxLength != 0 {
		errs = append(errs, checkRequestIDMaxLength(c.MaxLength))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.header = http.CanonicalHeaderKey(c.Header)
	c.max = cmp.Or(c.MaxLength, maxRequestIDLength)
	c.newID = newUUID4
	if c.Generate == "uuid7" {
		c.newID = newUUID7
	}
	c.accept = c.AcceptInbound == nil || *c.AcceptInbound
	c.logger = env.logger.Named("request_id")
	c.metrics = env.metrics
	return nil
}

// headerName is the canonical name of the request-ID header; it is valid
// after provision (and for a nil stage, the default).
func (c *RequestID) headerName() string {
	if c == nil || c.header == "" {
		return "X-Request-Id"
	}
	return c.header
}

// newUUID4 returns a random (version 4) UUID. crypto/rand never fails on the
// platforms Go supports (Go 1.24+), so neither does this.
func newUUID4() string { return uuid.Must(uuid.NewRandom()).String() }

// newUUID7 returns a time-ordered (version 7) UUID.
func newUUID7() string { return uuid.Must(uuid.NewV7()).String() }

// validRequestID reports whether id matches ^[A-Za-z0-9_-]{1,maxLen}$. It looks
// at no more than maxLen+1 bytes' worth of input: a longer value is rejected by
// its length alone, so a 10 KB header costs no more than a valid one.
func validRequestID(id string, maxLen int) bool {
	if len(id) == 0 || len(id) > maxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !idByte[id[i]] {
			return false
		}
	}
	return true
}

// idByte marks the bytes an inbound request ID may contain.
var idByte = func() (t [256]bool) {
	for b := 'A'; b <= 'Z'; b++ {
		t[b] = true
	}
	for b := 'a'; b <= 'z'; b++ {
		t[b] = true
	}
	for b := '0'; b <= '9'; b++ {
		t[b] = true
	}
	t['-'], t['_'] = true, true
	return t
}()

// assign decides the request's ID, sets ex.requestID, and records the ID on
// the request passed on, in {http.vars.request_id} and in the access log.
func (c *RequestID) assign(ex *exchange) {
	hdr := c.headerName()
	r := ex.r
	inbound := r.Header[hdr]

	id, reason := "", ""
	switch {
	case c == nil || !c.accept || len(inbound) == 0:
	case len(inbound) > 1:
		reason = "multiple_values"
	case inbound[0] == "":
	case validRequestID(inbound[0], c.max):
		id = inbound[0]
	case len(inbound[0]) > c.max:
		reason = "too_long"
	default:
		reason = "invalid_byte"
	}

	if id == "" {
		if c == nil || c.newID == nil {
			id = newUUID4()
		} else {
			id = c.newID()
		}
		// The exchange's slice: never share one header slice between requests.
		ex.idVals[0] = id
		r.Header[hdr] = ex.idVals[:1:1]
		if reason != "" {
			c.logReplaced(r, id, reason, inbound)
		}
		if c != nil && c.accept {
			// sechard_request_id_replaced_total: missing (absent or empty)
			// or malformed (too_long, invalid_byte, multiple_values).
			c.metrics.requestIDReplaced(reason != "")
		}
	}
	// else: the one inbound value is already exactly the ID; nothing to set.

	ex.requestID = id
	ctx := r.Context()
	caddyhttp.SetVar(ctx, requestIDVar, id)
	if extra, ok := ctx.Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok && extra != nil {
		extra.Set(zap.String("request_id", id))
	}
}

// logReplaced warns about a malformed inbound ID. The bad value is truncated
// before it is escaped, so the log line stays small and free of control
// characters whatever the client sent (CWE-117).
func (c *RequestID) logReplaced(r *http.Request, id, reason string, inbound []string) {
	ce := c.logger.Check(zapcore.WarnLevel, "malformed inbound request ID replaced")
	if ce == nil {
		return
	}
	bad := inbound[0]
	if reason == "multiple_values" {
		// Show the first value that is not the one we would have kept.
		for _, v := range inbound {
			if !validRequestID(v, c.max) {
				bad = v
				break
			}
		}
	}
	length := len(bad)
	if length > logValueLimit {
		bad = bad[:logValueLimit]
	}
	ce.Write(
		zap.String("request_id", id),
		zap.String("reason", reason),
		zap.String("header", c.header),
		zap.String("value", strconv.Quote(bad)),
		zap.Bool("truncated", length > logValueLimit),
		zap.Int("length", length),
		zap.Int("values", len(inbound)),
		zap.String("remote_addr", r.RemoteAddr),
		zap.String("client_ip", clientIP(r)),
	)
}
