package sechard

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sechard/sechard/internal/jwttest"
	"golang.org/x/oauth2/clientcredentials"
)

// strictProxies makes {client_ip} the address a trusted proxy on loopback
// names in X-Forwarded-For, so a test can call from many addresses.
var strictProxies = caddyOptions{Env: authEnv, Globals: "\tservers {\n\t\ttrusted_proxies static 127.0.0.1/8\n\t\ttrusted_proxies_strict\n\t}"}

// identitySite is authSite's auth in front of up, with rate_limit lines.
func identitySite(ti *testIssuer, upstream, rateLimit string) string {
	return strings.Replace(authSite(ti, upstream, ""), "\t\tauth {", "\t\trate_limit {\n"+rateLimit+"\n\t\t}\n\t\tauth {", 1)
}

// TestIdentityBudgetsThroughCaddy: two services with their own JWT
// subjects and an API key each get exactly their own budget, whatever
// addresses they call from; `*` gives an identity without a line its own;
// a refused credential and a public path spend nothing; the identity policy
// is listed with the route's in the same headers.
func TestIdentityBudgetsThroughCaddy(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(t)
	up := startUpstream(t)
	s := startCaddy(t, identitySite(ti, up.Addr, `			route /nl-query/* 100/1m
			identity service-a 3/1m
			identity service-b 2/1m
			identity BI_KEY 4/1m
			identity * 1/1m`), strictProxies)

	addr := 0
	call := func(path string, hdr ...string) *http.Response {
		addr++ // a new client address for every request
		return s.Get(path, append([]string{"X-Forwarded-For", fmt.Sprintf("198.51.100.%d", addr)}, hdr...)...)
	}
	jwtFor := func(sub string, over map[string]any) []string {
		c := map[string]any{"sub": sub}
		for k, v := range over {
			c[k] = v
		}
		return []string{"Authorization", "Bearer " + ti.sign("es256", jwttest.Claims(time.Now(), c), nil)}
	}
	run := func(n int, path string, hdr func() []string) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = call(path, hdr()...).StatusCode
		}
		return out
	}
	as := func(sub string) func() []string { return func() []string { return jwtFor(sub, nil) } }
	key := func() []string { return []string{"X-API-Key", biKeyValue} }

	// A refused credential spends nothing: an expired token of service-a,
	// a token of service-a without the scope /nl-query/* requires, an
	// unknown API key.
	expired := func() []string {
		return jwtFor("service-a", map[string]any{"iat": time.Now().Add(-3 * time.Minute).Unix(), "exp": time.Now().Add(-2 * time.Minute).Unix()})
	}
	if got, want := run(5, "/nl-query/q", expired), repeatStatus(401, 5); !equalInts(got, want) {
		t.Fatalf("expired service-a token: %v, want %v", got, want)
	}
	noScope := func() []string { return jwtFor("service-a", map[string]any{"scopes": []string{"schema:read"}}) }
	if got, want := run(5, "/nl-query/q", noScope), repeatStatus(403, 5); !equalInts(got, want) {
		t.Fatalf("service-a without the scope: %v, want %v", got, want)
	}
	wrongKey := func() []string { return []string{"X-API-Key", "not-a-key"} }
	if got, want := run(5, "/nl-query/q", wrongKey), repeatStatus(401, 5); !equalInts(got, want) {
		t.Fatalf("unknown key: %v, want %v", got, want)
	}
	// A public path spends nothing, credentials or not.
	if got, want := run(5, "/healthz", as("service-a")), repeatStatus(200, 5); !equalInts(got, want) {
		t.Fatalf("public path: %v, want %v", got, want)
	}
	if h := call("/healthz", as("service-a")()...).Header; strings.Contains(h.Get("RateLimit-Policy"), "identity") {
		t.Fatalf("public path lists the identity policy: %v", h)
	}

	// Each identity: exactly its budget, from a new address every time.
	before := up.Count()
	for _, tc := range []struct {
		name string
		hdr  func() []string
		want []int
	}{
		{"service-a", as("service-a"), []int{200, 200, 200, 429, 429}},
		{"service-b", as("service-b"), []int{200, 200, 429, 429}},
		{"BI_KEY", key, []int{200, 200, 200, 200, 429}},
		{"service-c under *", as("service-c"), []int{200, 429}},
		{"service-d under *, its own budget", as("service-d"), []int{200, 429}},
		{"LEGACY_KEY under *", func() []string { return []string{"X-API-Key", legacyKeyValue} }, []int{200, 429}},
	} {
		if got := run(len(tc.want), "/nl-query/q", tc.hdr); !equalInts(got, tc.want) {
			t.Fatalf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if got, want := up.Count()-before, 3+2+4+1+1+1; got != want {
		t.Fatalf("upstream saw %d requests, want %d: a 429 must not reach it", got, want)
	}

	// The headers: the route's policy (per address) and the identity's.
	resp := call("/nl-query/q", as("service-e")()...)
	if resp.StatusCode != 200 ||
		resp.Header.Get("RateLimit-Policy") != `"/nl-query/*";q=100;w=60, "identity";q=1;w=60` ||
		resp.Header.Get("RateLimit") != `"/nl-query/*";r=99;t=1, "identity";r=0;t=60` {
		t.Fatalf("allowed: %d %v", resp.StatusCode, resp.Header)
	}
	resp = call("/nl-query/q", as("service-a")()...)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" ||
		resp.Header.Get("RateLimit-Policy") != `"/nl-query/*";q=100;w=60, "identity";q=3;w=60` ||
		!strings.HasPrefix(resp.Header.Get("RateLimit"), `"/nl-query/*";r=99;t=1, "identity";r=0;t=`) ||
		resp.Header.Get("X-Request-ID") == "" {
		t.Fatalf("refused: %d %v", resp.StatusCode, resp.Header)
	}
	// The refusal log names the policy and the identity.
	e := s.WaitLog(func(e map[string]any) bool {
		return e["msg"] == "refused request" && e["stage"] == "rate_limit" && e["reason"] == "rate_limited"
	}, 5*time.Second)
	if e == nil || e["detail"] != `over the identity limit of "service-a"` {
		t.Fatalf("refusal log %v", e)
	}

	// A reload that changes another line keeps the identity budgets of the
	// unchanged lines; a changed line starts afresh.
	if err := s.Reload(identitySite(ti, up.Addr, `			route /nl-query/* 200/1m
			identity service-a 3/1m
			identity service-b 5/1m
			identity BI_KEY 4/1m
			identity * 1/1m`)); err != nil {
		t.Fatal(err)
	}
	if resp := call("/nl-query/q", as("service-a")()...); resp.StatusCode != 429 || !strings.HasPrefix(resp.Header.Get("RateLimit-Policy"), `"/nl-query/*";q=200;w=60`) {
		t.Fatalf("service-a after a reload (unchanged line): %d %v", resp.StatusCode, resp.Header)
	}
	if st := call("/nl-query/q", as("service-b")()...).StatusCode; st != 200 {
		t.Fatalf("service-b after its line changed: %d, want 200", st)
	}
}

// TestIdentityBudgetSharedThroughRedis: two Caddy instances on one Redis
// spend one identity budget.
func TestIdentityBudgetSharedThroughRedis(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(t)
	up := startUpstream(t)
	r := startRedis(t)
	site := identitySite(ti, up.Addr, "\t\t\tidentity * 3/1m\n\t\t\tstore redis "+r.URL)
	s1 := startCaddy(t, site, strictProxies)
	s2 := startCaddy(t, site, strictProxies)
	tok := func(sub string) []string {
		return []string{"Authorization", "Bearer " + ti.sign("es256", jwttest.Claims(time.Now(), map[string]any{"sub": sub}), nil)}
	}
	got := []int{
		s1.Get("/x", tok("service-a")...).StatusCode,
		s2.Get("/x", tok("service-a")...).StatusCode,
		s1.Get("/x", tok("service-a")...).StatusCode,
		s2.Get("/x", tok("service-a")...).StatusCode,
		s1.Get("/x", tok("service-a")...).StatusCode,
		s2.Get("/x", tok("service-b")...).StatusCode,
	}
	if want := []int{200, 200, 200, 429, 429, 200}; !equalInts(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	resp := s2.Get("/x", tok("service-b")...)
	if resp.Header.Get("RateLimit") != `"identity";r=1;t=40` && resp.Header.Get("RateLimit") != `"identity";r=1;t=41` {
		t.Fatalf("second instance's view of service-b: %v", resp.Header)
	}
}

// TestIdentityReportModeThroughCaddy: in report mode the would-be refusal
// is logged with the policy name and the request goes through; the
// sechard_rate_limited event names the identity policy, and the rejection
// counter has reason="rate_limited", mode="report". In enforce mode the
// same refusal counts with mode="enforce".
func TestIdentityReportModeThroughCaddy(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(t)
	up := startUpstream(t)
	site := identitySite(ti, up.Addr, "\t\t\tidentity service-a 1/1m\n\t\t\tmode report")
	site = strings.Replace(site, "public /healthz", "public /healthz /metrics", 1)
	site = strings.Replace(site, "\treverse_proxy", "\thandle /metrics {\n\t\tmetrics\n\t}\n\treverse_proxy", 1)
	s := startCaddy(t, site, strictProxies)
	tok := []string{"Authorization", "Bearer " + ti.sign("es256", jwttest.Claims(time.Now(), map[string]any{"sub": "service-a"}), nil)}
	for i := 0; i < 3; i++ {
		resp := s.Get("/x", append(tok, "X-Request-ID", fmt.Sprintf("id-report-%d", i))...)
		if resp.StatusCode != 200 || resp.Header.Get("RateLimit") != "" || resp.Header.Get("Retry-After") != "" {
			t.Fatalf("report mode request %d: %d %v", i, resp.StatusCode, resp.Header)
		}
	}
	if up.Count() != 3 {
		t.Fatalf("upstream saw %d, want 3", up.Count())
	}
	s.SyncLogs()
	var would []map[string]any
	for _, e := range s.LogEntries() {
		if e["msg"] == "would refuse request" && e["stage"] == "rate_limit" {
			would = append(would, e)
		}
	}
	if len(would) != 2 || would[0]["reason"] != "rate_limited" || would[0]["detail"] != `over the identity limit of "service-a"` ||
		would[0]["request_id"] != "id-report-1" || would[0]["enforced"] != false {
		t.Fatalf("would-refuse logs %v", would)
	}
	ev := eventLogs(s, "sechard_rate_limited")
	if len(ev) != 2 {
		t.Fatalf("%d sechard_rate_limited events, want 2", len(ev))
	}
	data, _ := ev[0]["data"].(map[string]any)
	if data["route"] != "identity" || data["reason"] != "rate_limited" || data["mode"] != "report" || data["request_id"] != "id-report-1" {
		t.Fatalf("event data %v", data)
	}
	srv := serverNames(t, s)[s.Port]
	expectMetrics(t, scrape(t, s, "/metrics"), map[string]float64{
		series("sechard_requests_rejected_total", "server", srv, "reason", "rate_limited", "mode", "report"):  2,
		series("sechard_requests_rejected_total", "server", srv, "reason", "rate_limited", "mode", "enforce"): 0,
	})

	// Enforced, the same refusal is a 429 counted as enforce. The identity
	// line is unchanged, so the reload keeps service-a's spent budget.
	if err := s.Reload(strings.Replace(site, "\t\t\tmode report", "", 1)); err != nil {
		t.Fatal(err)
	}
	tok2 := []string{"Authorization", "Bearer " + ti.sign("es256", jwttest.Claims(time.Now(), map[string]any{"sub": "service-a"}), nil)}
	if resp := s.Get("/x", tok2...); resp.StatusCode != 429 || resp.Header.Get("RateLimit-Policy") != `"identity";q=1;w=60` {
		t.Fatalf("enforced after reload (budget kept): %d %v", resp.StatusCode, resp.Header)
	}
	expectMetrics(t, scrape(t, s, "/metrics"), map[string]float64{
		series("sechard_requests_rejected_total", "server", srv, "reason", "rate_limited", "mode", "enforce"): 1,
	})
}

// TestIdentityBudgetSpansKeyAndIssuedToken: the recipe's claim. A token
// the token service issued for an API key has the key's name as `sub`, so
// the key used directly and the token traded for it spend one identity
// budget; the token request itself spends none.
func TestIdentityBudgetSpansKeyAndIssuedToken(t *testing.T) {
	t.Parallel()
	signing, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	env := append([]string{"TS_KEY_A=" + pemOf(t, signing, "PRIVATE KEY")}, authEnv...)
	up := startUpstream(t)
	site := strings.Replace(tokenSite(up.Addr, "TS_KEY_A", ""), "\t\t\trate 1000/1m\n", "\t\t\trate 1000/1m\n\t\t\tidentity BI_KEY 4/1m\n", 1)
	s := startCaddy(t, site, caddyOptions{Env: env})
	cc := clientcredentials.Config{ClientID: "BI_KEY", ClientSecret: biKeyValue, TokenURL: s.URL + "/oauth2/token", Scopes: []string{"nl-query:read"}}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bearer := []string{"Authorization", "Bearer " + tok.AccessToken}
	key := []string{"X-API-Key", biKeyValue}
	got := []int{
		s.Get("/nl-query/q", key...).StatusCode,
		s.Get("/nl-query/q", bearer...).StatusCode,
		s.Get("/nl-query/q", key...).StatusCode,
		s.Get("/nl-query/q", bearer...).StatusCode,
		s.Get("/nl-query/q", bearer...).StatusCode,
		s.Get("/nl-query/q", key...).StatusCode,
	}
	if want := []int{200, 200, 200, 200, 429, 429}; !equalInts(got, want) {
		t.Fatalf("BI_KEY by key and by token: %v, want %v", got, want)
	}
	if last := up.Last(); last.Header.Get("X-Auth-Subject") != "BI_KEY" {
		t.Fatalf("X-Auth-Subject %q", last.Header.Get("X-Auth-Subject"))
	}
	// Trading the key for another token still works: the token endpoint
	// is answered before auth, so no identity budget applies there.
	if _, err := cc.Token(context.Background()); err != nil {
		t.Fatalf("token request with BI_KEY's budget spent: %v", err)
	}
}
