package sechard

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// getStatuses GETs path n times and returns the statuses.
func getStatuses(s *caddyServer, path string, n int, hdr ...string) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = s.Get(path, hdr...).StatusCode
	}
	return out
}

// rateLimitSite is a site with sechard's rate_limit block in front of up.
func rateLimitSite(block, upstream string, extra ...string) string {
	return `http://127.0.0.1:{PORT} {
	sechard {
		rate_limit {
` + block + `
		}
	}
	` + strings.Join(extra, "\n\t") + `
	reverse_proxy ` + upstream + `
}`
}

// TestEnforceRateLimitBlocksBurstSameRoute: consecutive requests on the same
// path are counted together; over the burst they get 429 and never reach
// the upstream.
func TestEnforceRateLimitBlocksBurstSameRoute(t *testing.T) {
	up := startUpstream(t)
	s := startCaddy(t, rateLimitSite("rate 100/1m burst 3", up.Addr))

	got := getStatuses(s, "/nl-query", 5)
	if want := []int{200, 200, 200, 429, 429}; !equalInts(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	if n := up.Count(); n != 3 {
		t.Fatalf("upstream saw %d requests, want 3: a 429 must never reach the next handler", n)
	}
	resp := s.Get("/nl-query")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" ||
		resp.Header.Get("RateLimit-Policy") != `"default";q=100;w=60` ||
		!strings.HasPrefix(resp.Header.Get("RateLimit"), `"default";r=0;t=`) {
		t.Fatalf("429 headers: %d %v", resp.StatusCode, resp.Header)
	}
}

// TestEnforceRateLimitPerRouteIsolation: limits are per route, not global —
// exhausting one route leaves another untouched.
func TestEnforceRateLimitPerRouteIsolation(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	s := startCaddy(t, rateLimitSite(`route /nl-query/* 2/1m
			route /schema/* 2/1m`, up.Addr))

	if got, want := getStatuses(s, "/nl-query/run", 3), []int{200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("/nl-query/*: %v, want %v", got, want)
	}
	if got, want := getStatuses(s, "/nl-query/other", 1), []int{429}; !equalInts(got, want) {
		t.Fatalf("another path of the same route: %v, want %v", got, want)
	}
	if got, want := getStatuses(s, "/schema/tables", 3), []int{200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("/schema/* after /nl-query/* was exhausted: %v, want %v", got, want)
	}
	resp := s.Get("/schema/tables")
	if p := resp.Header.Get("RateLimit-Policy"); p != `"/schema/*";q=2;w=60` {
		t.Fatalf("RateLimit-Policy %q", p)
	}
}

// TestEnforceRateLimitDifferentPathsTrackedSeparately: paths matched by no
// route are each tracked on their own under the default rate; the same path
// spelled differently (dot segments, query) is one path.
func TestEnforceRateLimitDifferentPathsTrackedSeparately(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	s := startCaddy(t, rateLimitSite("rate 2/1m", up.Addr))

	if got, want := getStatuses(s, "/reports?page=1", 2), []int{200, 200}; !equalInts(got, want) {
		t.Fatalf("/reports: %v, want %v", got, want)
	}
	// Go's client would clean "/x/../reports" itself; send it raw. The
	// paths stage refuses it by default, before rate limiting.
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/reports", nil)
	req.URL.Opaque = "/x/../reports"
	if st := s.Do(req).StatusCode; st != 400 {
		t.Fatalf("/x/../reports: %d, want 400 (ambiguous path)", st)
	}
	if got, want := getStatuses(s, "/users", 3), []int{200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("/users: %v, want %v", got, want)
	}
	if got, want := getStatuses(s, "/audit", 1), []int{200}; !equalInts(got, want) {
		t.Fatalf("/audit: %v, want %v", got, want)
	}

	// With `paths normalize`, the same spelling is rewritten to /reports and
	// spends that path's budget.
	s2 := startCaddy(t, strings.Replace(rateLimitSite("rate 2/1m", up.Addr), "sechard {", "sechard {\n\t\tpaths normalize", 1))
	getStatuses(s2, "/reports", 2)
	req, _ = http.NewRequest(http.MethodGet, s2.URL+"/reports", nil)
	req.URL.Opaque = "/x/../reports"
	if st := s2.Do(req).StatusCode; st != 429 {
		t.Fatalf("normalize: /x/../reports after two /reports: %d, want 429", st)
	}
}

// TestRateLimitReloadKeepsBudgetThroughCaddy: a reload that leaves the limit
// unchanged keeps every client's budget; one that changes it starts fresh.
func TestRateLimitReloadKeepsBudgetThroughCaddy(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	s := startCaddy(t, rateLimitSite("route /q 2/1m", up.Addr, "header X-Config 1"))
	if got, want := getStatuses(s, "/q", 3), []int{200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("before reload: %v, want %v", got, want)
	}

	// Something else changes (so Caddy really reloads); the limit does not.
	if err := s.Reload(rateLimitSite("route /q 2/1m", up.Addr, "header X-Config 2")); err != nil {
		t.Fatal(err)
	}
	if probe := s.Get("/unlimited"); probe.Header.Get("X-Config") != "2" {
		t.Fatalf("reload did not take effect: X-Config %q", probe.Header.Get("X-Config"))
	}
	if resp := s.Get("/q"); resp.StatusCode != 429 {
		t.Fatalf("after a reload with the same limit: %d, want 429 (budget kept)", resp.StatusCode)
	}

	// The limit changes: budgets start afresh.
	if err := s.Reload(rateLimitSite("route /q 3/1m", up.Addr, "header X-Config 3")); err != nil {
		t.Fatal(err)
	}
	if got, want := getStatuses(s, "/q", 4), []int{200, 200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("after a reload with a new limit: %v, want %v", got, want)
	}
}

// TestRateLimit429KeepsRequestIDSecurityAndCORSHeaders: sechard's 429 goes
// through handle_errors (which shapes the body) and still carries the
// request ID and the headers every response gets.
func TestRateLimit429KeepsRequestIDSecurityAndCORSHeaders(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	s := startCaddy(t, `http://127.0.0.1:{PORT} {
	sechard {
		cors {
			origins https://app.example.com
		}
		rate_limit {
			rate 1/1m
		}
	}
	reverse_proxy `+up.Addr+`
	handle_errors 429 {
		respond "slow down: {err.status_code}, retry in {http.response.header.Retry-After}s"
	}
}`)
	ok := s.Get("/x", "Origin", "https://app.example.com")
	limited := s.Get("/x", "Origin", "https://app.example.com")
	if ok.StatusCode != 200 || limited.StatusCode != 429 {
		t.Fatalf("statuses %d, %d; want 200, 429", ok.StatusCode, limited.StatusCode)
	}
	if body := readBody(limited); body != "slow down: 429, retry in 60s" {
		t.Fatalf("handle_errors body %q", body)
	}
	if id := limited.Header.Get("X-Request-ID"); id == "" || id == ok.Header.Get("X-Request-ID") {
		t.Fatalf("429 X-Request-ID %q (200 had %q)", id, ok.Header.Get("X-Request-ID"))
	}
	if limited.Header.Get("Retry-After") != "60" || limited.Header.Get("RateLimit") != `"default";r=0;t=60` {
		t.Fatalf("429 rate-limit headers: %v", limited.Header)
	}
	// Whatever security and CORS headers sechard sets on an allowed
	// response, the 429 carries them too, with the same values.
	if got := limited.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example.com" {
		t.Errorf("429 Access-Control-Allow-Origin %q: browser code could not read the 429", got)
	}
	if got := limited.Header.Get("X-Frame-Options"); got != "DENY" {
		t.Errorf("429 X-Frame-Options %q", got)
	}
	for _, h := range []string{
		"X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy", "Content-Security-Policy",
		"Cross-Origin-Opener-Policy", "Cross-Origin-Resource-Policy", "X-Permitted-Cross-Domain-Policies",
		"Access-Control-Allow-Origin", "Access-Control-Expose-Headers", "Vary",
	} {
		if a, b := fmt.Sprint(ok.Header.Values(h)), fmt.Sprint(limited.Header.Values(h)); a != b {
			t.Errorf("%s: 200 had %s, 429 has %s", h, a, b)
		}
	}
	if up.Count() != 1 {
		t.Fatalf("upstream saw %d requests, want 1", up.Count())
	}
}

// spoofWarnings counts sechard's warnings about a spoofable client IP.
func spoofWarnings(s *caddyServer) int {
	n := 0
	for _, e := range s.LogEntries() {
		msg, _ := e["msg"].(string)
		if e["level"] == "warn" && strings.Contains(msg, "trusted_proxies_strict") && strings.Contains(msg, "X-Forwarded-For") {
			n++
		}
	}
	return n
}

// TestRateLimitWarnsAboutTrustedProxiesWithoutStrict: keyed on {client_ip}
// behind trusted proxies without trusted_proxies_strict, a client picks its
// own key (the left-most X-Forwarded-For value). sechard logs exactly one
// warning saying so, and none with strict on.
func TestRateLimitWarnsAboutTrustedProxiesWithoutStrict(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	for _, tc := range []struct {
		name    string
		globals string
		want    int
	}{
		{"not strict", "\tservers {\n\t\ttrusted_proxies static 127.0.0.1/8\n\t}", 1},
		{"strict", "\tservers {\n\t\ttrusted_proxies static 127.0.0.1/8\n\t\ttrusted_proxies_strict\n\t}", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startCaddy(t, rateLimitSite("rate 100/1m", up.Addr), caddyOptions{Globals: tc.globals})
			// Provisioned inside its server, sechard sees the settings at load.
			s.SyncLogs()
			if n := spoofWarnings(s); n != tc.want {
				t.Fatalf("%d spoofable-client-IP warnings at load, want %d; logs:\n%s", n, tc.want, s.Logs())
			}
			for i := range 3 {
				if st := s.Get("/x", "X-Forwarded-For", fmt.Sprintf("6.6.6.%d, 198.51.100.77", i)).StatusCode; st != 200 {
					t.Fatalf("status %d", st)
				}
			}
			s.SyncLogs()
			if n := spoofWarnings(s); n != tc.want {
				t.Fatalf("%d spoofable-client-IP warnings, want %d; logs:\n%s", n, tc.want, s.Logs())
			}
		})
	}
}

// TestRateLimitStrictProxiesIgnoreSpoofedForwardedFor: the recipe's
// trusted_proxies_strict makes {client_ip} the address the trusted proxy
// saw (the right-most untrusted one), so a client varying the left-most
// X-Forwarded-For value still spends one budget. Without strict, Caddy
// takes the left-most value and each spoofed address is a fresh budget.
func TestRateLimitStrictProxiesIgnoreSpoofedForwardedFor(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	for _, tc := range []struct {
		name    string
		globals string
		want    []int
	}{
		{"strict", "\tservers {\n\t\ttrusted_proxies static 127.0.0.1/8\n\t\ttrusted_proxies_strict\n\t}", []int{200, 200, 200, 429}},
		{"not strict (spoofable)", "\tservers {\n\t\ttrusted_proxies static 127.0.0.1/8\n\t}", []int{200, 200, 200, 200}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startCaddy(t, rateLimitSite("rate 3/1m", up.Addr), caddyOptions{Globals: tc.globals})
			got := make([]int, 4)
			for i := range got {
				got[i] = s.Get("/x", "X-Forwarded-For", fmt.Sprintf("6.6.6.%d, 198.51.100.77", i)).StatusCode
			}
			if !equalInts(got, tc.want) {
				t.Fatalf("statuses %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRateLimitIPv6PrefixThroughTrustedProxy: IPv6 clients behind a trusted
// proxy (strict) count per /64 by default, so addresses of one /64 share a
// budget and another /64 has its own; with ipv6_prefix 128 every address
// has its own.
func TestRateLimitIPv6PrefixThroughTrustedProxy(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	strict := caddyOptions{Globals: "\tservers {\n\t\ttrusted_proxies static 127.0.0.1/8\n\t\ttrusted_proxies_strict\n\t}"}
	s := startCaddy(t, rateLimitSite("rate 2/1m", up.Addr), strict)
	via := func(client string) int { return s.Get("/x", "X-Forwarded-For", client).StatusCode }
	got := []int{via("2001:db8:1:2::1"), via("2001:db8:1:2::a"), via("2001:db8:1:2:ffff::b"), via("2001:db8:1:3::1")}
	if want := []int{200, 200, 429, 200}; !equalInts(got, want) {
		t.Fatalf("default /64: %v, want %v", got, want)
	}

	if err := s.Reload(rateLimitSite("rate 2/1m\n\t\t\tipv6_prefix 128", up.Addr)); err != nil {
		t.Fatal(err)
	}
	got = []int{via("2001:db8:5:2::1"), via("2001:db8:5:2::a"), via("2001:db8:5:2::b"), via("2001:db8:5:2::b"), via("2001:db8:5:2::b")}
	if want := []int{200, 200, 200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("ipv6_prefix 128: %v, want %v", got, want)
	}
}
