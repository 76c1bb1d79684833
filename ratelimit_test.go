package sechard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// statuses sends n requests and returns their statuses.
func statuses(c *RateLimit, ip, target string, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = hit(c, ip, target).status
	}
	return out
}

func TestRateLimitBurstThenOneEveryInterval(t *testing.T) {
	clock := newFakeClock()
	c := newTestRateLimit(t, "rate 10/1s burst 5", clock)

	// A full bucket admits exactly the burst at once.
	if got, want := statuses(c, "10.0.0.1", "/x", 6), append(repeatStatus(200, 5), 429); !equalInts(got, want) {
		t.Fatalf("burst: got %v, want %v", got, want)
	}
	// Then one request every 100ms (1s/10), not a moment earlier.
	clock.advance(99 * time.Millisecond)
	if st := hit(c, "10.0.0.1", "/x").status; st != 429 {
		t.Fatalf("after 99ms: got %d, want 429", st)
	}
	clock.advance(1 * time.Millisecond)
	if st := hit(c, "10.0.0.1", "/x").status; st != 200 {
		t.Fatalf("after 100ms: got %d, want 200", st)
	}
	if st := hit(c, "10.0.0.1", "/x").status; st != 429 {
		t.Fatalf("second request after 100ms: got %d, want 429", st)
	}
	// Refused requests spent nothing: after 5×100ms of silence the bucket
	// is full again and admits the whole burst.
	clock.advance(500 * time.Millisecond)
	if got, want := statuses(c, "10.0.0.1", "/x", 6), append(repeatStatus(200, 5), 429); !equalInts(got, want) {
		t.Fatalf("refilled burst: got %v, want %v", got, want)
	}
}

func TestRateLimitBurstDefaultsToRate(t *testing.T) {
	clock := newFakeClock()
	c := newTestRateLimit(t, "rate 3/1m", clock)
	if got, want := statuses(c, "10.0.0.1", "/x", 4), []int{200, 200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	clock.advance(20 * time.Second)
	if got, want := statuses(c, "10.0.0.1", "/x", 2), []int{200, 429}; !equalInts(got, want) {
		t.Fatalf("after 20s: got %v, want %v", got, want)
	}
}

func TestRateLimitRefusedRequestsChangeNothing(t *testing.T) {
	clock := newFakeClock()
	c := newTestRateLimit(t, "rate 1/1s", clock)
	hit(c, "10.0.0.1", "/x")
	// A flood of refused requests must not push the next admission back.
	for i := 0; i < 100; i++ {
		clock.advance(9 * time.Millisecond)
		if st := hit(c, "10.0.0.1", "/x").status; st != 429 {
			t.Fatalf("request %d at %v: got %d, want 429", i, time.Duration(i+1)*9*time.Millisecond, st)
		}
	}
	clock.advance(100 * time.Millisecond) // 1000ms after the first
	if st := hit(c, "10.0.0.1", "/x").status; st != 200 {
		t.Fatalf("after 1s: got %d, want 200", st)
	}
}

func TestRateLimitClientsAreIsolated(t *testing.T) {
	c := newTestRateLimit(t, "rate 2/1m", newFakeClock())
	if got, want := statuses(c, "10.0.0.1", "/x", 3), []int{200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("client 1: got %v, want %v", got, want)
	}
	if got, want := statuses(c, "10.0.0.2", "/x", 3), []int{200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("client 2 after client 1 was limited: got %v, want %v", got, want)
	}
}

func TestRateLimitKeyTemplate(t *testing.T) {
	// Keyed by an API key header: two IPs with one key share a budget.
	c := newTestRateLimit(t, "key {http.request.header.X-Client}\nrate 2/1m", newFakeClock())
	if st := hit(c, "10.0.0.1", "/x", "X-Client", "a").status; st != 200 {
		t.Fatal(st)
	}
	if st := hit(c, "10.0.0.2", "/x", "X-Client", "a").status; st != 200 {
		t.Fatal(st)
	}
	if st := hit(c, "10.0.0.3", "/x", "X-Client", "a").status; st != 429 {
		t.Fatalf("third request with the same key from another IP: got %d, want 429", st)
	}
	if st := hit(c, "10.0.0.3", "/x", "X-Client", "b").status; st != 200 {
		t.Fatalf("another key: got %d, want 200", st)
	}
}

func TestRateLimitRoutePatternSharesOneBudget(t *testing.T) {
	c := newTestRateLimit(t, "rate 100/1m\nroute /nl-query/* 3/1m", newFakeClock())
	got := []int{
		hit(c, "10.0.0.1", "/nl-query/a").status,
		hit(c, "10.0.0.1", "/nl-query/b").status,
		hit(c, "10.0.0.1", "/NL-QUERY/c?x=1").status, // Caddy's path matcher is case-insensitive
		hit(c, "10.0.0.1", "/nl-query/d").status,
	}
	if want := []int{200, 200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// Other paths are under the default rate, unaffected.
	if st := hit(c, "10.0.0.1", "/schema").status; st != 200 {
		t.Fatalf("/schema: got %d, want 200", st)
	}
}

func TestRateLimitFirstMatchingRouteWins(t *testing.T) {
	c := newTestRateLimit(t, "route /api/special 1/1m\nroute /api/* 3/1m", newFakeClock())
	if got, want := statuses(c, "10.0.0.1", "/api/special", 2), []int{200, 429}; !equalInts(got, want) {
		t.Fatalf("/api/special: got %v, want %v", got, want)
	}
	if got, want := statuses(c, "10.0.0.1", "/api/other", 4), []int{200, 200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("/api/other: got %v, want %v", got, want)
	}
	// No default rate: unmatched paths are not limited, and get no headers.
	r := hit(c, "10.0.0.1", "/elsewhere")
	if r.status != 200 || r.header.Get("RateLimit") != "" {
		t.Fatalf("/elsewhere: got %d %v", r.status, r.header)
	}
}

func TestRateLimitCleanedPathsShareBudget(t *testing.T) {
	c := newTestRateLimit(t, "rate 3/1m", newFakeClock())
	got := []int{
		hit(c, "10.0.0.1", "/b").status,
		hit(c, "10.0.0.1", "/a/../b").status,
		hit(c, "10.0.0.1", "/b?page=2").status,
		hit(c, "10.0.0.1", "/./b").status,
	}
	if want := []int{200, 200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestRateLimitHeadersExact(t *testing.T) {
	clock := newFakeClock()
	c := newTestRateLimit(t, "rate 100/1m burst 2\nroute /nl-query/* 10/1s burst 3", clock)

	cases := []struct {
		target, status, policy, rateLimit, retryAfter string
	}{
		// 10/1s burst 3: T = 100ms, full after 3×100ms.
		{"/nl-query/x", "200", `"/nl-query/*";q=10;w=1`, `"/nl-query/*";r=2;t=1`, ""},
		{"/nl-query/x", "200", `"/nl-query/*";q=10;w=1`, `"/nl-query/*";r=1;t=1`, ""},
		{"/nl-query/x", "200", `"/nl-query/*";q=10;w=1`, `"/nl-query/*";r=0;t=1`, ""},
		{"/nl-query/x", "429", `"/nl-query/*";q=10;w=1`, `"/nl-query/*";r=0;t=1`, "1"},
		// 100/1m burst 2: T = 600ms; the route name is "default", never the path.
		{"/secret/path", "200", `"default";q=100;w=60`, `"default";r=1;t=1`, ""},
		{"/secret/path", "200", `"default";q=100;w=60`, `"default";r=0;t=2`, ""},
		{"/secret/path", "429", `"default";q=100;w=60`, `"default";r=0;t=2`, "1"},
	}
	for i, tc := range cases {
		r := hit(c, "10.0.0.1", tc.target)
		if strconv.Itoa(r.status) != tc.status ||
			r.header.Get("RateLimit-Policy") != tc.policy ||
			r.header.Get("RateLimit") != tc.rateLimit ||
			r.header.Get("Retry-After") != tc.retryAfter ||
			len(r.header.Values("RateLimit")) != 1 || len(r.header.Values("RateLimit-Policy")) != 1 {
			t.Errorf("request %d %s: got %d %q / %q / Retry-After %q; want %s %q / %q / %q",
				i, tc.target, r.status, r.header.Get("RateLimit-Policy"), r.header.Get("RateLimit"),
				r.header.Get("Retry-After"), tc.status, tc.policy, tc.rateLimit, tc.retryAfter)
		}
	}
}

func TestRateLimitRetryAfterRoundsUp(t *testing.T) {
	clock := newFakeClock()
	c := newTestRateLimit(t, "rate 1/10s", clock)
	hit(c, "10.0.0.1", "/x")
	clock.advance(1500 * time.Millisecond)
	r := hit(c, "10.0.0.1", "/x")
	// 8.5s to go: Retry-After is 9, and the bucket is full in 8.5s too.
	if r.status != 429 || r.header.Get("Retry-After") != "9" || r.header.Get("RateLimit") != `"default";r=0;t=9` {
		t.Fatalf("got %d Retry-After %q RateLimit %q", r.status, r.header.Get("Retry-After"), r.header.Get("RateLimit"))
	}
}

func TestRateLimitTotalCapsAllPaths(t *testing.T) {
	c := newTestRateLimit(t, "rate 100/1m\ntotal 3/1m", newFakeClock())
	got := []int{
		hit(c, "10.0.0.1", "/a").status,
		hit(c, "10.0.0.1", "/b").status,
		hit(c, "10.0.0.1", "/c").status,
	}
	r := hit(c, "10.0.0.1", "/d")
	got = append(got, r.status)
	if want := []int{200, 200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// Both policies are announced; the refused request did not spend /d's budget.
	if p := r.header.Get("RateLimit-Policy"); p != `"default";q=100;w=60, "total";q=3;w=60` {
		t.Errorf("RateLimit-Policy %q", p)
	}
	if v := r.header.Get("RateLimit"); v != `"default";r=100;t=0, "total";r=0;t=60` {
		t.Errorf("RateLimit %q", v)
	}
	if r.header.Get("Retry-After") != "20" {
		t.Errorf("Retry-After %q, want 20", r.header.Get("Retry-After"))
	}
	// Another client is unaffected.
	if st := hit(c, "10.0.0.2", "/a").status; st != 200 {
		t.Fatalf("other client: %d", st)
	}
}

func TestRateLimitRefusedByRouteDoesNotSpendTotal(t *testing.T) {
	clock := newFakeClock()
	c := newTestRateLimit(t, "route /nl-query/* 1/1m\ntotal 3/1m", clock)
	hit(c, "10.0.0.1", "/nl-query/a")
	for i := 0; i < 10; i++ {
		if st := hit(c, "10.0.0.1", "/nl-query/a").status; st != 429 {
			t.Fatalf("route over limit: %d", st)
		}
	}
	// Ten refusals on the route left the total with 2 of 3.
	r := hit(c, "10.0.0.1", "/other")
	if r.status != 200 || r.header.Get("RateLimit") != `"total";r=1;t=40` {
		t.Fatalf("got %d %q, want 200 with total r=1", r.status, r.header.Get("RateLimit"))
	}
}

func TestRateLimitReportModeNeverRefusesVisibly(t *testing.T) {
	c := newTestRateLimit(t, "rate 1/1m\nmode report", newFakeClock())
	hit(c, "10.0.0.1", "/x")
	r := hit(c, "10.0.0.1", "/x")
	// The decision is still 429 (conclude logs it and lets it through),
	// but no rate-limit headers reach the client.
	if r.status != 429 || r.header.Get("RateLimit") != "" || r.header.Get("RateLimit-Policy") != "" {
		t.Fatalf("got %d %v", r.status, r.header)
	}
}

func TestRateLimitHugeKeyIsBounded(t *testing.T) {
	c := newTestRateLimit(t, "key {http.request.header.X-Client}\nrate 2/1m", newFakeClock())
	big := strings.Repeat("k", 10<<10)
	for i := 0; i < 3; i++ {
		hit(c, "10.0.0.1", "/x", "X-Client", big+strconv.Itoa(i))
	}
	if st := hit(c, "10.0.0.1", "/x", "X-Client", big+"0").status; st != 200 {
		t.Fatalf("second request with the big key: %d", st)
	}
	if st := hit(c, "10.0.0.1", "/x", "X-Client", big+"0").status; st != 429 {
		t.Fatalf("third request with the big key: %d", st)
	}
	if n := c.memory.Len(); n != 3 {
		t.Fatalf("store holds %d keys, want 3 (one 64-bit digest per client)", n)
	}
}

func TestRateLimitMaxKeysBound(t *testing.T) {
	clock := newFakeClock()
	c := newTestRateLimit(t, "rate 5/1m\nmax_keys 1000", clock)
	// A client that used its whole budget...
	statuses(c, "10.9.9.9", "/x", 5)
	// ...survives a flood of 50,000 distinct clients: only 1,000 keys are
	// ever held, and the evicted ones are those closest to a full budget.
	for i := 0; i < 50_000; i++ {
		hit(c, "10.1."+strconv.Itoa(i/256)+"."+strconv.Itoa(i%256), "/x")
		if i%5000 == 0 {
			if n := c.memory.Len(); n > 1000 {
				t.Fatalf("after %d clients the store holds %d keys, max 1000", i, n)
			}
		}
	}
	if n := c.memory.Len(); n > 1000 || n < 900 {
		t.Fatalf("store holds %d keys, want ≤ 1000 and close to it", n)
	}
	if st := hit(c, "10.9.9.9", "/x").status; st != 429 {
		t.Fatalf("the limited client was forgotten under the flood: got %d, want 429", st)
	}
}

func TestRateLimitSameConfigSharesStateAcrossProvisions(t *testing.T) {
	clock := newFakeClock()
	// A reload provisions the new config before cleaning up the old one.
	old := newTestRateLimit(t, "rate 2/1m", clock)
	statuses(old, "10.0.0.1", "/x", 2)
	same := newTestRateLimit(t, "rate 2/1m", clock)
	old.cleanup()
	if st := hit(same, "10.0.0.1", "/x").status; st != 429 {
		t.Fatalf("unchanged limit after reload: got %d, want 429 (budget kept)", st)
	}
	changed := newTestRateLimit(t, "rate 3/1m", clock)
	same.cleanup()
	if st := hit(changed, "10.0.0.1", "/x").status; st != 200 {
		t.Fatalf("changed limit after reload: got %d, want 200 (fresh budget)", st)
	}
}

func TestRateLimitCaddyfile(t *testing.T) {
	c, err := parseRateLimit(`key {http.request.header.X-Api-Key}
		rate 100/1m burst 20
		route /nl-query/* 10/1s burst 5
		route /schema 5/1s
		total 1000/1m
		store redis redis://127.0.0.1:6379/0 password_secret REDIS_PASSWORD
		on_store_error deny
		store_timeout 20ms
		max_keys 5000
		mode report`)
	if err != nil {
		t.Fatal(err)
	}
	want := RateLimit{
		Key:  "{http.request.header.X-Api-Key}",
		Rate: &RateSpec{Events: 100, Window: caddy.Duration(time.Minute), Burst: 20},
		Routes: []RouteLimit{
			{Path: "/nl-query/*", RateSpec: RateSpec{Events: 10, Window: caddy.Duration(time.Second), Burst: 5}},
			{Path: "/schema", RateSpec: RateSpec{Events: 5, Window: caddy.Duration(time.Second)}},
		},
		Total:               &RateSpec{Events: 1000, Window: caddy.Duration(time.Minute)},
		Store:               "redis",
		RedisURL:            "redis://127.0.0.1:6379/0",
		RedisPasswordSecret: "REDIS_PASSWORD",
		OnStoreError:        "deny",
		StoreTimeout:        caddy.Duration(20 * time.Millisecond),
		MaxKeys:             5000,
		Mode:                "report",
	}
	if c.Key != want.Key || *c.Rate != *want.Rate || len(c.Routes) != 2 || c.Routes[0] != want.Routes[0] ||
		c.Routes[1] != want.Routes[1] || *c.Total != *want.Total || c.Store != want.Store ||
		c.RedisURL != want.RedisURL || c.RedisPasswordSecret != want.RedisPasswordSecret ||
		c.OnStoreError != want.OnStoreError || c.StoreTimeout != want.StoreTimeout ||
		c.MaxKeys != want.MaxKeys || c.Mode != want.Mode {
		t.Fatalf("got %+v\nwant %+v", c, want)
	}
}

func TestRateLimitCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"rate 0/1m", "positive integer"},
		{"rate -1/1m", "positive integer"},
		{"rate 10/0s", "positive duration"},
		{"rate 10/-1s", "positive duration"},
		{"rate 10", "<N>/<duration>"},
		{"rate 10/1m burst 0", "burst"},
		{"rate 10/1m burst x", "burst"},
		{"rate 10/1m bursty 3", "expected burst"},
		{"route /a", "wrong argument count"},
		{"route a 1/1s", "must start with"},
		{"total 1/1s burst", "usage"},
		{"store postgres", "unknown store"},
		{"rate 1/1m burst 1000000000000000", "at most"},
		{"rate 1/1s burst 4000000000", "100 years"},
		{"store redis", "usage: store redis"},
		{"on_store_error maybe", "local, allow or deny"},
		{"store_timeout 0s", "positive duration"},
		{"max_keys 0", "positive integer"},
		{"mode loud", "enforce or report"},
		{"frobnicate", "unrecognized rate_limit option"},
	} {
		_, err := parseRateLimit(tc.body)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Testfile:2") {
			t.Errorf("%q: got error %v, want one containing %q and Testfile:2", tc.body, err, tc.want)
		}
	}
}

func TestRateLimitProvisionErrors(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	env := &provisionEnv{Context: ctx, logger: zap.NewNop(), now: time.Now}
	for name, c := range map[string]*RateLimit{
		"nothing to limit": {},
		"zero events":      {Rate: &RateSpec{Events: 0, Window: caddy.Duration(time.Second)}},
		"zero window":      {Total: &RateSpec{Events: 1}},
		"negative burst":   {Rate: &RateSpec{Events: 1, Window: caddy.Duration(time.Second), Burst: -1}},
		"unknown store":    {Rate: &RateSpec{Events: 1, Window: caddy.Duration(time.Second)}, Store: "disk"},
		"bad on_error":     {Rate: &RateSpec{Events: 1, Window: caddy.Duration(time.Second)}, OnStoreError: "panic"},
		"overflowing":      {Rate: &RateSpec{Events: 1, Window: caddy.Duration(365 * 24 * time.Hour), Burst: 1 << 40}},
		"unprintable name": {Routes: []RouteLimit{{Path: "/caf\u00e9/*", RateSpec: RateSpec{Events: 1, Window: caddy.Duration(time.Second)}}}},
		"newline in name":  {Routes: []RouteLimit{{Path: "/a\nb", RateSpec: RateSpec{Events: 1, Window: caddy.Duration(time.Second)}}}},
	} {
		if err := c.provision(env); err == nil {
			c.cleanup()
			t.Errorf("%s: provisioned without error", name)
		}
	}
}

// TestRateLimitProvisionReportsEveryProblem: one load names every mistake
// of the block, not only the first.
func TestRateLimitProvisionReportsEveryProblem(t *testing.T) {
	ctx, cancel := newTestContext()
	defer cancel()
	c := &RateLimit{
		StoreTimeout: -1, MaxKeys: -1, IPv6Prefix: 129, OnStoreError: "panic", Store: "disk",
		Rate:   &RateSpec{Events: 0, Window: caddy.Duration(time.Second)},
		Routes: []RouteLimit{{Path: "/caf\u00e9", RateSpec: RateSpec{Events: 1, Window: caddy.Duration(time.Second)}}},
		Identities: []IdentityLimit{{Identity: "a", RateSpec: RateSpec{Events: 1, Window: caddy.Duration(time.Second)}},
			{Identity: "a", RateSpec: RateSpec{Events: 1, Window: caddy.Duration(time.Second)}}},
	}
	err := c.provision(&provisionEnv{Context: ctx, logger: zap.NewNop(), now: time.Now})
	if err == nil {
		c.cleanup()
		t.Fatal("provisioned")
	}
	for _, want := range []string{"store_timeout", "max_keys", "ipv6_prefix", "on_store_error", `unknown store "disk"`,
		"rate: events must be a positive integer", "route /caf\u00e9: ", `identity "a" has two lines`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestRateLimitNilIsOff(t *testing.T) {
	var c *RateLimit
	if d := c.decide(&exchange{}); d.Status != 0 {
		t.Fatal(d)
	}
	if c.cleanup() != nil || c.mode() != "" || c.provision(nil) != nil {
		t.Fatal("nil stage")
	}
}

// BenchmarkRateLimitDecide is the whole stage on the request path: client
// key from the replacer, route match, store decision, RateLimit headers.
func BenchmarkRateLimitDecide(b *testing.B) {
	c := newTestRateLimit(b, "rate 1000000000/1s\nroute /nl-query/* 1000000000/1s\ntotal 1000000000/1s", newFakeClock())
	c.now = time.Now
	req := httptest.NewRequest(http.MethodGet, "/nl-query/run", nil)
	req = req.WithContext(context.WithValue(req.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "10.0.0.1"}))
	repl := caddyhttp.NewTestReplacer(req)
	rec := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		ex := &exchange{w: rec, r: req, repl: repl} // one per request, as in ServeHTTP
		if d := c.decide(ex); d.Status != 0 {
			b.Fatal(d)
		}
	}
}

// FuzzRateLimitDecide: any path and client key is decided without panic,
// and the header values stay ASCII without the request's path in them.
func FuzzRateLimitDecide(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "//x//", "/nl-query/\x00", "/%2e%2e/", strings.Repeat("/a", 3000)} {
		f.Add(s, "10.0.0.1")
	}
	c := newTestRateLimit(f, "rate 5/1m\nroute /nl-query/* 2/1s\ntotal 100/1m\nkey {http.request.header.X-K}", newFakeClock())
	f.Fuzz(func(t *testing.T, p, key string) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL.Path = p
		req.Header.Set("X-K", key)
		repl := caddyhttp.NewTestReplacer(req)
		rec := httptest.NewRecorder()
		d := c.decide(&exchange{w: rec, r: req, repl: repl})
		if d.Status != 0 && d.Status != 429 {
			t.Fatal(d)
		}
		for _, h := range []string{"RateLimit", "RateLimit-Policy"} {
			v := rec.Header().Get(h)
			for i := 0; i < len(v); i++ {
				if v[i] < 0x20 || v[i] > 0x7e {
					t.Fatalf("%s: %q", h, v)
				}
			}
			if len(p) > 12 && strings.Contains(v, p) {
				t.Fatalf("%s echoes the path: %q", h, v)
			}
		}
	})
}
