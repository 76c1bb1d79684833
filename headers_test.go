package sechard

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func okHandler(w http.ResponseWriter, r *http.Request) error {
	_, err := w.Write([]byte("ok"))
	return err
}

func TestSecurityHeadersDefaultsOnPlainHTTP(t *testing.T) {
	h := provisionedHandler(t, new(Handler))
	r, _ := newTestRequest()
	w := serveTest(t, h, r, okHandler)
	requireExactHeaders(t, w.Header(), defaultSecurityHeaders)
	for _, k := range []string{"Strict-Transport-Security", "Server", "X-Powered-By", "Content-Security-Policy-Report-Only"} {
		if v, ok := w.Header()[k]; ok {
			t.Errorf("%s present on plain HTTP: %q", k, v)
		}
	}
	if id := w.Header().Values("X-Request-Id"); len(id) != 1 || id[0] != r.Header.Get("X-Request-Id") {
		t.Errorf("response X-Request-ID %q, request passed on %q", id, r.Header.Get("X-Request-Id"))
	}
	if got := len(w.Header()); got != len(defaultSecurityHeaders)+1 { // + X-Request-ID
		t.Errorf("response has %d headers, want %d: %v", got, len(defaultSecurityHeaders)+1, w.Header())
	}
}

func TestSecurityHeadersHSTSOnTLSOnly(t *testing.T) {
	const upstream = "max-age=0" // what the next handler sets
	for _, tc := range []struct {
		name string
		cfg  SecurityHeaders
		tls  bool
		want []string // exact values on the wire
	}{
		{"plain HTTP: the edge sends none", SecurityHeaders{}, false, []string{upstream}},
		{"TLS: default wins", SecurityHeaders{}, true, []string{defaultHSTSValue}},
		{"TLS: custom", SecurityHeaders{HSTS: "max-age=63072000; includeSubDomains; preload"}, true, []string{"max-age=63072000; includeSubDomains; preload"}},
		{"TLS: hsts off leaves the upstream's", SecurityHeaders{HSTS: "off"}, true, []string{upstream}},
		{"plain HTTP: custom still not sent", SecurityHeaders{HSTS: "max-age=1"}, false, []string{upstream}},
		{"TLS: set wins", SecurityHeaders{Set: map[string]string{"Strict-Transport-Security": "max-age=5"}}, true, []string{"max-age=5"}},
		{"plain HTTP: set still TLS only", SecurityHeaders{Set: map[string]string{"Strict-Transport-Security": "max-age=5"}}, false, []string{upstream}},
		{"TLS: removed", SecurityHeaders{Remove: []string{"strict-transport-security"}}, true, nil},
		{"plain HTTP: removed", SecurityHeaders{Remove: []string{"strict-transport-security"}}, false, nil},
		{"TLS: off leaves the upstream's", SecurityHeaders{Off: true}, true, []string{upstream}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			h := provisionedHandler(t, &Handler{SecurityHeaders: &cfg})
			r, _ := newTestRequest()
			if tc.tls {
				r.TLS = &tls.ConnectionState{HandshakeComplete: true}
			}
			w := serveTest(t, h, r, func(w http.ResponseWriter, r *http.Request) error {
				w.Header().Set("Strict-Transport-Security", upstream)
				return okHandler(w, r)
			})
			got := w.Header().Values("Strict-Transport-Security")
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("Strict-Transport-Security = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSecurityHeadersEdgeWinsOverNextHandler: values written by the next
// handler (as reverse_proxy copies an upstream's) are replaced when the
// header is written, with exactly one value each.
func TestSecurityHeadersEdgeWinsOverNextHandler(t *testing.T) {
	for _, how := range []string{"WriteHeader", "Write", "ReadFrom", "Flush"} {
		t.Run(how, func(t *testing.T) {
			h := provisionedHandler(t, new(Handler))
			r, _ := newTestRequest("X-Request-ID", "edge-id")
			w := serveTest(t, h, r, func(w http.ResponseWriter, r *http.Request) error {
				hdr := w.Header()
				hdr.Add("X-Frame-Options", "SAMEORIGIN") // Add: a second value
				hdr["X-Content-Type-Options"][0] = "sniff-away"
				hdr.Set("Content-Security-Policy", "default-src *")
				hdr.Add("X-Request-ID", "upstream-id")
				hdr.Add("Server", "nginx")
				hdr.Set("X-Powered-By", "PHP/5")
				hdr.Set("X-Upstream", "kept")
				switch how {
				case "WriteHeader":
					w.WriteHeader(http.StatusTeapot)
				case "Write":
					w.Write([]byte("body"))
				case "ReadFrom":
					w.(io.ReaderFrom).ReadFrom(strings.NewReader("body"))
				case "Flush":
					if err := http.NewResponseController(w).Flush(); err != nil {
						t.Errorf("flush: %v", err)
					}
				}
				return nil
			})
			want := map[string]string{"X-Request-Id": "edge-id", "X-Upstream": "kept"}
			for k, v := range defaultSecurityHeaders {
				want[k] = v
			}
			requireExactHeaders(t, w.Header(), want)
			for _, k := range []string{"Server", "X-Powered-By"} {
				if v, ok := w.Header()[k]; ok {
					t.Errorf("%s not stripped: %q", k, v)
				}
			}
		})
	}
}

// TestSecurityHeadersSetBeforeNextHandler: the headers are on the response
// before the next handler runs, so an error response (written by Caddy's
// server or handle_errors on the original writer) carries them too.
func TestSecurityHeadersSetBeforeNextHandler(t *testing.T) {
	h := provisionedHandler(t, new(Handler))
	r, _ := newTestRequest()
	w := httptest.NewRecorder()
	err := h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		return caddyhttp.Error(http.StatusBadGateway, nil)
	}))
	if err == nil {
		t.Fatal("the next handler's error was swallowed")
	}
	requireExactHeaders(t, w.Header(), defaultSecurityHeaders)
	if w.Header().Get("X-Request-Id") == "" {
		t.Error("no X-Request-ID before the next handler ran")
	}
}

func TestSecurityHeadersOptions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    SecurityHeaders
		want   map[string]string // exact values
		absent []string
		kept   []string // headers from the next handler that must survive
	}{
		{
			name: "named options",
			cfg: SecurityHeaders{
				ContentSecurityPolicy:           "default-src 'none'",
				ContentSecurityPolicyReportOnly: "default-src 'self'; report-uri /csp",
				FrameOptions:                    "sameorigin",
				ReferrerPolicy:                  "no-referrer",
			},
			want: map[string]string{
				"Content-Security-Policy":             "default-src 'none'",
				"Content-Security-Policy-Report-Only": "default-src 'self'; report-uri /csp",
				"X-Frame-Options":                     "SAMEORIGIN",
				"Referrer-Policy":                     "no-referrer",
				"X-Content-Type-Options":              "nosniff",
			},
		},
		{
			name: "set adds and overrides",
			cfg:  SecurityHeaders{Set: map[string]string{"permissions-policy": "camera=()", "Cross-Origin-Resource-Policy": "cross-origin"}},
			want: map[string]string{"Permissions-Policy": "camera=()", "Cross-Origin-Resource-Policy": "cross-origin", "X-Frame-Options": "DENY"},
		},
		{
			name:   "remove strips headers, sechard's own included",
			cfg:    SecurityHeaders{Remove: []string{"X-AspNet-Version", "x-frame-options"}},
			want:   map[string]string{"X-Content-Type-Options": "nosniff"},
			absent: []string{"X-Aspnet-Version", "X-Frame-Options", "Server", "X-Powered-By"},
		},
		{
			name:   "named option off: sechard sends none, the upstream's passes",
			cfg:    SecurityHeaders{ContentSecurityPolicy: "off", FrameOptions: "off", ReferrerPolicy: "off"},
			want:   map[string]string{"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "upstream-csp"},
			absent: []string{"Referrer-Policy"},
		},
		{
			name:   "off: nothing set, nothing removed",
			cfg:    SecurityHeaders{Off: true},
			absent: []string{"X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy", "Cross-Origin-Resource-Policy", "X-Permitted-Cross-Domain-Policies"},
			kept:   []string{"Server", "X-Powered-By", "X-Aspnet-Version", "Content-Security-Policy"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			h := provisionedHandler(t, &Handler{SecurityHeaders: &cfg})
			r, _ := newTestRequest()
			w := serveTest(t, h, r, func(w http.ResponseWriter, r *http.Request) error {
				w.Header().Set("X-AspNet-Version", "4.0")
				w.Header().Set("X-Powered-By", "PHP")
				if cfg.ContentSecurityPolicy == "off" || cfg.Off {
					w.Header().Set("Content-Security-Policy", "upstream-csp")
				}
				return okHandler(w, r)
			})
			requireExactHeaders(t, w.Header(), tc.want)
			for _, k := range tc.absent {
				if v, ok := w.Header()[k]; ok {
					t.Errorf("%s present: %q", k, v)
				}
			}
			for _, k := range tc.kept {
				if w.Header().Get(k) == "" {
					t.Errorf("%s was removed", k)
				}
			}
			if w.Header().Get("X-Request-Id") == "" {
				t.Error("X-Request-ID missing")
			}
		})
	}
}

func TestSecurityHeadersConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  SecurityHeaders
		want string
	}{
		{"frame_options ALLOW-FROM", SecurityHeaders{FrameOptions: "ALLOW-FROM https://x"}, "frame_options must be DENY, SAMEORIGIN or off"},
		{"unknown referrer policy", SecurityHeaders{ReferrerPolicy: "strict-origin-when-crossorigin"}, "unknown policy"},
		{"set bad name", SecurityHeaders{Set: map[string]string{"Bad Name": "x"}}, "invalid header field name"},
		{"set empty value", SecurityHeaders{Set: map[string]string{"X-A": ""}}, "use remove"},
		{"set CRLF value", SecurityHeaders{Set: map[string]string{"X-A": "a\r\nX-B: b"}}, "invalid or empty value"},
		{"set twice in different case", SecurityHeaders{Set: map[string]string{"x-a": "1", "X-A": "2"}}, "are the same header"},
		{"set request-ID header", SecurityHeaders{Set: map[string]string{"x-request-id": "fixed"}}, "request-ID header"},
		{"remove request-ID header", SecurityHeaders{Remove: []string{"X-Request-ID"}}, "request-ID header"},
		{"set and remove", SecurityHeaders{Set: map[string]string{"X-A": "1"}, Remove: []string{"x-a"}}, "both set and removed"},
		{"CSP with newline", SecurityHeaders{ContentSecurityPolicy: "default-src\n'self'"}, "invalid header value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			h := &Handler{SecurityHeaders: &cfg}
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			err := h.Provision(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "security_headers") {
				t.Fatalf("err = %v, want it to mention security_headers and %q", err, tc.want)
			}
		})
	}
}

// TestSecurityHeadersCustomRequestIDHeader: the response carries the ID
// under the configured header, even with security headers off.
func TestSecurityHeadersCustomRequestIDHeader(t *testing.T) {
	h := provisionedHandler(t, &Handler{
		RequestID:       &RequestID{Header: "x-correlation-id"},
		SecurityHeaders: &SecurityHeaders{Off: true},
	})
	r, _ := newTestRequest("X-Correlation-ID", "corr-1")
	w := serveTest(t, h, r, func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("X-Correlation-ID", "upstream")
		return okHandler(w, r)
	})
	requireExactHeaders(t, w.Header(), map[string]string{"X-Correlation-Id": "corr-1"})
	if _, ok := w.Header()["X-Request-Id"]; ok {
		t.Error("X-Request-ID sent although the header is X-Correlation-ID")
	}
}

// TestSecurityHeadersNoSharedSlices: concurrent requests whose downstream
// handlers mutate the header values in place must not see each other's
// writes (rs/cors #198). Run with -race.
func TestSecurityHeadersNoSharedSlices(t *testing.T) {
	h := provisionedHandler(t, new(Handler))
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				r, _ := newTestRequest()
				w := serveTest(t, h, r, func(w http.ResponseWriter, r *http.Request) error {
					for _, v := range w.Header() {
						v[0] = "mutated" // in place, through the slice sechard handed out
					}
					w.Header().Add("X-Frame-Options", "SAMEORIGIN")
					return okHandler(w, r)
				})
				if got := w.Header().Values("X-Frame-Options"); len(got) != 1 || got[0] != "DENY" {
					t.Errorf("X-Frame-Options = %q", got)
					return
				}
			}
		}()
	}
	wg.Wait()
	// and the provisioned values are untouched
	r, _ := newTestRequest()
	w := serveTest(t, h, r, okHandler)
	requireExactHeaders(t, w.Header(), defaultSecurityHeaders)
}

// TestSecurityHeadersInformationalThenFinal: informational responses do not end the
// header's life; the final response is asserted again.
func TestSecurityHeadersInformationalThenFinal(t *testing.T) {
	h := provisionedHandler(t, new(Handler))
	r, _ := newTestRequest()
	w := serveTest(t, h, r, func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("X-Frame-Options", "SAMEORIGIN")
		w.WriteHeader(http.StatusOK)
		return nil
	})
	requireExactHeaders(t, w.Header(), defaultSecurityHeaders)
}

// TestSecurityHeadersNilStage: a nil stage sends no security headers but
// still the request ID.
func TestSecurityHeadersNilStage(t *testing.T) {
	var c *SecurityHeaders
	r, _ := newTestRequest()
	w := httptest.NewRecorder()
	w.Header().Set("Server", "Caddy")
	sw := c.apply(w, &exchange{r: r, requestID: "nil-stage"})
	sw.Header().Add("X-Request-ID", "other")
	sw.WriteHeader(http.StatusOK)
	requireExactHeaders(t, w.Header(), map[string]string{"X-Request-Id": "nil-stage", "Server": "Caddy"})
	if len(w.Header()) != 2 {
		t.Errorf("headers %v, want only the ID and Server", w.Header())
	}
}
