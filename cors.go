package sechard

import (
	"fmt"
	"net/http"
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

func (c *CORS) name() string { return "cors" }

func (c *CORS) mode() string {
	if c == nil {
		return ""
	}
	return c.Mode
}

func (c *CORS) reasons() []string { return []string{reasonCORSPreflightDenied} }

// decide sets the CORS response headers and answers preflight requests.
//
// Every response gets Vary: Origin (OPTIONS responses also vary on the
// preflight request headers, so a cache never serves one for the other). An
// actual request from an allowed origin gets Access-Control-Allow-Origin
// (and -Credentials, -Expose-Headers) on ex.w.Header() now, so the headers
// also ride on a later refusal or handle_errors response. A request from any
// other origin goes on without CORS headers: the browser blocks the read.
func (c *CORS) decide(ex *exchange) decision {
	if c == nil {
		return allow
	}
	hdr := ex.w.Header()
	origin, single := singleValue(ex.r.Header["Origin"])
	allowed := single && c.originAllowed(origin)
	options := ex.r.Method == http.MethodOptions
	if options && len(ex.r.Header["Origin"]) > 0 {
		if acrm, ok := ex.r.Header["Access-Control-Request-Method"]; ok {
			return c.preflight(ex, hdr, origin, allowed, acrm)
		}
	}
	ex.cors = c.setActual(hdr, origin, allowed, options)
	if sw, ok := ex.w.(*securityHeadersWriter); ok {
		sw.ownCORS(ex.cors) // the only source of Access-Control-* headers from here on
	}
	return allow
}

// originAllowed is an exact map lookup, skipped for strings longer than any
// allowed origin so a huge Origin header costs nothing to refuse.
func (c *CORS) originAllowed(origin string) bool {
	if origin == "" || len(origin) > c.maxOrigin {
		return false
	}
	_, ok := c.origins[origin]
	return ok
}

// setActual sets the headers of a response to an actual (non-preflight)
// request. The values share one fresh backing array, handed out as
// capacity-limited one-element slices, so a later handler's append can
// never write into another header's value or another request's.
func (c *CORS) setActual(hdr http.Header, origin string, allowed, options bool) *corsActual {
	vary := "Origin"
	if options {
		vary = varyPreflight
	}
	if !allowed {
		v := new([1]string)
		v[0] = vary
		addVary(hdr, v[0:1:1])
		return nil
	}
	a := new(corsActual)
	v := &a.vals
	v[0], v[1] = vary, origin
	addVary(hdr, v[0:1:1])
	hdr[corsActualHeaders[0]] = v[1:2:2]
	if c.Credentials {
		v[2] = "true"
		hdr[corsActualHeaders[1]] = v[2:3:3]
	}
	if c.exposeValue != "" {
		v[3] = c.exposeValue
		hdr[corsActualHeaders[2]] = v[3:4:4]
	}
	copy(a.sent[:], v[1:])
	return a
}

// corsActual is what setActual set for an allowed origin: Vary, then the
// values of corsActualHeaders ("" for unset), and a copy of those values
// that the security-headers writer checks the response against.
type corsActual struct {
	vals [4]string
	sent [3]string
}

var corsActualHeaders = [...]string{
	"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers",
}

func corsActualIndex(k string) int {
	for i, name := range corsActualHeaders {
		if k == name {
			return i
		}
	}
	return -1
}

// addVary adds the Vary value in one (a fresh one-element slice) to what hdr
// already holds, unless it is there already.
func addVary(hdr http.Header, one []string) {
	existing := hdr["Vary"]
	if len(existing) == 0 {
		hdr["Vary"] = one
		return
	}
	for _, e := range existing {
		if e == one[0] {
			return
		}
	}
	hdr["Vary"] = append(existing[:len(existing):len(existing)], one[0])
}

// preflight answers a CORS preflight request (Fetch §3.2.3): 204 with the
// allowed methods and headers when the origin, the requested method and
// every requested header are allowed; otherwise 403 with no
// Access-Control-Allow-* header at all.
func (c *CORS) preflight(ex *exchange, hdr http.Header, origin string, originOK bool, acrm []string) decision {
	reason := ""
	switch method, _ := singleValue(acrm); {
	case !originOK:
		reason = "origin " + quoteForLog(firstOrEmpty(ex.r.Header["Origin"])) + " is not allowed"
	case !c.methodAllowed(method, len(acrm) == 1):
		reason = "method " + quoteForLog(firstOrEmpty(acrm)) + " is not allowed"
	default:
		if bad, ok := c.headersAllowed(ex.r.Header["Access-Control-Request-Headers"]); !ok {
			if bad == "" {
				reason = "Access-Control-Request-Headers is too long or lists too many names"
			} else {
				reason = "request header " + quoteForLog(bad) + " is not allowed"
			}
		}
	}

	v := new([6]string)
	v[0] = varyPreflight
	addVary(hdr, v[0:1:1])
	if reason == "" {
		c.setPreflight(hdr, v, origin, originOK)
		return decision{Status: http.StatusNoContent, Answer: true}
	}
	// Nothing set earlier may leak onto the refusal: a browser must not
	// read a denied preflight as a partial success.
	for k := range hdr {
		if strings.HasPrefix(k, "Access-Control-Allow-") {
			delete(hdr, k)
		}
	}
	// Report mode answers as if allowed: a refusal that is not applied
	// would otherwise pass the preflight on to the upstream, which must
	// never see one.
	allowed := http.Header{}
	c.setPreflight(allowed, v, origin, originOK)
	return decision{Status: http.StatusForbidden, Reason: reasonCORSPreflightDenied, Detail: reason,
		Instead: &decision{Status: http.StatusNoContent, Answer: true, Header: allowed}}
}

// setPreflight sets the Access-Control-Allow-* headers of an allowed
// preflight on hdr, with values in v[1:].
func (c *CORS) setPreflight(hdr http.Header, v *[6]string, origin string, originOK bool) {
	if originOK {
		v[1] = origin
		hdr["Access-Control-Allow-Origin"] = v[1:2:2]
		if c.Credentials {
			v[2] = "true"
			hdr["Access-Control-Allow-Credentials"] = v[2:3:3]
		}
	}
	v[3], v[4], v[5] = c.allowMethodsValue, c.allowHeadersValue, c.maxAgeValue
	hdr["Access-Control-Allow-Methods"] = v[3:4:4]
	if c.allowHeadersValue != "" {
		hdr["Access-Control-Allow-Headers"] = v[4:5:5]
	}
	hdr["Access-Control-Max-Age"] = v[5:6:6]
}

func (c *CORS) methodAllowed(method string, single bool) bool {
	if !single {
		return false
	}
	_, ok := c.methods[method]
	return ok
}

// headersAllowed checks every Access-Control-Request-Headers line.
func (c *CORS) headersAllowed(lines []string) (bad string, ok bool) {
	total := 0
	for _, l := range lines {
		if total += len(l); total > corsparse.MaxListBytes {
			return "", false
		}
		if bad, ok := corsparse.CheckHeaderList(l, c.allowHeaders); !ok {
			return bad, false
		}
	}
	return "", true
}

// singleValue returns the only value of a header; a header sent more than
// once (or not at all) has none.
func singleValue(v []string) (string, bool) {
	if len(v) != 1 {
		return "", false
	}
	return v[0], true
}

func firstOrEmpty(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}
