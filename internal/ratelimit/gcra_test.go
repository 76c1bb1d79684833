package ratelimit

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestGCRABurstThenOneEveryInterval(t *testing.T) {
	// 10 per second, burst 5: five at once, then one every 100 ms.
	l, err := newLimit(10, time.Second, 5, time.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	if l.interval != int64(100*time.Millisecond) || l.tolerance != int64(500*time.Millisecond) {
		t.Fatalf("interval %d tolerance %d", l.interval, l.tolerance)
	}
	now, tat := int64(1_000_000_000_000), int64(0)
	for i := range 5 {
		res := l.check(tat, now)
		if !res.allowed || res.remaining != int64(4-i) || res.retryAfter != 0 {
			t.Fatalf("request %d of the burst: %+v", i+1, res)
		}
		tat = res.tat
	}
	res := l.check(tat, now)
	if res.allowed || res.tat != tat || res.retryAfter != int64(100*time.Millisecond) || res.resetAfter != int64(500*time.Millisecond) {
		t.Fatalf("sixth request: %+v (tat %d)", res, tat)
	}
	// A refusal spends nothing: the same answer a moment later.
	if again := l.check(tat, now); again != res {
		t.Fatalf("refused request changed state: %+v then %+v", res, again)
	}
	// One token is back after exactly one interval, not before.
	if res := l.check(tat, now+int64(100*time.Millisecond)-1); res.allowed {
		t.Fatalf("admitted 1 ns before the interval: %+v", res)
	}
	res = l.check(tat, now+int64(100*time.Millisecond))
	if !res.allowed || res.remaining != 0 {
		t.Fatalf("after one interval: %+v", res)
	}
	// After d·B/N of silence the bucket is full again.
	full := l.check(res.tat, now+int64(100*time.Millisecond)+int64(500*time.Millisecond))
	if !full.allowed || full.remaining != 4 {
		t.Fatalf("after a full refill: %+v", full)
	}
}

func TestGCRAUnspentReportsStateWithoutSpending(t *testing.T) {
	l, _ := newLimit(2, time.Minute, 2, time.Nanosecond)
	now := int64(time.Hour)
	r1 := l.check(0, now)
	state := l.unspent(r1.tat, now)
	if state.allowed || state.tat != r1.tat || state.remaining != 1 || state.resetAfter != r1.resetAfter {
		t.Fatalf("unspent(): %+v after %+v", state, r1)
	}
	if fresh := l.unspent(0, now); fresh.remaining != 2 || fresh.resetAfter != 0 {
		t.Fatalf("unspent() of a key never seen: %+v", fresh)
	}
}

func TestGCRALimitEdges(t *testing.T) {
	for _, tc := range []struct {
		n      int
		period time.Duration
		burst  int
		unit   time.Duration
		ok     bool
		want   int64 // interval
	}{
		{3, time.Second, 3, time.Nanosecond, true, 333333333},   // rounded to the nearest unit
		{3, time.Second, 3, time.Microsecond, true, 333333},     // Redis' unit
		{10, time.Nanosecond, 1, time.Nanosecond, true, 1},      // at least one unit
		{0, time.Second, 1, time.Nanosecond, false, 0},          // no events
		{1, 0, 1, time.Nanosecond, false, 0},                    // no period
		{1, time.Second, 0, time.Nanosecond, false, 0},          // no burst
		{1, 24 * time.Hour, 1 << 20, time.Nanosecond, false, 0}, // a refill over 100 years
	} {
		l, err := newLimit(tc.n, tc.period, tc.burst, tc.unit)
		if (err == nil) != tc.ok || tc.ok && l.interval != tc.want {
			t.Errorf("%d/%v burst %d in %v: %+v, %v", tc.n, tc.period, tc.burst, tc.unit, l, err)
		}
	}
}

// TestGCRANeverAdmitsMoreThanTheRate: whatever the arrival times, over any
// run no more than B + elapsed/T requests are admitted, and a steady client
// arriving every T is never refused after its burst.
func TestGCRANeverAdmitsMoreThanTheRate(t *testing.T) {
	l, _ := newLimit(50, time.Second, 7, time.Nanosecond)
	rng := rand.New(rand.NewPCG(1, 2))
	start := int64(1_700_000_000) * int64(time.Second)
	now, tat, admitted := start, int64(0), int64(0)
	for range 100_000 {
		now += rng.Int64N(int64(30 * time.Millisecond))
		if res := l.check(tat, now); res.allowed {
			tat = res.tat
			admitted++
		}
		if bound := l.burst + (now-start)/l.interval; admitted > bound {
			t.Fatalf("admitted %d by %v, more than %d", admitted, time.Duration(now-start), bound)
		}
	}
	tat = 0
	for i := range 1000 {
		res := l.check(tat, now+int64(i)*l.interval)
		if !res.allowed {
			t.Fatalf("steady client refused at request %d", i)
		}
		tat = res.tat
	}
}

// TestGCRABurstExhaustion: a full bucket of B admits exactly B requests at
// one instant, counting remaining down to 0, and the next is refused with
// the time to one token; a burst of 1 admits one request per interval.
func TestGCRABurstExhaustion(t *testing.T) {
	for _, burst := range []int{1, 2, 7, 100} {
		l, err := newLimit(10, time.Second, burst, time.Nanosecond)
		if err != nil {
			t.Fatal(err)
		}
		now, tat := int64(time.Hour), int64(0)
		for i := range burst {
			res := l.check(tat, now)
			if !res.allowed || res.remaining != int64(burst-1-i) {
				t.Fatalf("burst %d, request %d: %+v", burst, i+1, res)
			}
			tat = res.tat
		}
		res := l.check(tat, now)
		if res.allowed || res.remaining != 0 || res.retryAfter != l.interval || res.resetAfter != l.tolerance {
			t.Fatalf("burst %d, request %d: %+v", burst, burst+1, res)
		}
	}
}

// TestGCRAExactBoundaries: a token comes back exactly one interval after
// it was spent (not a unit earlier), and a bucket is full exactly B·T after
// it emptied; results at the boundary say so.
func TestGCRAExactBoundaries(t *testing.T) {
	l, _ := newLimit(4, time.Second, 2, time.Nanosecond) // T = 250ms, B·T = 500ms
	now := int64(1_000_000_000_000)
	tat := l.check(0, now).tat
	tat = l.check(tat, now).tat // empty now; full again at now+500ms
	if tat != now+l.tolerance {
		t.Fatalf("TAT %d after the burst, want now+B·T", tat-now)
	}
	before := l.check(tat, now+l.interval-1)
	if before.allowed || before.retryAfter != 1 {
		t.Fatalf("one unit before the interval: %+v", before)
	}
	at := l.check(tat, now+l.interval)
	if !at.allowed || at.remaining != 0 || at.resetAfter != l.tolerance {
		t.Fatalf("at the interval: %+v", at)
	}
	// At the instant the bucket is full, the key says nothing: the same
	// answers as a key never seen.
	if full, fresh := l.check(tat, tat), l.check(0, tat); full != fresh {
		t.Fatalf("at TAT %+v, never seen %+v", full, fresh)
	}
	if s := l.unspent(tat, tat); s.remaining != l.burst || s.resetAfter != 0 {
		t.Fatalf("unspent at TAT: %+v", s)
	}
}

// TestGCRAHugePeriods: limits whose refill takes up to 100 years are
// accepted and evaluated without overflow, in both units; longer ones are
// refused at construction (maxTolerance), so B·T added to a Unix time in
// nanoseconds never overflows.
func TestGCRAHugePeriods(t *testing.T) {
	year := 365 * 24 * time.Hour
	for _, unit := range []time.Duration{time.Nanosecond, time.Microsecond} {
		l, err := newLimit(1, 100*year, 1, unit)
		if err != nil {
			t.Fatalf("100 years in %v: %v", unit, err)
		}
		if l.tolerance*int64(unit) != maxTolerance {
			t.Fatalf("tolerance %d in %v", l.tolerance, unit)
		}
		now := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano() / int64(unit)
		res := l.check(0, now)
		if !res.allowed || res.tat != now+l.tolerance || res.tat < now {
			t.Fatalf("check in %v: %+v", unit, res)
		}
		if again := l.check(res.tat, now); again.allowed || again.retryAfter != l.tolerance {
			t.Fatalf("second request in %v: %+v", unit, again)
		}
		if _, err := newLimit(1, 100*year+time.Hour, 1, unit); err == nil {
			t.Fatalf("a refill over 100 years accepted in %v", unit)
		}
		if _, err := newLimit(1<<20, 100*year, 1<<20+1, unit); err == nil {
			t.Fatalf("a burst over 100 years of intervals accepted in %v", unit)
		}
	}
	// The overflow guard holds for the largest inputs an int can carry.
	if _, err := newLimit(1, time.Duration(1<<63-1), 1<<62, time.Nanosecond); err == nil {
		t.Fatal("overflowing limit accepted")
	}
	if l, err := newLimit(1<<62, time.Nanosecond, 1, time.Nanosecond); err != nil || l.interval != 1 {
		t.Fatalf("more events than units: %+v, %v", l, err)
	}
}

// TestGCRAClockGoingBackwards: a clock stepped back (another instance's,
// or an NTP correction) never admits more than the bucket holds: the TAT
// ahead of now is debt, and the answers are those of a client that spent
// its budget later.
func TestGCRAClockGoingBackwards(t *testing.T) {
	l, _ := newLimit(10, time.Second, 3, time.Nanosecond)
	now := int64(1_000_000_000_000)
	tat := int64(0)
	for range 3 {
		tat = l.check(tat, now).tat
	}
	earlier := now - int64(time.Second)
	res := l.check(tat, earlier)
	if res.allowed || res.tat != tat || res.retryAfter != tat+l.interval-l.tolerance-earlier {
		t.Fatalf("a second back: %+v", res)
	}
	// However far back the clock went, nothing is admitted before the
	// debt is paid, and remaining is never negative.
	for _, back := range []int64{1, int64(time.Millisecond), int64(time.Hour)} {
		if res := l.check(tat, now-back); res.allowed || res.remaining != 0 || res.resetAfter != tat-now+back {
			t.Fatalf("%d ns back: %+v", back, res)
		}
	}
	// Once the clock is past the TAT minus the tolerance again, it admits.
	if res := l.check(tat, tat-l.tolerance+l.interval); !res.allowed {
		t.Fatalf("after the debt: %+v", res)
	}
}

// FuzzGCRA: whatever the limit and the (possibly unordered) arrival times,
// check never admits more than B requests at one instant, its outcomes
// are in range, and a refusal changes nothing.
func FuzzGCRA(f *testing.F) {
	f.Add(10, int64(time.Second), 5, int64(0), int64(1), int64(2))
	f.Add(1, int64(time.Hour), 1, int64(1e18), int64(-5), int64(3))
	f.Add(1<<30, int64(time.Nanosecond), 1<<20, int64(7), int64(7), int64(7))
	f.Fuzz(func(t *testing.T, n int, period int64, burst int, start, d1, d2 int64) {
		l, err := newLimit(n, time.Duration(period), burst, time.Nanosecond)
		if err != nil {
			return
		}
		start = uabs(start) % (1 << 62)
		tat := int64(0)
		for _, now := range []int64{start, start + d1%int64(time.Hour), start + d2%int64(time.Hour)} {
			admitted := int64(0)
			for range min(l.burst+1, 64) {
				res := l.check(tat, now)
				if res.remaining < 0 || res.resetAfter < 0 || res.retryAfter < 0 ||
					res.remaining > l.burst || res.resetAfter > l.tolerance+max(0, tat-now) {
					t.Fatalf("%+v at %d: out of range %+v", l, now, res)
				}
				if !res.allowed {
					if res.tat != max(tat, now) || res.retryAfter == 0 {
						t.Fatalf("refusal %+v with TAT %d", res, tat)
					}
					break
				}
				admitted++
				tat = res.tat
			}
			if admitted > l.burst {
				t.Fatalf("%+v: %d admitted at one instant", l, admitted)
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
