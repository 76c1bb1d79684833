package sechard

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
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
	server := []string{"Caddy"} // as Caddy's server sets it; shared, never written
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		w.h["Server"] = server
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
		server := []string{"Caddy"}
		ex := &exchange{r: r, requestID: "0f8e2a4c-5b1d-4e7f-9a0b-1c2d3e4f5a6b"}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			clear(w.h)
			w.h["Server"] = server
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
