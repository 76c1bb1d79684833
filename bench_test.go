package sechard

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sechard/sechard/internal/jwttest"
)

// The speed target of issue 2: the bare sechard handler (request ID with a
// valid inbound ID + all default security headers) at most 0.5x the ns/op of
// Caddy's own headers handler setting the same seven headers, and at most 4
// allocs/op. Both get the same prepared request, the same no-op next handler
// (which writes the status, as every response does) and the same response
// header reset between iterations.
//
//	go test -run '^$' -bench 'BenchmarkSechardDefault|BenchmarkCaddyHeadersPeer' -benchmem .

func runHandlerBench(b *testing.B, h caddyhttp.MiddlewareHandler) {
	r := benchRequest()
	w := &benchWriter{h: make(http.Header, 16)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		w.h["Server"] = benchServer
		if err := h.ServeHTTP(w, r, benchNext); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if got := w.h.Get("X-Frame-Options"); got != "DENY" {
		b.Fatalf("X-Frame-Options = %q; the benchmark measured nothing", got)
	}
}

func BenchmarkSechardDefault(b *testing.B) {
	h := provisionedHandler(b, new(Handler))
	runHandlerBench(b, h)
	if got := benchRequest().Header.Get("X-Request-ID"); got != "0f8e2a4c-5b1d-4e7f-9a0b-1c2d3e4f5a6b" {
		b.Fatal("the valid inbound ID was not kept")
	}
}

func BenchmarkCaddyHeadersPeer(b *testing.B) {
	set := http.Header{}
	for k, v := range defaultSecurityHeaders {
		set.Set(k, v)
	}
	h := &headers.Handler{Response: &headers.RespHeaderOps{HeaderOps: &headers.HeaderOps{Set: set}}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	runHandlerBench(b, h)
}

// BenchmarkSechardRequestID: a 10 KB malformed ID costs about what a
// missing one does plus the warning (the validator stops at max_length+1);
// the warning is JSON-encoded and discarded, as a real log would encode it.
func BenchmarkSechardRequestID(b *testing.B) {
	for _, bc := range []struct{ name, id string }{
		{"valid", "0f8e2a4c-5b1d-4e7f-9a0b-1c2d3e4f5a6b"},
		{"missing", ""},
		{"10KB", string(make([]byte, 10<<10))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			env, _ := newTestEnv(b)
			env.logger = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.DebugLevel))
			c := &RequestID{}
			if err := c.provision(env); err != nil {
				b.Fatal(err)
			}
			r := benchRequest()
			// A kept ID leaves the header alone; a replaced one is reset
			// from a prepared slice (never one the handler wrote into).
			orig := []string{bc.id}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if bc.id == "" {
					delete(r.Header, "X-Request-Id")
				} else {
					r.Header["X-Request-Id"] = orig
				}
				ex := exchange{r: r}
				c.assign(&ex)
			}
		})
	}
}

// BenchmarkCaddyHeadersPeerWithRemovals is the peer doing what sechard
// does with headers: the same seven set, and Server and X-Powered-By
// deleted, which makes Caddy's handler defer its work to WriteHeader.
func BenchmarkCaddyHeadersPeerWithRemovals(b *testing.B) {
	set := http.Header{}
	for k, v := range defaultSecurityHeaders {
		set.Set(k, v)
	}
	h := &headers.Handler{Response: &headers.RespHeaderOps{
		HeaderOps: &headers.HeaderOps{Set: set, Delete: []string{"Server", "X-Powered-By"}},
		Deferred:  true,
	}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	runHandlerBench(b, h)
}

// BenchmarkSechardParts splits BenchmarkSechardDefault: the security
// headers alone (set up front and re-asserted at WriteHeader), and the
// request ID alone (validation plus Caddy's bookkeeping: the vars table and
// the access log's ExtraLogFields).
func BenchmarkSechardParts(b *testing.B) {
	h := provisionedHandler(b, new(Handler))
	b.Run("headers", func(b *testing.B) {
		r := benchRequest()
		w := &benchWriter{h: make(http.Header, 16)}
		ex := &exchange{r: r, requestID: "0f8e2a4c-5b1d-4e7f-9a0b-1c2d3e4f5a6b"}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			clear(w.h)
			w.h["Server"] = benchServer
			h.SecurityHeaders.apply(w, ex).WriteHeader(http.StatusOK)
		}
	})
	b.Run("request_id", func(b *testing.B) {
		r := benchRequest()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			ex := exchange{r: r}
			h.RequestID.assign(&ex)
		}
	})
}

// BenchmarkRequestIDValidator: a 10 KB value is rejected by its length, in
// less time than a valid 36-byte ID takes to scan.
func BenchmarkRequestIDValidator(b *testing.B) {
	for _, bc := range []struct{ name, id string }{
		{"valid-uuid", "0f8e2a4c-5b1d-4e7f-9a0b-1c2d3e4f5a6b"},
		{"valid-64", string(make([]byte, 0, 64)) + "0123456789012345678901234567890123456789012345678901234567890123"},
		{"10KB", string(make([]byte, 10<<10))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				validRequestID(bc.id, maxRequestIDLength)
			}
		})
	}
}

// BenchmarkModesAllowedPath: report mode costs no more than enforce mode on
// the allowed path (issue 11). The handler has every stage with a mode on:
// CORS (an allowed origin), a rate limit with room, and an API key.
//
//	go test -run '^$' -bench BenchmarkModesAllowedPath -benchmem .
func BenchmarkModesAllowedPath(b *testing.B) {
	b.Setenv("BENCH_API_KEY", "bench-key-0123456789abcdef")
	for _, mode := range []string{modeEnforce, modeReport} {
		b.Run(mode, func(b *testing.B) {
			h := provisionedHandler(b, &Handler{
				CORS:      &CORS{Origins: []string{"https://app.example.com"}, Mode: mode},
				RateLimit: &RateLimit{Rate: &RateSpec{Events: 1 << 30, Window: caddy.Duration(time.Second)}, Mode: mode},
				Auth:      &Auth{APIKeys: []APIKey{{Secret: "BENCH_API_KEY", Scopes: []string{"read"}}}, Mode: mode},
			})
			// The audit line of every allow is encoded, as in production, and discarded.
			h.audit = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel))
			r := benchRequest()
			r.Header.Set("Origin", "https://app.example.com")
			resp := benchServeWithKey(b, h, r)
			if resp.Get("Access-Control-Allow-Origin") == "" {
				b.Fatal("the request was not allowed by CORS; the benchmark measured nothing")
			}
		})
	}
}

// BenchmarkEdgeCost (issue 19) measures in process what bench/cpu measures
// end to end, without the cost of HTTP on the wire that every configuration
// shares: sechard's core chain (a generated request ID, the security
// headers, an allowed CORS origin, a memory rate limit) against Caddy's
// header handler adding the same header bytes (with Server deleted, which
// defers its work to WriteHeader, as the Caddyfile does), and the full chain
// (the core chain and auth with a cached ES256 JWT) in its two audit modes.
// Each iteration gets a fresh request context from caddyhttp.PrepareRequest,
// as Caddy's server gives every request; "nothing" is that context and the
// next handler alone, the floor all share. A handler's own cost is its
// ns/op minus nothing's.
//
//	go test -run '^$' -bench BenchmarkEdgeCost -benchmem -count 10 . | benchstat -col /handler -
func BenchmarkEdgeCost(b *testing.B) {
	ti := newTestIssuer(b)
	rate := &RateSpec{Events: 1 << 30, Window: caddy.Duration(time.Second)}
	cors := []string{"https://app.example.com"}
	core := provisionedHandler(b, &Handler{CORS: &CORS{Origins: cors}, RateLimit: &RateLimit{Rate: rate}})
	full := func(audit string) *Handler {
		h := provisionedHandler(b, &Handler{
			CORS:      &CORS{Origins: cors},
			RateLimit: &RateLimit{Rate: rate},
			Auth: &Auth{
				JWT:         &JWT{PublicKeys: []PublicKey{{File: ti.pemPath("es256"), KID: "es256"}}, MaxTTL: caddy.Duration(time.Hour)},
				Require:     []Requirement{{Scopes: []string{"read"}}},
				AuditAllows: audit,
			},
		})
		// The audit entry of every allow is encoded, as in production, and discarded.
		h.audit = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel))
		return h
	}
	base := httptest.NewRequest(http.MethodGet, "http://example.com/api/q", nil)
	base.RemoteAddr = "192.0.2.1:4242"
	base.Header.Set("Origin", "https://app.example.com")
	base.Header.Set("User-Agent", "wrk")
	base.Header.Set("Authorization", "Bearer "+ti.sign("es256", jwttest.Claims(time.Now(), map[string]any{"scopes": []string{"read"}, "exp": time.Now().Add(30 * time.Minute).Unix()}), nil))

	serve := func(tb testing.TB, h caddyhttp.MiddlewareHandler, w *benchWriter) {
		r := caddyhttp.PrepareRequest(base, caddy.NewReplacer(), w, nil)
		r.Header = base.Header.Clone() // net/http reads every request into a map of its own
		caddyhttp.SetVar(r.Context(), caddyhttp.ClientIPVarKey, "192.0.2.1")
		clear(w.h)
		w.h["Server"] = benchServer
		if err := h.ServeHTTP(w, r, benchNext); err != nil {
			tb.Fatal(err)
		}
	}

	// The peer adds exactly what the core chain sends.
	w := &benchWriter{h: make(http.Header, 16)}
	serve(b, core, w)
	sent := w.h.Clone()
	if len(sent["Access-Control-Allow-Origin"]) != 1 || len(sent["Ratelimit"]) != 1 || len(sent["X-Request-Id"]) != 1 {
		b.Fatalf("the core chain sent %v; the benchmark would measure a refusal", sent)
	}
	peer := &headers.Handler{Response: &headers.RespHeaderOps{
		HeaderOps: &headers.HeaderOps{Add: sent, Delete: []string{"Server"}},
		Deferred:  true,
	}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := peer.Provision(ctx); err != nil {
		b.Fatal(err)
	}

	for _, bc := range []struct {
		name string
		h    caddyhttp.MiddlewareHandler
	}{
		{"nothing", passThrough{}},
		{"caddy_header", peer},
		{"sechard_core", core},
		{"sechard_full_audit_log", full(auditAllowsLog)},
		{"sechard_full_audit_access_log", full(auditAllowsAccessLog)},
	} {
		b.Run("handler="+bc.name, func(b *testing.B) {
			w := &benchWriter{h: make(http.Header, 16)}
			b.ReportAllocs()
			for b.Loop() {
				serve(b, bc.h, w)
			}
			if bc.name != "nothing" && len(w.h) != len(sent) {
				b.Fatalf("%s sent %v, want the %d fields of %v", bc.name, w.h, len(sent), sent)
			}
		})
	}
}

// passThrough is a middleware that does nothing but call next.
type passThrough struct{}

func (passThrough) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return next.ServeHTTP(w, r)
}

var benchServer = []string{"Caddy"} // as Caddy's server sets it; shared, never written
