package sechard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func statusesAs(c *RateLimit, ip, id, target string, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = hitAs(c, ip, id, target).status
	}
	return out
}

func TestIdentityCaddyfile(t *testing.T) {
	c, err := parseRateLimit(`identity service-bi 50/1s burst 20
		identity * 10/1m
		identity BI_KEY 10000/24h`)
	if err != nil {
		t.Fatal(err)
	}
	want := []IdentityLimit{
		{Identity: "service-bi", RateSpec: RateSpec{Events: 50, Window: caddy.Duration(time.Second), Burst: 20}},
		{Identity: "*", RateSpec: RateSpec{Events: 10, Window: caddy.Duration(time.Minute)}},
		{Identity: "BI_KEY", RateSpec: RateSpec{Events: 10000, Window: caddy.Duration(24 * time.Hour)}},
	}
	if len(c.Identities) != len(want) {
		t.Fatalf("identities %+v", c.Identities)
	}
	for i := range want {
		if c.Identities[i] != want[i] {
			t.Fatalf("identity %d: %+v, want %+v", i, c.Identities[i], want[i])
		}
	}
	for _, bad := range []string{
		"identity",
		"identity service-bi",
		"identity service-bi ten/1s",
		"identity service-bi 10/1s burst",
		"identity service-bi 10/1s burst 0",
		"identity a 1/1s\nidentity a 2/1s",
		"identity * 1/1s\nidentity * 2/1s",
	} {
		if _, err := parseRateLimit(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestIdentityOnlyIsValid: rate_limit with only identity lines loads, and
// spends nothing before auth.
func TestIdentityOnlyIsValid(t *testing.T) {
	c := newTestRateLimit(t, "identity * 2/1m", newFakeClock())
	if got := hit(c, "10.0.0.1", "/x"); got.status != 200 || got.header.Get("RateLimit") != "" {
		t.Fatalf("per-address step with only identity lines: %d %v", got.status, got.header)
	}
	if got, want := statusesAs(c, "10.0.0.1", "svc", "/x", 3), []int{200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
}

// TestIdentityBudgetsPerIdentity: a named line is that identity's budget
// whatever the address and path; `*` gives every other identity a budget
// of its own; no identity (auth refused, public path) spends nothing.
func TestIdentityBudgetsPerIdentity(t *testing.T) {
	c := newTestRateLimit(t, "identity service-bi 3/1m\nidentity * 2/1m", newFakeClock())
	got := []int{
		hitAs(c, "10.0.0.1", "service-bi", "/a").status,
		hitAs(c, "10.0.0.2", "service-bi", "/b").status,
		hitAs(c, "2001:db8::1", "service-bi", "/c").status,
		hitAs(c, "10.0.0.3", "service-bi", "/d").status,
	}
	if want := []int{200, 200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("service-bi across addresses and paths: %v, want %v", got, want)
	}
	if got, want := statusesAs(c, "10.0.0.1", "other", "/a", 3), []int{200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("other under *: %v, want %v", got, want)
	}
	if got, want := statusesAs(c, "10.0.0.1", "third", "/a", 3), []int{200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("third under * (its own budget): %v, want %v", got, want)
	}
	if got, want := statusesAs(c, "10.0.0.1", "", "/a", 5), repeatStatus(200, 5); !equalInts(got, want) {
		t.Fatalf("no identity: %v, want %v", got, want)
	}
	// No `*`: an identity without a line is not limited.
	c2 := newTestRateLimit(t, "identity service-bi 1/1m", newFakeClock())
	if got, want := statusesAs(c2, "10.0.0.1", "other", "/a", 3), repeatStatus(200, 3); !equalInts(got, want) {
		t.Fatalf("no * line: %v, want %v", got, want)
	}
}

// TestIdentityHeadersJoinRoutePolicies: the identity policy is one more
// member of the RateLimit-Policy and RateLimit fields the per-address step
// set, and a refusal names it.
func TestIdentityHeadersJoinRoutePolicies(t *testing.T) {
	c := newTestRateLimit(t, "route /q 10/1m\ntotal 100/1m\nidentity svc 2/1m burst 2", newFakeClock())
	res := hitAs(c, "10.0.0.1", "svc", "/q")
	if got, want := res.header.Values("RateLimit-Policy"), []string{`"/q";q=10;w=60, "total";q=100;w=60, "identity";q=2;w=60`}; len(got) != 1 || got[0] != want[0] {
		t.Fatalf("RateLimit-Policy %q, want %q", got, want)
	}
	if got, want := res.header.Values("RateLimit"), `"/q";r=9;t=6, "total";r=99;t=1, "identity";r=1;t=30`; len(got) != 1 || got[0] != want {
		t.Fatalf("RateLimit %q, want %q", got, want)
	}
	hitAs(c, "10.0.0.1", "svc", "/q")
	res = hitAs(c, "10.0.0.1", "svc", "/q")
	if res.status != 429 || res.header.Get("Retry-After") != "30" ||
		res.header.Get("RateLimit") != `"/q";r=7;t=18, "total";r=97;t=2, "identity";r=0;t=60` {
		t.Fatalf("refusal: %d %v", res.status, res.header)
	}
	// Only identity lines: the identity policy alone.
	c2 := newTestRateLimit(t, "identity * 5/10s", newFakeClock())
	res = hitAs(c2, "10.0.0.1", "x", "/q")
	if res.header.Get("RateLimit-Policy") != `"identity";q=5;w=10` || res.header.Get("RateLimit") != `"identity";r=4;t=2` {
		t.Fatalf("identity only: %v", res.header)
	}
	// Report mode: no headers, no refusal.
	c3 := newTestRateLimit(t, "identity * 1/1m\nmode report", newFakeClock())
	for i := 0; i < 3; i++ {
		res = hitAs(c3, "10.0.0.1", "x", "/q")
	}
	if res.header.Get("RateLimit") != "" || res.header.Get("RateLimit-Policy") != "" {
		t.Fatalf("report mode sent headers: %v", res.header)
	}
}

// TestIdentityDailyQuotaRetryAfter: a 24 h quota with an injected clock.
// `10000/24h` admits 10000 at once, then one every 8.64 s; exhausted, the
// refusal says so (Retry-After 9, RateLimit r=0 and 24 h until full).
// `3/24h burst 3` waits 8 h for its next request.
func TestIdentityDailyQuotaRetryAfter(t *testing.T) {
	clock := newFakeClock()
	c := newTestRateLimit(t, "identity batch 10000/24h", clock)
	for i := 0; i < 10000; i++ {
		if st := hitAs(c, "10.0.0.1", "batch", "/job").status; st != 200 {
			t.Fatalf("request %d: %d", i+1, st)
		}
		if i%1000 == 999 {
			clock.advance(time.Millisecond) // well within the 8.64 s it takes to earn one back
		}
	}
	res := hitAs(c, "10.0.0.1", "batch", "/job")
	if res.status != 429 || res.header.Get("Retry-After") != "9" ||
		res.header.Get("RateLimit-Policy") != `"identity";q=10000;w=86400` ||
		res.header.Get("RateLimit") != `"identity";r=0;t=86400` {
		t.Fatalf("exhausted quota: %d %v", res.status, res.header)
	}
	clock.advance(8*time.Second + 640*time.Millisecond)
	if got, want := statusesAs(c, "10.0.0.1", "batch", "/job", 2), []int{200, 429}; !equalInts(got, want) {
		t.Fatalf("8.64 s later: %v, want %v", got, want)
	}

	c2 := newTestRateLimit(t, "identity nightly 3/24h", clock)
	statusesAs(c2, "10.0.0.1", "nightly", "/job", 3)
	res = hitAs(c2, "10.0.0.1", "nightly", "/job")
	if res.status != 429 || res.header.Get("Retry-After") != "28800" || res.header.Get("RateLimit") != `"identity";r=0;t=86400` {
		t.Fatalf("3/24h exhausted: %d %v", res.status, res.header)
	}
	clock.advance(8*time.Hour - time.Second)
	if res = hitAs(c2, "10.0.0.1", "nightly", "/job"); res.status != 429 || res.header.Get("Retry-After") != "1" {
		t.Fatalf("one second early: %d %v", res.status, res.header)
	}
	clock.advance(time.Second)
	if st := hitAs(c2, "10.0.0.1", "nightly", "/job").status; st != 200 {
		t.Fatalf("8 h later: %d", st)
	}
}

// TestIdentityRefusedByRouteSpendsNoIdentity: a request the per-address
// step refused never reaches auth, so spends no identity budget; one the
// identity step refused has spent its per-address budgets (they were
// spent before auth, as floods of bad credentials must be).
func TestIdentityRefusedByRouteSpendsNoIdentity(t *testing.T) {
	c := newTestRateLimit(t, "route /q 1/1m\nidentity svc 2/1m", newFakeClock())
	if got, want := statusesAs(c, "10.0.0.1", "svc", "/q", 3), []int{200, 429, 429}; !equalInts(got, want) {
		t.Fatalf("/q: %v, want %v", got, want)
	}
	if got, want := statusesAs(c, "10.0.0.2", "svc", "/other", 2), []int{200, 429}; !equalInts(got, want) {
		t.Fatalf("svc from another address and path: %v, want %v (one identity request left)", got, want)
	}
}

// TestIdentityLineSurvivesReloads: an unchanged identity line keeps its
// budgets when other lines change; a changed one starts afresh.
func TestIdentityLineSurvivesReloads(t *testing.T) {
	clock := newFakeClock()
	old := newTestRateLimit(t, "route /q 5/1m\nidentity svc 2/1m\nidentity * 1/1m", clock)
	statusesAs(old, "10.0.0.1", "svc", "/x", 2)
	statusesAs(old, "10.0.0.1", "other", "/x", 1)
	next := newTestRateLimit(t, "route /q 6/1m\nidentity svc 2/1m\nidentity * 3/1m", clock)
	old.cleanup()
	if st := hitAs(next, "10.0.0.1", "svc", "/x").status; st != 429 {
		t.Fatalf("unchanged svc line after reload: %d, want 429 (budget kept)", st)
	}
	if st := hitAs(next, "10.0.0.1", "other", "/x").status; st != 200 {
		t.Fatalf("changed * line after reload: %d, want 200 (fresh budget)", st)
	}
	last := newTestRateLimit(t, "identity svc 3/1m", clock)
	next.cleanup()
	if st := hitAs(last, "10.0.0.1", "svc", "/x").status; st != 200 {
		t.Fatalf("changed svc line: %d, want 200", st)
	}
}

func TestIdentityProvisionErrors(t *testing.T) {
	for _, tc := range []struct {
		rl   *RateLimit
		want string
	}{
		{&RateLimit{Identities: []IdentityLimit{{Identity: "", RateSpec: RateSpec{Events: 1, Window: caddy.Duration(time.Second)}}}}, "empty name"},
		{&RateLimit{Identities: []IdentityLimit{{Identity: "a", RateSpec: RateSpec{Events: 0, Window: caddy.Duration(time.Second)}}}}, "events must be a positive integer"},
		{&RateLimit{Identities: []IdentityLimit{
			{Identity: "a", RateSpec: RateSpec{Events: 1, Window: caddy.Duration(time.Second)}},
			{Identity: "a", RateSpec: RateSpec{Events: 2, Window: caddy.Duration(time.Second)}}}}, "two lines"},
	} {
		ctx, cancel := newTestContext()
		err := tc.rl.provision(&provisionEnv{Context: ctx, logger: zap.NewNop(), now: time.Now})
		tc.rl.cleanup()
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.rl.Identities, err, tc.want)
		}
	}
	// Identity lines without auth would never spend anything.
	h := &Handler{RateLimit: &RateLimit{Identities: []IdentityLimit{{Identity: "*", RateSpec: RateSpec{Events: 1, Window: caddy.Duration(time.Second)}}}}}
	ctx, cancel := newTestContext()
	defer cancel()
	err := h.Provision(ctx)
	h.Cleanup()
	if err == nil || !strings.Contains(err.Error(), "identity lines need auth") {
		t.Fatalf("identity without auth: %v", err)
	}
}

// TestIdentityRedisOnStoreError: identity budgets follow on_store_error
// like every budget (here local: this instance's memory decides).
func TestIdentityRedisOnStoreError(t *testing.T) {
	r := startRedis(t)
	c, _ := newRedisRateLimit(t, "identity svc 2/1m\nstore redis "+r.URL+"\nstore_timeout 200ms", nil)
	if got, want := statusesAs(c, "10.0.0.1", "svc", "/x", 3), []int{200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("through redis: %v, want %v", got, want)
	}
	keys, err := redisClient(t, r.Addr).Keys(context.Background(), "sechard:rl:id:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("redis keys %v (%v), want one identity key", keys, err)
	}
	r.Stop()
	if got, want := statusesAs(c, "10.0.0.1", "svc", "/x", 3), []int{200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("redis down, on_store_error local: %v, want %v", got, want)
	}
	d, _ := newRedisRateLimit(t, "identity svc 2/1m\nstore redis "+r.URL+"\non_store_error deny", nil)
	if res := hitAs(d, "10.0.0.1", "svc", "/x"); res.status != 429 || res.header.Get("Retry-After") != "1" {
		t.Fatalf("redis down, on_store_error deny: %d %v", res.status, res.header)
	}
}

// BenchmarkIdentityBudget: the extra cost of an identity budget on the
// allowed path (target: ≤ 100 ns and 0 allocations, memory store). The
// whole handler (rate_limit route + total, auth with an API key) runs
// without and with an identity line for the key, and so do the two
// rate-limit steps alone: the difference within each pair is the cost.
//
//	go test -run '^$' -bench BenchmarkIdentityBudget -benchmem .
func BenchmarkIdentityBudget(b *testing.B) {
	b.Setenv("BENCH_API_KEY", "bench-key-0123456789abcdef")
	const huge = 1 << 30
	limits := func(identities ...IdentityLimit) *RateLimit {
		return &RateLimit{
			Routes:     []RouteLimit{{Path: "/api/*", RateSpec: RateSpec{Events: huge, Window: caddy.Duration(time.Second)}}},
			Total:      &RateSpec{Events: huge, Window: caddy.Duration(time.Second)},
			Identities: identities,
		}
	}
	for _, tc := range []struct {
		name string
		rl   *RateLimit
	}{
		{"handler_without_identity", limits()},
		{"handler_with_identity", limits(IdentityLimit{Identity: "BENCH_API_KEY", RateSpec: RateSpec{Events: huge, Window: caddy.Duration(time.Second)}},
			IdentityLimit{Identity: "*", RateSpec: RateSpec{Events: huge, Window: caddy.Duration(time.Second)}})},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := provisionedHandler(b, &Handler{
				RateLimit: tc.rl,
				Auth:      &Auth{APIKeys: []APIKey{{Secret: "BENCH_API_KEY", Scopes: []string{"read"}}}},
			})
			b.Cleanup(func() { h.Cleanup() })
			h.audit = zap.NewNop()
			r := benchRequest()
			resp := benchServeWithKey(b, h, r)
			if want := strings.Contains(tc.name, "with_identity"); strings.Contains(resp.Get("RateLimit-Policy"), `"identity"`) != want {
				b.Fatalf("RateLimit-Policy %q: the benchmark measured the wrong thing", resp.Get("RateLimit-Policy"))
			}
		})
	}
	// The two rate-limit steps alone, without and with the identity step:
	// the difference is the identity budget's cost. The exchange is reused;
	// resetting its header arena is safe here because the header map that
	// held its strings was cleared.
	for _, withID := range []bool{false, true} {
		name := "steps_address_only"
		if withID {
			name = "steps_address_and_identity"
		}
		b.Run(name, func(b *testing.B) {
			c := newTestRateLimit(b, "route /api/* 1000000000/1s\ntotal 1000000000/1s\nidentity service-bi 1000000000/1s\nidentity * 1000000000/1s", newFakeClock())
			c.now = time.Now
			req := httptest.NewRequest(http.MethodGet, "/api/items", nil)
			req = req.WithContext(context.WithValue(req.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.1"}))
			w := &benchWriter{h: make(http.Header, 16)}
			ex := &exchange{w: w, r: req, repl: caddyhttp.NewTestReplacer(req), identity: "service-bi"}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				clear(w.h)
				if ex.s != nil {
					ex.s.rl = rlFields{}
				}
				if d := c.decide(ex); d.Status != 0 {
					b.Fatal(d)
				}
				if withID {
					if d := c.decideIdentity(ex); d.Status != 0 {
						b.Fatal(d)
					}
				}
			}
			b.StopTimer()
			if strings.Contains(w.h.Get("RateLimit"), `"identity"`) != withID {
				b.Fatalf("RateLimit %q: the benchmark measured the wrong thing", w.h.Get("RateLimit"))
			}
		})
	}
}

// TestIdentityRecipeAdapts: the README's per-service quota recipe is a
// valid Caddyfile whose identity lines reach the JSON config.
func TestIdentityRecipeAdapts(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "### Per-service quotas during the JWT migration")
	if !ok {
		t.Fatal("recipe not found in README.md")
	}
	_, rest, _ = strings.Cut(rest, "```caddyfile\n")
	recipe, _, _ := strings.Cut(rest, "```")
	// reverse_proxy is not compiled into the test binary.
	recipe = strings.Replace(recipe, "reverse_proxy bi-backend:8080", "respond ok", 1)
	cfg, err := adaptCaddyfile(t, recipe)
	if err != nil {
		t.Fatal(err)
	}
	hs := sechardHandlers(t, cfg)
	if len(hs) != 1 || !strings.Contains(hs[0], `{"burst":20,"events":50,"identity":"SERVICE_BI_KEY","window":1000000000}`) ||
		!strings.Contains(hs[0], `{"burst":10,"events":5,"identity":"*","window":1000000000}`) {
		t.Fatalf("adapted handler: %v", hs)
	}
}

// TestRateLimitFieldsArena: header values built in the exchange's arena
// are exact whether they fit or spill to the heap, and a value given out
// is never changed by what is written after it.
func TestRateLimitFieldsArena(t *testing.T) {
	long := "/" + strings.Repeat("x", 150) + "/*"
	for _, tc := range []struct{ name, body, path, policy string }{
		{"fits", "route /q 10/1m\nidentity svc 2/1m", "/q", `"/q";q=10;w=60, "identity";q=2;w=60`},
		{"route spills", "route " + long + " 10/1m\nidentity svc 2/1m", long[:len(long)-1] + "a", `"` + long + `";q=10;w=60, "identity";q=2;w=60`},
		{"identity spills", "route /" + strings.Repeat("y", 80) + " 10/1m\nidentity svc 2/1m", "/" + strings.Repeat("y", 80), `"/` + strings.Repeat("y", 80) + `";q=10;w=60, "identity";q=2;w=60`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestRateLimit(t, tc.body, newFakeClock())
			req := httptest.NewRequest(http.MethodGet, tc.path, nil)
			req = req.WithContext(context.WithValue(req.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "10.0.0.1"}))
			rec := httptest.NewRecorder()
			ex := &exchange{w: rec, r: req, repl: caddyhttp.NewTestReplacer(req), identity: "svc"}
			if d := c.decide(ex); d.Status != 0 {
				t.Fatal(d)
			}
			before := rec.Header().Get("RateLimit-Policy")
			kept := strings.Clone(before)
			if d := c.decideIdentity(ex); d.Status != 0 {
				t.Fatal(d)
			}
			if before != kept {
				t.Fatalf("the first value changed under its string: %q, was %q", before, kept)
			}
			if got := rec.Header().Values("RateLimit-Policy"); len(got) != 1 || got[0] != tc.policy {
				t.Fatalf("RateLimit-Policy %q, want %q", got, tc.policy)
			}
			if got := rec.Header().Get("RateLimit"); !strings.HasSuffix(got, `, "identity";r=1;t=30`) || strings.Count(got, `";r=`) != 2 {
				t.Fatalf("RateLimit %q", got)
			}
		})
	}
}
