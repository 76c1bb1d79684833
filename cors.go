package sechard

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/sechard/sechard/internal/corsparse"
)

// CORS enforces a CORS allowlist (SEC-04): browsers may read responses only
// from the origins listed here, and preflight requests are answered by
// sechard itself, never by the upstream.
//
// An allowed origin is echoed in `Access-Control-Allow-Origin` (never `*`)
// on every response, including sechard's own 401/403/429 refusals and
// `handle_errors` responses, so browser code can read them. Every response
// carries `Vary: Origin`. sechard is the only source of `Access-Control-*`
// response headers: those an upstream or a later handler sets are removed.
type CORS struct {
	// The origins allowed to read responses, each `http(s)://host[:port]`.
	// An element may hold several origins separated by commas. Entries are
	// normalised (scheme and host lower-cased, default port and one trailing
	// `/` dropped) and matched byte for byte against the request's `Origin`.
	// Entries with a wildcard, another scheme, `null`, a path, query,
	// fragment, user info or whitespace are rejected with a warning (or a
	// config error with `strict`). When absent (not merely empty), origins
	// are read from the `ALLOWED_ORIGINS` environment variable (comma or
	// space separated) when the config is loaded.
	Origins []string `json:"origins,omitzero"`

	// Methods allowed in preflight requests. Default: GET HEAD POST.
	Methods []string `json:"methods,omitempty"`

	// Request headers allowed in preflight requests (case-insensitive).
	// Default: Authorization Content-Type X-API-Key X-Request-ID. An empty
	// list allows none.
	AllowHeaders []string `json:"allow_headers,omitzero"`

	// Response headers browser code may read, sent on allowed responses as
	// `Access-Control-Expose-Headers`. Default: X-Request-ID Retry-After
	// RateLimit RateLimit-Policy. An empty list exposes none.
	ExposeHeaders []string `json:"expose_headers,omitzero"`

	// Send `Access-Control-Allow-Credentials: true` to allowed origins, so
	// browsers send cookies and read the responses of credentialed requests.
	Credentials bool `json:"credentials,omitempty"`

	// How long browsers may cache a preflight answer
	// (`Access-Control-Max-Age`). Default: 10m; at most 24h.
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	// Fail the config load when any origin entry is rejected, instead of
	// warning and loading the others.
	Strict bool `json:"strict,omitempty"`

	// Mode is enforce (default) or report. In report mode a preflight that
	// would be refused is logged at warn with the reason enforcement would
	// give and answered with 204 instead of 403; report mode never lists an
	// origin, method or header that is not configured.
	Mode string `json:"mode,omitempty"`

	logger       *zap.Logger
	origins      map[string]struct{} // normalised allowed origins
	maxOrigin    int                 // longest allowed origin, to skip hashing long Origin headers
	methods      map[string]struct{}
	allowHeaders map[string]struct{} // lower-case

	// Header values, joined once here. Each request gets fresh slices
	// holding these strings: a slice put into a header map must never be
	// shared between requests (rs/cors #198, jub0bs/cors #14).
	allowMethodsValue string
	allowHeadersValue string
	exposeValue       string
	maxAgeValue       string
}

// CORS defaults (DESIGN.md, SEC-04).
var (
	defaultCORSMethods       = []string{"GET", "HEAD", "POST"}
	defaultCORSAllowHeaders  = []string{"Authorization", "Content-Type", "X-API-Key", "X-Request-ID"}
	defaultCORSExposeHeaders = []string{"X-Request-ID", "Retry-After", "RateLimit", "RateLimit-Policy"}
)

const (
	defaultCORSMaxAge = 10 * time.Minute
	maxCORSMaxAge     = 24 * time.Hour // what jub0bs/cors allows, above what any browser honours

	// allowedOriginsEnv is read when the cors block has no origins line.
	allowedOriginsEnv = "ALLOWED_ORIGINS"

	reasonCORSPreflightDenied = "cors_preflight_denied"

	varyPreflight = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
)

// unmarshalCaddyfile parses the cors block:
//
//	cors {
//		origins        <origin...>    # comma and/or space separated; repeatable
//		methods        <method...>
//		allow_headers  [<field...>]
//		expose_headers [<field...>]
//		credentials
//		max_age        <duration>
//		strict
//		mode           enforce|report
//	}
func (c *CORS) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "origins":
			if c.Origins == nil {
				// An origins line, even an empty one (an unset
				// {$ALLOWED_ORIGINS}), means: not from the environment.
				c.Origins = []string{}
			}
			for _, arg := range d.RemainingArgs() {
				// Split on commas only: the Caddyfile already split on
				// spaces, and a quoted origin with whitespace in it must
				// reach provision, which rejects it by name.
				for _, o := range strings.Split(arg, ",") {
					if o != "" {
						c.Origins = append(c.Origins, o)
					}
				}
			}
		case "methods":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			c.Methods = append(c.Methods, args...)
		case "allow_headers":
			c.AllowHeaders = append(nonNil(c.AllowHeaders), d.RemainingArgs()...)
		case "expose_headers":
			c.ExposeHeaders = append(nonNil(c.ExposeHeaders), d.RemainingArgs()...)
		case "credentials":
			if d.NextArg() {
				return d.ArgErr()
			}
			c.Credentials = true
		case "strict":
			if d.NextArg() {
				return d.ArgErr()
			}
			c.Strict = true
		case "max_age":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("parsing max_age: %v", err)
			}
			c.MaxAge = caddy.Duration(dur)
			if err := checkCORSMaxAge(dur); err != nil {
				return d.Err(err.Error())
			}
		case "mode":
			var err error
			if c.Mode, err = parseMode(d, "cors"); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized cors option %q", d.Val())
		}
	}
	return nil
}

// nonNil makes an explicitly empty list distinguishable from an absent one.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (c *CORS) provision(env *provisionEnv) error {
	if c == nil {
		return nil
	}
	c.logger = env.logger.Named("cors")

	if err := checkCORSMaxAge(time.Duration(c.MaxAge)); err != nil {
		return err
	}

	// Origins: from the config, or else from the environment.
	entries, source := c.Origins, "origins"
	if entries == nil {
		entries, source = corsparse.SplitOriginList(os.Getenv(allowedOriginsEnv)), allowedOriginsEnv
	} else {
		var split []string
		for _, e := range entries {
			if strings.Contains(e, ",") {
				split = append(split, strings.Split(e, ",")...)
			} else {
				split = append(split, e)
			}
		}
		entries = split
	}
	c.origins = make(map[string]struct{}, len(entries))
	var rejected []string
	for _, e := range entries {
		if e == "" {
			continue
		}
		o, err := corsparse.ParseOrigin(e)
		if err != nil {
			rejected = append(rejected, err.Error())
			if !c.Strict {
				c.logger.Warn("rejected CORS origin entry; the other entries still load",
					zap.String("entry", e), zap.String("reason", err.(*corsparse.OriginError).Reason),
					zap.String("source", source))
			}
			continue
		}
		c.origins[o] = struct{}{}
		c.maxOrigin = max(c.maxOrigin, len(o))
	}
	if c.Strict && len(rejected) > 0 {
		return fmt.Errorf("strict: %d rejected origin entries (from %s): %s",
			len(rejected), source, strings.Join(rejected, "; "))
	}
	if len(c.origins) == 0 {
		c.logger.Warn("CORS allowlist is empty: no origin is allowed", zap.String("source", source))
	}

	// Methods: byte-for-byte, as browsers send them; the ones Fetch
	// normalises (DELETE GET HEAD OPTIONS POST PUT) are upper-cased here so
	// `methods get` means what the user meant.
	methods := c.Methods
	if len(methods) == 0 {
		methods = defaultCORSMethods
	}
	c.methods = make(map[string]struct{}, len(methods))
	var methodList []string
	for _, m := range methods {
		if !corsparse.IsToken(m) || m == "*" {
			return fmt.Errorf("invalid method %q (wildcards are not supported)", m)
		}
		switch u := strings.ToUpper(m); u {
		case "DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT":
			m = u
		}
		if _, dup := c.methods[m]; !dup {
			c.methods[m] = struct{}{}
			methodList = append(methodList, m)
		}
	}
	c.allowMethodsValue = strings.Join(methodList, ", ")

	allowHeaders := c.AllowHeaders
	if allowHeaders == nil {
		allowHeaders = defaultCORSAllowHeaders
	}
	c.allowHeaders = make(map[string]struct{}, len(allowHeaders))
	var allowList []string
	for _, h := range allowHeaders {
		if err := checkFieldName(h); err != nil {
			return fmt.Errorf("allow_headers: %v", err)
		}
		if len(h) > corsparse.MaxNameBytes {
			return fmt.Errorf("allow_headers: %q is longer than %d bytes", h, corsparse.MaxNameBytes)
		}
		if _, dup := c.allowHeaders[strings.ToLower(h)]; !dup {
			c.allowHeaders[strings.ToLower(h)] = struct{}{}
			allowList = append(allowList, h)
		}
	}
	c.allowHeadersValue = strings.Join(allowList, ", ")

	exposeHeaders := c.ExposeHeaders
	if exposeHeaders == nil {
		exposeHeaders = defaultCORSExposeHeaders
	}
	for _, h := range exposeHeaders {
		if err := checkFieldName(h); err != nil {
			return fmt.Errorf("expose_headers: %v", err)
		}
	}
	c.exposeValue = strings.Join(exposeHeaders, ", ")

	maxAge := time.Duration(c.MaxAge)
	if maxAge == 0 {
		maxAge = defaultCORSMaxAge
	}
	c.maxAgeValue = strconv.FormatInt(int64(maxAge/time.Second), 10)
	return nil
}

func checkFieldName(h string) error {
	if h == "*" {
		return fmt.Errorf("wildcards are not supported; list each header")
	}
	if !corsparse.IsToken(h) {
		return fmt.Errorf("invalid header name %q", h)
	}
	return nil
}

// checkCORSMaxAge is the rule for max_age, for the parser and provision.
func checkCORSMaxAge(d time.Duration) error {
	if d < 0 || d > maxCORSMaxAge {
		return fmt.Errorf("max_age must be between 0 and %v, got %v", maxCORSMaxAge, d)
	}
	return nil
}
