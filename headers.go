package sechard

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"golang.org/x/net/http/httpguts"
)

// SecurityHeaders sets security response headers on every response that
// leaves through sechard, whoever wrote it: sechard's own refusals,
// `respond`, `file_server`, `reverse_proxy` (its 502s included) and
// `handle_errors` (SEC-07).
//
// With no options the headers are:
//
//	X-Content-Type-Options: nosniff
//	X-Frame-Options: DENY
//	Referrer-Policy: strict-origin-when-cross-origin
//	Content-Security-Policy: default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'
//	Cross-Origin-Opener-Policy: same-origin
//	Cross-Origin-Resource-Policy: same-origin
//	X-Permitted-Cross-Domain-Policies: none
//	Strict-Transport-Security: max-age=31536000; includeSubDomains   (TLS connections only)
//
// and `Server` and `X-Powered-By` are removed. Each header has exactly one
// value on the wire: the headers are set before the next handler runs (so
// they survive into error responses and `handle_errors`) and set again when
// the response header is written (so an upstream's `X-Frame-Options:
// SAMEORIGIN` becomes `DENY`, not a second value).
//
// The request-ID header is asserted the same way on every response, even
// when security headers are off.
type SecurityHeaders struct {
	// The Content-Security-Policy header. `off` sends none.
	// Default: `default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'`.
	ContentSecurityPolicy string `json:"content_security_policy,omitempty"`

	// A policy to send as Content-Security-Policy-Report-Only, to try a
	// stricter policy without enforcing it. Default: none.
	ContentSecurityPolicyReportOnly string `json:"content_security_policy_report_only,omitempty"`

	// The X-Frame-Options header: `DENY` or `SAMEORIGIN`; `off` sends none.
	// Default: `DENY`.
	FrameOptions string `json:"frame_options,omitempty"`

	// The Referrer-Policy header: one policy token, or a comma-separated
	// list of fallbacks; `off` sends none.
	// Default: `strict-origin-when-cross-origin`.
	ReferrerPolicy string `json:"referrer_policy,omitempty"`

	// The Strict-Transport-Security header, sent on TLS connections only
	// (never on plain HTTP); `off` sends none.
	// Default: `max-age=31536000; includeSubDomains`.
	HSTS string `json:"hsts,omitempty"`

	// More headers to set on every response, field name to value. They win
	// over the defaults and the named options above, and over the same
	// headers from the next handler or an upstream.
	Set map[string]string `json:"set,omitempty"`

	// More header fields to remove from every response, whoever set them.
	// `Server` and `X-Powered-By` are always removed (unless `off`). A
	// header named here is not sent by sechard either.
	Remove []string `json:"remove,omitempty"`

	// Off turns every security header off, the removals included. The
	// request-ID header is still sent.
	Off bool `json:"off,omitempty"`

	idHeader string       // canonical request-ID header name
	pairs    []headerPair // headers for every response, canonical keys
	hsts     string       // Strict-Transport-Security value for TLS; "" = none
	strip    []string     // canonical names of headers to remove
}

// headerPair is one precomputed response header.
type headerPair struct{ key, value string }

// Defaults (DESIGN.md, "Security headers (SEC-07)").
const (
	defaultCSP            = "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'"
	defaultFrameOptions   = "DENY"
	defaultReferrerPolicy = "strict-origin-when-cross-origin"
	defaultHSTS           = "max-age=31536000; includeSubDomains"
)

// referrerPolicies are the tokens of https://www.w3.org/TR/referrer-policy/#referrer-policies.
var referrerPolicies = map[string]bool{
	"no-referrer": true, "no-referrer-when-downgrade": true, "same-origin": true,
	"origin": true, "strict-origin": true, "origin-when-cross-origin": true,
	"strict-origin-when-cross-origin": true, "unsafe-url": true,
}

func (c *SecurityHeaders) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		// `security_headers off` on one line, as well as in the block.
		if d.Val() != "off" || d.NextArg() {
			return d.ArgErr()
		}
		c.Off = true
	}
	oneArg := func() (string, error) {
		if !d.NextArg() {
			return "", d.ArgErr()
		}
		v := d.Val()
		if d.NextArg() {
			return "", d.ArgErr()
		}
		return v, nil
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "content_security_policy":
			c.ContentSecurityPolicy, err = oneArg()
		case "content_security_policy_report_only":
			c.ContentSecurityPolicyReportOnly, err = oneArg()
		case "frame_options":
			c.FrameOptions, err = oneArg()
			if err == nil && normalizeFrameOptions(c.FrameOptions) == "" {
				return d.Errf("frame_options must be DENY, SAMEORIGIN or off, got %q", c.FrameOptions)
			}
		case "referrer_policy":
			c.ReferrerPolicy, err = oneArg()
			if err == nil {
				if perr := checkReferrerPolicy(c.ReferrerPolicy); perr != nil {
					return d.Errf("referrer_policy: %v", perr)
				}
			}
		case "hsts":
			c.HSTS, err = oneArg()
		case "set":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("set takes a header field and one value, got %d arguments", len(args))
			}
			if c.Set == nil {
				c.Set = make(map[string]string)
			}
			if _, dup := c.Set[args[0]]; dup {
				return d.Errf("set %s: header set twice", args[0])
			}
			c.Set[args[0]] = args[1]
		case "remove":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			c.Remove = append(c.Remove, args...)
		case "off":
			if d.NextArg() {
				return d.ArgErr()
			}
			c.Off = true
		default:
			return d.Errf("unrecognized security_headers option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// normalizeFrameOptions returns the canonical X-Frame-Options value, "off",
// or "" when v is not allowed. ALLOW-FROM is obsolete and ignored by
// browsers, so it is refused rather than silently ineffective.
func normalizeFrameOptions(v string) string {
	switch strings.ToUpper(v) {
	case "DENY":
		return "DENY"
	case "SAMEORIGIN":
		return "SAMEORIGIN"
	case "OFF":
		return "off"
	}
	return ""
}

// checkReferrerPolicy accepts `off` or a comma-separated list of policy
// tokens (browsers use the last one they understand).
func checkReferrerPolicy(v string) error {
	if v == "off" {
		return nil
	}
	for _, tok := range strings.Split(v, ",") {
		if !referrerPolicies[strings.ToLower(strings.TrimSpace(tok))] {
			return fmt.Errorf("unknown policy %q", strings.TrimSpace(tok))
		}
	}
	return nil
}

func (c *SecurityHeaders) provision(env *provisionEnv) error {
	c.idHeader = env.requestIDHeader
	if c.idHeader == "" {
		c.idHeader = (*RequestID)(nil).headerName()
	}
	c.pairs, c.hsts, c.strip = nil, "", nil
	if c.Off {
		return nil
	}

	// named options, in a fixed order so the response is deterministic
	var pairs []headerPair
	add := func(key, value string) { pairs = append(pairs, headerPair{key, value}) }
	pick := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	add("X-Content-Type-Options", "nosniff")

	fo := normalizeFrameOptions(pick(c.FrameOptions, defaultFrameOptions))
	if fo == "" {
		return fmt.Errorf("frame_options must be DENY, SAMEORIGIN or off, got %q", c.FrameOptions)
	}
	if fo != "off" {
		add("X-Frame-Options", fo)
	}

	rp := pick(c.ReferrerPolicy, defaultReferrerPolicy)
	if err := checkReferrerPolicy(rp); err != nil {
		return fmt.Errorf("referrer_policy: %v", err)
	}
	if rp != "off" {
		add("Referrer-Policy", rp)
	}

	if csp := pick(c.ContentSecurityPolicy, defaultCSP); csp != "off" {
		add("Content-Security-Policy", csp)
	}
	if c.ContentSecurityPolicyReportOnly != "" {
		add("Content-Security-Policy-Report-Only", c.ContentSecurityPolicyReportOnly)
	}
	add("Cross-Origin-Opener-Policy", "same-origin")
	add("Cross-Origin-Resource-Policy", "same-origin")
	add("X-Permitted-Cross-Domain-Policies", "none")

	hsts := pick(c.HSTS, defaultHSTS)
	if hsts == "off" {
		hsts = ""
	}

	// `set` wins over the defaults and the named options.
	setKeys := slices.Sorted(maps.Keys(c.Set))
	seen := make(map[string]string, len(setKeys))
	for _, k := range setKeys {
		v := c.Set[k]
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("set: invalid header field name %q", k)
		}
		if v == "" || !httpguts.ValidHeaderFieldValue(v) {
			return fmt.Errorf("set %s: invalid or empty value %q (use remove to drop a header)", k, v)
		}
		ck := http.CanonicalHeaderKey(k)
		if prev, dup := seen[ck]; dup {
			return fmt.Errorf("set: %q and %q are the same header", prev, k)
		}
		seen[ck] = k
		if ck == c.idHeader {
			return fmt.Errorf("set: %s is the request-ID header; configure it in request_id", k)
		}
		if ck == "Strict-Transport-Security" {
			hsts = v // still only on TLS
			continue
		}
		replaced := false
		for i := range pairs {
			if pairs[i].key == ck {
				pairs[i].value, replaced = v, true
			}
		}
		if !replaced {
			add(ck, v)
		}
	}

	// removals: always Server and X-Powered-By, then the user's; a removed
	// header is not sent by sechard either.
	strip := []string{"Server", "X-Powered-By"}
	for _, k := range c.Remove {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("remove: invalid header field name %q", k)
		}
		ck := http.CanonicalHeaderKey(k)
		if ck == c.idHeader {
			return fmt.Errorf("remove: %s is the request-ID header, which is always sent", k)
		}
		if _, isSet := seen[ck]; isSet {
			return fmt.Errorf("%s is both set and removed", k)
		}
		if !slices.Contains(strip, ck) {
			strip = append(strip, ck)
		}
	}
	kept := pairs[:0]
	for _, p := range pairs {
		if !slices.Contains(strip, p.key) {
			kept = append(kept, p)
		}
	}
	if slices.Contains(strip, "Strict-Transport-Security") {
		hsts = ""
	}
	for _, p := range kept {
		if !httpguts.ValidHeaderFieldValue(p.value) {
			return fmt.Errorf("%s: invalid header value %q", p.key, p.value)
		}
	}
	if hsts != "" && !httpguts.ValidHeaderFieldValue(hsts) {
		return fmt.Errorf("hsts: invalid header value %q", hsts)
	}
	c.pairs, c.hsts, c.strip = kept, hsts, strip
	return nil
}

// apply sets the request-ID and security headers on w and returns the
// writer the rest of the chain writes to, which asserts them again when the
// response header is written.
func (c *SecurityHeaders) apply(w http.ResponseWriter, ex *exchange) *securityHeadersWriter {
	if c == nil {
		c = offSecurityHeaders
	}
	// The writer lives in the exchange: one allocation per request for both.
	sw := &ex.sw
	sw.ResponseWriter = w
	sw.c, sw.id, sw.tls = c, ex.requestID, c.hsts != "" && ex.r.TLS != nil
	n := 1 + len(c.pairs)
	if sw.tls {
		n++
	}
	// One backing array per request, usually inside sw itself, handed out
	// as capacity-1 sub-slices: a later Add appends to a copy, and no slice
	// is ever shared between requests (rs/cors #198 was a data race from a
	// shared one).
	if n <= len(sw.buf) {
		sw.vals = sw.buf[:n]
	} else {
		sw.vals = make([]string, n)
	}
	h := w.Header()
	for _, k := range c.strip {
		delete(h, k)
	}
	v := sw.vals
	v[0] = sw.id
	h[c.idHeader] = v[0:1:1]
	for i, p := range c.pairs {
		v[i+1] = p.value
		h[p.key] = v[i+1 : i+2 : i+2]
	}
	if sw.tls {
		i := len(v) - 1
		v[i] = c.hsts
		h["Strict-Transport-Security"] = v[i : i+1 : i+1]
	}
	return sw
}

// offSecurityHeaders stands in for a nil stage: no security headers, the
// default request-ID header.
var offSecurityHeaders = &SecurityHeaders{Off: true, idHeader: (*RequestID)(nil).headerName()}
