package sechard

import (
	"net/http"
	"strings"

	"github.com/sechard/sechard/internal/corsparse"
)

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
	var own *corsActual
	if a := &ex.scratch().corsHeaders; c.setActual(hdr, a, origin, allowed, options) {
		own = a
	}
	if sw, ok := ex.w.(*securityHeadersWriter); ok {
		sw.ownCORS(own) // the only source of Access-Control-* headers from here on
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
// request, and reports whether the origin is allowed. The values live in
// a, the request's own array in its gateScratch (never reused), handed
// out as capacity-limited one-element slices, so a later handler's append
// can never write into another header's value or another request's.
func (c *CORS) setActual(hdr http.Header, a *corsActual, origin string, allowed, options bool) bool {
	v := &a.vals
	v[0] = "Origin"
	if options {
		v[0] = varyPreflight
	}
	addVary(hdr, v[0:1:1])
	if !allowed {
		return false
	}
	v[1] = origin
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
	return true
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
	d := decision{Status: http.StatusForbidden, Reason: reasonCORSPreflightDenied, Detail: reason}
	if c.Mode == modeReport {
		// Report mode answers as if allowed: a refusal that is not applied
		// would otherwise pass the preflight on to the upstream, which must
		// never see one. Built only here: enforcement never uses it.
		allowed := http.Header{}
		c.setPreflight(allowed, v, origin, originOK)
		d.Instead = &decision{Status: http.StatusNoContent, Answer: true, Header: allowed}
	}
	return d
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
