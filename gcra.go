package sechard

import (
	"fmt"
	"time"
)

// gcraLimit is one rate limit evaluated with the generic cell rate
// algorithm (GCRA), the constant-state form of a token bucket.
//
// A limit of N events per period d with burst B is a bucket that holds B
// tokens, starts full, and gains one token every d/N (the emission
// interval T). Each admitted request takes one token; a request that finds
// the bucket empty is refused and takes nothing. So B requests are admitted
// at once from a full bucket, then one every T, and after d·B/N of silence
// the bucket is full again. B is the full bucket size, as in
// go-redis/redis_rate (nginx and redis-cell admit B+1).
//
// GCRA keeps one number per key instead of a token count and a timestamp:
// the theoretical arrival time (TAT), the instant at which the bucket will
// be full again. A request at time now is admitted when
//
//	max(TAT, now) + T - now <= B·T
//
// and then TAT becomes max(TAT, now) + T. A refused request leaves TAT
// unchanged. A TAT at or before now means a full bucket, which is why a key
// whose TAT has passed carries no information and may be forgotten.
//
// All instants are integers in the limit's unit: nanoseconds for the memory
// store, microseconds for Redis (whose Lua numbers are doubles).
type gcraLimit struct {
	interval  int64 // T: emission interval, one token every T
	tolerance int64 // B·T: how far TAT may run ahead of now
	burst     int64 // B
}

// newGCRALimit returns the limit of n events per period with the given
// burst, in units of unit (time.Nanosecond or time.Microsecond). The
// interval is rounded to the nearest unit and is at least one unit.
func newGCRALimit(n int, period time.Duration, burst int, unit time.Duration) (gcraLimit, error) {
	if n <= 0 || period <= 0 || burst < 1 {
		return gcraLimit{}, fmt.Errorf("invalid limit %d/%v burst %d", n, period, burst)
	}
	t := (int64(period)/int64(unit) + int64(n)/2) / int64(n)
	if t < 1 {
		t = 1
	}
	// B·T must fit, with room to add it to a Unix time in nanoseconds.
	if int64(burst) > maxTolerance/int64(unit)/t {
		return gcraLimit{}, fmt.Errorf("limit %d/%v burst %d: a full bucket would take over 100 years to refill", n, period, burst)
	}
	return gcraLimit{interval: t, tolerance: t * int64(burst), burst: int64(burst)}, nil
}

// maxTolerance bounds B·T (in nanoseconds): 100 years.
const maxTolerance = 100 * 365 * 24 * int64(time.Hour)

// gcraResult is the outcome of one request against one limit.
type gcraResult struct {
	allowed bool
	// tat is the TAT to store when the request is committed (allowed);
	// unchanged TAT when refused.
	tat int64
	// remaining requests that would be admitted right now, after this one.
	remaining int64
	// resetAfter is how long until the bucket is full again.
	resetAfter int64
	// retryAfter is how long until one request would be admitted; 0 when
	// this one was.
	retryAfter int64
}

// check evaluates one request at now against a stored TAT (0 for a key never
// seen). It changes nothing: the caller stores res.tat only if it commits
// the request, which lets a request spend two budgets only when both admit
// it.
func (l gcraLimit) check(tat, now int64) gcraResult {
	if tat < now {
		tat = now
	}
	next := tat + l.interval
	if next-now > l.tolerance {
		return gcraResult{
			tat:        tat,
			resetAfter: tat - now,
			retryAfter: next - l.tolerance - now,
		}
	}
	return gcraResult{
		allowed:    true,
		tat:        next,
		remaining:  (l.tolerance - (next - now)) / l.interval,
		resetAfter: next - now,
	}
}

// refused is the result for a request refused by another budget: this
// budget is unchanged, and reports its state as of now.
func (l gcraLimit) refused(tat, now int64) gcraResult {
	if tat < now {
		tat = now
	}
	return gcraResult{
		tat:        tat,
		remaining:  (l.tolerance - (tat - now)) / l.interval,
		resetAfter: tat - now,
	}
}
