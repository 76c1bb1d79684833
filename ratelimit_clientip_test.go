package sechard

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// hitVia runs the rate-limit stage for a request from client ip that Caddy's
// server srv received.
func hitVia(c *RateLimit, srv *caddyhttp.Server, ip string) int {
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	ctx := context.WithValue(req.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: ip})
	ctx = context.WithValue(ctx, caddyhttp.ServerCtxKey, srv)
	req = req.WithContext(ctx)
	ex := &exchange{w: httptest.NewRecorder(), r: req, repl: caddyhttp.NewTestReplacer(req), requestID: "test"}
	if d := c.decide(ex); d.Status != 0 {
		return d.Status
	}
	return 200
}

// TestRateLimitWarnsOnceAboutSpoofableClientIP: keyed on the client IP
// behind proxies trusted without trusted_proxies_strict, the left-most
// X-Forwarded-For value, which the client writes, is the key. sechard says
// so once, at the first request when only then can it see the server.
func TestRateLimitWarnsOnceAboutSpoofableClientIP(t *testing.T) {
	trusting := &caddyhttp.Server{TrustedProxiesRaw: json.RawMessage(`{"source":"static","ranges":["127.0.0.1/8"]}`)}
	for _, tc := range []struct {
		name  string
		key   string
		srv   *caddyhttp.Server
		warns int
	}{
		{"default key, trusted proxies", "", trusting, 1},
		{"client_ip in a template", "{http.vars.client_ip}-{http.request.header.X-Tenant}", trusting, 1},
		{"strict", "", &caddyhttp.Server{TrustedProxiesRaw: trusting.TrustedProxiesRaw, TrustedProxiesStrict: 1}, 0},
		{"no trusted proxies", "", &caddyhttp.Server{}, 0},
		{"key not on the client IP", "{http.request.header.X-Client}", trusting, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zap.WarnLevel)
			c, err := parseRateLimit("rate 100/1m")
			if err != nil {
				t.Fatal(err)
			}
			c.Key = tc.key
			provisionTestRateLimit(t, c, newFakeClock().now, zap.New(core), nil)
			for range 3 {
				hitVia(c, tc.srv, "192.0.2.1")
			}
			n := 0
			for _, e := range logs.All() {
				if strings.Contains(e.Message, "trusted_proxies_strict") && strings.Contains(e.Message, "X-Forwarded-For") {
					n++
				}
			}
			if n != tc.warns {
				t.Fatalf("%d warnings, want %d: %v", n, tc.warns, logs.All())
			}
		})
	}
}

// TestServerTrustedProxiesFieldIsVisible: Caddy keeps the loaded proxy
// source in an unexported field; if it is renamed, the warning above would
// go silent.
func TestServerTrustedProxiesFieldIsVisible(t *testing.T) {
	if serverTrustsProxies(&caddyhttp.Server{}) {
		t.Fatal("a server without trusted_proxies trusts proxies")
	}
	if !hasTrustedProxiesField() {
		t.Fatal("caddyhttp.Server has no trustedProxies field any more: update serverTrustsProxies")
	}
}

// TestRecipesThatTrustProxiesAreStrict: every recipe that sets
// trusted_proxies also sets trusted_proxies_strict, without which the client
// chooses its own {client_ip}.
func TestRecipesThatTrustProxiesAreStrict(t *testing.T) {
	for _, file := range []string{"README.md", "Caddyfile.example"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		for i, line := range lines {
			if !strings.Contains(line, "trusted_proxies ") || strings.HasPrefix(strings.TrimSpace(line), "- ") {
				continue
			}
			// The enclosing servers block: back to its opening line, on to
			// its closing brace.
			start, end := i, i
			for start > 0 && !strings.Contains(lines[start], "servers") {
				start--
			}
			for end < len(lines)-1 && strings.Trim(lines[end], "\t #") != "}" {
				end++
			}
			if !strings.Contains(strings.Join(lines[start:end+1], "\n"), "trusted_proxies_strict") {
				t.Errorf("%s:%d sets trusted_proxies without trusted_proxies_strict:\n%s", file, i+1, strings.Join(lines[start:end+1], "\n"))
			}
		}
	}
}
