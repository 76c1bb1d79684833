package sechard

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestGCRABurstThenOneEveryInterval(t *testing.T) {
	// 10 per second, burst 5: five at once, then one every 100 ms.
	l, err := newGCRALimit(10, time.Second, 5, time.Nanosecond)
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

func TestGCRARefusedReportsStateWithoutSpending(t *testing.T) {
	l, _ := newGCRALimit(2, time.Minute, 2, time.Nanosecond)
	now := int64(time.Hour)
	r1 := l.check(0, now)
	state := l.refused(r1.tat, now)
	if state.allowed || state.tat != r1.tat || state.remaining != 1 || state.resetAfter != r1.resetAfter {
		t.Fatalf("refused(): %+v after %+v", state, r1)
	}
	if fresh := l.refused(0, now); fresh.remaining != 2 || fresh.resetAfter != 0 {
		t.Fatalf("refused() of a key never seen: %+v", fresh)
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
		l, err := newGCRALimit(tc.n, tc.period, tc.burst, tc.unit)
		if (err == nil) != tc.ok || tc.ok && l.interval != tc.want {
			t.Errorf("%d/%v burst %d in %v: %+v, %v", tc.n, tc.period, tc.burst, tc.unit, l, err)
		}
	}
}

// TestGCRANeverAdmitsMoreThanTheRate: whatever the arrival times, over any
// run no more than B + elapsed/T requests are admitted, and a steady client
// arriving every T is never refused after its burst.
func TestGCRANeverAdmitsMoreThanTheRate(t *testing.T) {
	l, _ := newGCRALimit(50, time.Second, 7, time.Nanosecond)
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
