package sechard

import (
	"io"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// securityHeadersWriter asserts the edge's headers once more when the
// response header is written, so values set by the next handler or an
// upstream do not win and no header gets a second value. Deferred header
// changes alone are skipped on error paths (caddy #4480, #6689), which is
// why apply also sets them up front.
type securityHeadersWriter struct {
	caddyhttp.ResponseWriterWrapper
	c           *SecurityHeaders // provisioned, read-only
	id          string
	tls         bool // send HSTS
	wroteHeader bool
	cors        bool        // cors is configured: see ownCORS
	corsOwn     *corsActual // sechard's Access-Control-* values, if any
	vals        []string    // this request's header values, see apply
	buf         [9]string   // room for the default set: ID + 7 + HSTS
}

// ownCORS makes the Access-Control-* headers the CORS stage set on a
// request it passed on (own, nil for none) the only ones the response may
// carry: an upstream's `*` or reflected Origin would otherwise grant reads,
// or give an allowed origin a second value, which browsers reject.
func (sw *securityHeadersWriter) ownCORS(own *corsActual) {
	sw.cors, sw.corsOwn = true, own
}

// reassertCORS removes every Access-Control-* header but sechard's, and
// puts sechard's back where they were replaced, added to or edited.
func (sw *securityHeadersWriter) reassertCORS(h http.Header) {
	own, restore := sw.corsOwn, false
	for k, cur := range h {
		// The first byte settles almost every key without a call.
		if len(k) < len(acPrefix) || k[0]|0x20 != 'a' || !strings.EqualFold(k[:len(acPrefix)], acPrefix) {
			continue
		}
		if i := corsActualIndex(k); own != nil && i >= 0 && own.sent[i] != "" {
			if len(cur) == 1 && &cur[0] == &own.vals[i+1] && cur[0] == own.sent[i] {
				continue
			}
			restore = true
		}
		delete(h, k)
	}
	if restore {
		for i, k := range corsActualHeaders {
			if own.sent[i] != "" && h[k] == nil {
				own.vals[i+1] = own.sent[i]
				h[k] = own.vals[i+1 : i+2 : i+2]
			}
		}
	}
}

const acPrefix = "Access-Control-"

// reassert puts the edge's headers back where the next handler changed them
// (replaced, added a second value, or edited in place) and strips the
// removed ones again. An unchanged entry still holds the sub-slice apply
// handed out, which is checked with a lookup instead of rewritten.
func (sw *securityHeadersWriter) reassert() {
	h := sw.ResponseWriter.Header()
	c := sw.c
	for _, k := range c.strip {
		delete(h, k)
	}
	v := sw.vals
	put := func(i int, key, value string) {
		if cur := h[key]; len(cur) == 1 && &cur[0] == &v[i] && cur[0] == value {
			return
		}
		v[i] = value
		h[key] = v[i : i+1 : i+1]
	}
	put(0, c.idHeader, sw.id)
	for i, p := range c.pairs {
		put(i+1, p.key, p.value)
	}
	if sw.tls {
		put(len(v)-1, "Strict-Transport-Security", c.hsts)
	}
	if sw.cors {
		sw.reassertCORS(h)
	}
}

// WriteHeader asserts the edge's headers, then writes the header.
func (sw *securityHeadersWriter) WriteHeader(status int) {
	if sw.wroteHeader {
		sw.ResponseWriter.WriteHeader(status) // let net/http report the superfluous call
		return
	}
	if status >= 200 || status < 100 {
		sw.wroteHeader = true
	}
	sw.reassert() // also on 1xx: informational responses carry the header map too
	sw.ResponseWriter.WriteHeader(status)
}

// Write writes the header first if the handler did not.
func (sw *securityHeadersWriter) Write(p []byte) (int, error) {
	if !sw.wroteHeader {
		sw.WriteHeader(http.StatusOK)
	}
	return sw.ResponseWriter.Write(p)
}

// ReadFrom writes the header first if the handler did not; the embedded
// wrapper's ReadFrom would go straight to the underlying writer.
func (sw *securityHeadersWriter) ReadFrom(r io.Reader) (int64, error) {
	if !sw.wroteHeader {
		sw.WriteHeader(http.StatusOK)
	}
	return sw.ResponseWriterWrapper.ReadFrom(r)
}

// FlushError writes the header first if the handler did not, then flushes
// (http.ResponseController prefers this method over Unwrap).
func (sw *securityHeadersWriter) FlushError() error {
	if !sw.wroteHeader {
		sw.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(sw.ResponseWriter).Flush()
}

// Interface guards
var (
	_ http.ResponseWriter = (*securityHeadersWriter)(nil)
	_ io.ReaderFrom       = (*securityHeadersWriter)(nil)
	// http.ResponseController finds these by method set: a typo would
	// silently lose flushing or reaching the connection.
	_ interface{ FlushError() error }           = (*securityHeadersWriter)(nil)
	_ interface{ Unwrap() http.ResponseWriter } = (*securityHeadersWriter)(nil)
)
