package sechard

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

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
	if f, ok := reflect.TypeOf(caddyhttp.Server{}).FieldByName("trustedProxies"); !ok || f.Type.Kind() != reflect.Interface {
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

// TestRateLimitIPv6ClientsCountPerPrefix: {client_ip} keys count an IPv6
// address as its /ipv6_prefix network (default /64), so one host cannot
// mint budgets by cycling addresses; IPv4 (mapped or not) counts per
// address.
func TestRateLimitIPv6ClientsCountPerPrefix(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		ips        []string // sent in order, one request each
		want       []int
	}{
		{"one /64 shares a budget", "rate 2/1m",
			[]string{"2001:db8:1:2::1", "2001:db8:1:2:aaaa::2", "2001:db8:1:2:ffff:ffff:ffff:ffff"}, []int{200, 200, 429}},
		{"another /64 has its own", "rate 2/1m",
			[]string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:3::1"}, []int{200, 200, 200}},
		{"a zone does not make a new client", "rate 2/1m",
			[]string{"fe80::1%eth0", "fe80::2%eth1", "fe80::3"}, []int{200, 200, 429}},
		{"/48", "rate 2/1m\nipv6_prefix 48",
			[]string{"2001:db8:1:2::1", "2001:db8:1:3::1", "2001:db8:1:ffff::1"}, []int{200, 200, 429}},
		{"128 counts each address", "rate 2/1m\nipv6_prefix 128",
			[]string{"2001:db8:1:2::1", "2001:db8:1:2::1", "2001:db8:1:2::2"}, []int{200, 200, 200}},
		{"IPv4 per address", "rate 1/1m",
			[]string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}, []int{200, 200, 200}},
		{"IPv4-mapped IPv6 is its IPv4 address", "rate 1/1m",
			[]string{"::ffff:192.0.2.1", "192.0.2.1", "::ffff:192.0.2.2"}, []int{200, 429, 200}},
		{"templates with client_ip are masked too", "rate 2/1m\nkey {http.vars.client_ip}|{http.request.header.X-Tenant}",
			[]string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2::3"}, []int{200, 200, 429}},
		{"not an address: the value as it is", "rate 1/1m",
			[]string{"not-an-ip", "not-an-ip:2", "not-an-ip:3"}, []int{200, 200, 200}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestRateLimit(t, tc.body, newFakeClock())
			got := make([]int, len(tc.ips))
			for i, ip := range tc.ips {
				got[i] = hit(c, ip, "/x").status
			}
			if !equalInts(got, tc.want) {
				t.Fatalf("statuses %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRateLimitIPv6PrefixCaddyfile(t *testing.T) {
	c, err := parseRateLimit("rate 1/1m\nipv6_prefix 56")
	if err != nil || c.IPv6Prefix != 56 {
		t.Fatalf("ipv6_prefix 56: %v, %d", err, c.IPv6Prefix)
	}
	for _, bad := range []string{"ipv6_prefix 0", "ipv6_prefix 129", "ipv6_prefix -1", "ipv6_prefix x", "ipv6_prefix", "ipv6_prefix 64 65"} {
		if _, err := parseRateLimit("rate 1/1m\n" + bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	ctx, cancel := newTestContext()
	defer cancel()
	for _, n := range []int{-1, 129} {
		c := &RateLimit{Rate: &RateSpec{Events: 1, Window: 1e9}, IPv6Prefix: n}
		if err := c.provision(&provisionEnv{Context: ctx, logger: zap.NewNop(), now: newFakeClock().now}); err == nil {
			c.cleanup()
			t.Errorf("ipv6_prefix %d provisioned", n)
		}
	}
}

// BenchmarkRateLimitDecideIPv6 is BenchmarkRateLimitDecide for an IPv6
// client, whose key is its /64.
func BenchmarkRateLimitDecideIPv6(b *testing.B) {
	c := newTestRateLimit(b, "rate 1000000000/1s\nroute /nl-query/* 1000000000/1s\ntotal 1000000000/1s", newFakeClock())
	c.now = time.Now
	req := httptest.NewRequest(http.MethodGet, "/nl-query/run", nil)
	req = req.WithContext(context.WithValue(req.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "2001:db8:1:2:3:4:5:6"}))
	ex := &exchange{w: httptest.NewRecorder(), r: req, repl: caddyhttp.NewTestReplacer(req)}
	b.ReportAllocs()
	for b.Loop() {
		if d := c.decide(ex); d.Status != 0 {
			b.Fatal(d)
		}
	}
}

// TestRateLimitRedisIPv6ClientsCountPerPrefix: the Redis store gets the
// same client key as the memory store, an IPv6 client's /64.
func TestRateLimitRedisIPv6ClientsCountPerPrefix(t *testing.T) {
	r := startRedis(t)
	c, _ := newRedisRateLimit(t, "rate 2/1m\nstore redis "+r.URL, nil)
	got := []int{hit(c, "2001:db8:7:1::1", "/x").status, hit(c, "2001:db8:7:1::2", "/x").status,
		hit(c, "2001:db8:7:1::3", "/x").status, hit(c, "2001:db8:7:2::1", "/x").status}
	if want := []int{200, 200, 429, 200}; !equalInts(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	if n, err := redisClient(t, r.Addr).DBSize(context.Background()).Result(); err != nil || n != 2 {
		t.Fatalf("Redis holds %d keys (%v), want 2: one per /64", n, err)
	}
}
