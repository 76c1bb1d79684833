package sechard

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/dunglas/httpsfv"
)

// FuzzRateLimitHeaders: for any policy name (a route pattern), limit,
// remaining count and reset time a limit accepts, the RateLimit and
// RateLimit-Policy values parse as structured-field Lists (RFC 9651) and
// say what was meant: the name (as policyName shows it: itself when it is
// printable ASCII), q, w, r and t.
func FuzzRateLimitHeaders(f *testing.F) {
	f.Add("/nl-query/*", 10, int64(time.Second), 5, int64(3), int64(1500*time.Millisecond), true)
	f.Add(`/a"b\c`, 1, int64(time.Minute), 0, int64(0), int64(0), false)
	f.Add("/caf\u00e9/*", 100, int64(time.Hour), 20, int64(20), int64(time.Hour), true)
	f.Add("", 1<<40, int64(1<<50), 1, int64(1), int64(1), false)
	f.Add("/big", 1_000_000_000_000_000_000, int64(time.Second), 1, int64(1), int64(1), false)
	f.Fuzz(func(t *testing.T, name string, events int, windowNs int64, burst int, remaining, resetNs int64, withTotal bool) {
		spec := &RateSpec{Events: events, Window: caddy.Duration(windowNs), Burst: burst}
		lim, err := compileLimit(name, spec)
		if err != nil {
			return // the config is refused at load
		}
		b := int64(spec.Burst)
		if b == 0 {
			b = int64(events)
		}
		// What GCRA can report: 0 ≤ r ≤ burst, 0 ≤ t ≤ burst·interval.
		r := uabs(remaining) % (b + 1)
		reset := uabs(resetNs) % (lim.mem.tolerance + 1)
		bs := []budget{{limit: lim, res: gcraResult{remaining: r, resetAfter: reset}}}
		if withTotal {
			total, err := compileLimit("total", &RateSpec{Events: 7, Window: caddy.Duration(time.Minute)})
			if err != nil {
				t.Fatal(err)
			}
			bs = append(bs, budget{limit: total, res: gcraResult{remaining: 6, resetAfter: int64(time.Second)}})
		}

		policy, state := policyHeader(bs), rateLimitValue(bs)
		pl, err := httpsfv.UnmarshalList([]string{policy})
		if err != nil {
			t.Fatalf("RateLimit-Policy %q does not parse: %v", policy, err)
		}
		sl, err := httpsfv.UnmarshalList([]string{state})
		if err != nil {
			t.Fatalf("RateLimit %q does not parse: %v", state, err)
		}
		if len(pl) != len(bs) || len(sl) != len(bs) {
			t.Fatalf("%d budgets; RateLimit-Policy %q, RateLimit %q", len(bs), policy, state)
		}
		wantName := policyName(name)
		if isPrintableASCII(name) && wantName != name {
			t.Fatalf("printable name %q shown as %q", name, wantName)
		}
		want := []struct {
			name       string
			q, w, r, t int64
		}{{wantName, int64(events), ceilSeconds(windowNs), r, ceilSeconds(reset)}, {"total", 7, 60, 6, 1}}
		for i := range bs {
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
