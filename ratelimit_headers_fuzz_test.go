package sechard

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/dunglas/httpsfv"

	"github.com/sechard/sechard/internal/ratelimit"
)

// FuzzRateLimitHeaders: for any policy name (a route pattern), limit,
// remaining count and reset time a limit accepts, the RateLimit and
// RateLimit-Policy values parse as structured-field Lists (RFC 9651) and
// say what was meant: the name itself, q, w, r and t. A name is accepted
// exactly when it is printable ASCII.
func FuzzRateLimitHeaders(f *testing.F) {
	f.Add("/nl-query/*", 10, int64(time.Second), 5, int64(3), int64(1500*time.Millisecond), true)
	f.Add(`/a"b\c`, 1, int64(time.Minute), 0, int64(0), int64(0), false)
	f.Add("/caf\u00e9/*", 100, int64(time.Hour), 20, int64(20), int64(time.Hour), true)
	f.Add("", 1<<40, int64(1<<50), 1, int64(1), int64(1), false)
	f.Add("/big", 1_000_000_000_000_000_000, int64(time.Second), 1, int64(1), int64(1), false)
	f.Fuzz(func(t *testing.T, name string, events int, windowNs int64, burst int, remaining, resetNs int64, withTotal bool) {
		spec := &RateSpec{Events: events, Window: caddy.Duration(windowNs), Burst: burst}
		lim, err := compileLimit(name, spec)
		if spec.check() == nil && (err == nil) != isPrintableASCII(name) {
			t.Fatalf("name %q: %v", name, err)
		}
		if err != nil {
			return // the config is refused at load
		}
		b := int64(spec.Burst)
		if b == 0 {
			b = int64(events)
		}
		// What GCRA can report: 0 ≤ r ≤ burst, 0 ≤ t ≤ burst·interval.
		r := uabs(remaining) % (b + 1)
		reset := uabs(resetNs) % (int64(lim.rate.FullAfter()) + 1)
		var sp spending
		sp.add(ratelimit.KindRoute, "0", lim)
		sp.budgets[0].Result = ratelimit.Result{Remaining: r, ResetAfter: time.Duration(reset)}
		if withTotal {
			total, err := compileLimit("total", &RateSpec{Events: 7, Window: caddy.Duration(time.Minute)})
			if err != nil {
				t.Fatal(err)
			}
			sp.add(ratelimit.KindTotal, "", total)
			sp.budgets[1].Result = ratelimit.Result{Remaining: 6, ResetAfter: time.Second}
		}

		policy, state := policyHeader(&sp), rateLimitValue(&sp)
		pl, err := httpsfv.UnmarshalList([]string{policy})
		if err != nil {
			t.Fatalf("RateLimit-Policy %q does not parse: %v", policy, err)
		}
		sl, err := httpsfv.UnmarshalList([]string{state})
		if err != nil {
			t.Fatalf("RateLimit %q does not parse: %v", state, err)
		}
		if len(pl) != sp.n || len(sl) != sp.n {
			t.Fatalf("%d budgets; RateLimit-Policy %q, RateLimit %q", sp.n, policy, state)
		}
		want := []struct {
			name       string
			q, w, r, t int64
		}{{name, int64(events), ceilSeconds(windowNs), r, ceilSeconds(reset)}, {"total", 7, 60, 6, 1}}
		for i := range sp.n {
			pi, ok := pl[i].(httpsfv.Item)
			si, ok2 := sl[i].(httpsfv.Item)
			if !ok || !ok2 {
				t.Fatalf("members are not Items: %q, %q", policy, state)
			}
			w := want[i]
			if pi.Value != w.name || si.Value != w.name {
				t.Fatalf("names %#v, %#v; want %q (from %q)", pi.Value, si.Value, w.name, name)
			}
			for _, p := range []struct {
				params *httpsfv.Params
				key    string
				want   int64
			}{{pi.Params, "q", w.q}, {pi.Params, "w", w.w}, {si.Params, "r", w.r}, {si.Params, "t", w.t}} {
				if v, ok := p.params.Get(p.key); !ok || v != p.want {
					t.Fatalf("%s = %#v, want %d; RateLimit-Policy %q, RateLimit %q", p.key, v, p.want, policy, state)
				}
			}
			if len(pi.Params.Names()) != 2 || len(si.Params.Names()) != 2 {
				t.Fatalf("extra parameters: %q, %q", policy, state)
			}
		}
	})
}

func uabs(v int64) int64 {
	if v < 0 {
		if v == -v { // math.MinInt64
			return 0
		}
		return -v
	}
	return v
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// policyHeader is the RateLimit-Policy field value for sp.
func policyHeader(sp *spending) string {
	if sp.n == 1 {
		return sp.limits[0].policy
	}
	return string(appendPolicies(nil, sp))
}

// rateLimitValue is the RateLimit field value for sp: each policy's
// remaining requests and the seconds until its budget is full again.
func rateLimitValue(sp *spending) string {
	var buf [160]byte
	return string(appendRateLimitItems(buf[:0], sp))
}
