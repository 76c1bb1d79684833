package ratelimit

import (
	"fmt"
	"time"
)

// limit is one rate limit evaluated with the generic cell rate algorithm
// (GCRA), the constant-state form of a token bucket.
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
type limit struct {
	interval  int64 // T: emission interval, one token every T
	tolerance int64 // B·T: how far TAT may run ahead of now
	burst     int64 // B
}

// newLimit returns the limit of n events per period with the given burst,
// in units of unit (time.Nanosecond or time.Microsecond). The interval is
// rounded to the nearest unit and is at least one unit.
func newLimit(n int, period time.Duration, burst int, unit time.Duration) (limit, error) {
	if n <= 0 || period <= 0 || burst < 1 {
		return limit{}, fmt.Errorf("invalid limit %d/%v burst %d", n, period, burst)
	}
	t := (int64(period)/int64(unit) + int64(n)/2) / int64(n)
	if t < 1 {
		t = 1
	}
	// B·T must fit, with room to add it to a Unix time in nanoseconds.
	if int64(burst) > maxTolerance/int64(unit)/t {
		return limit{}, fmt.Errorf("limit %d/%v burst %d: a full bucket would take over 100 years to refill", n, period, burst)
	}
	return limit{interval: t, tolerance: t * int64(burst), burst: int64(burst)}, nil
}

// maxTolerance bounds B·T (in nanoseconds): 100 years.
const maxTolerance = 100 * 365 * 24 * int64(time.Hour)

// outcome is the result of one request against one limit, in the limit's
// unit.
type outcome struct {
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
// seen). It changes nothing: the caller stores the outcome's tat only if it
// commits the request, which lets a request spend two budgets only when
// both admit it.
func (l limit) check(tat, now int64) outcome {
	if tat < now {
		tat = now
	}
	next := tat + l.interval
	if next-now > l.tolerance {
		return outcome{
			tat:        tat,
			resetAfter: tat - now,
			retryAfter: next - l.tolerance - now,
		}
	}
	return outcome{
		allowed:    true,
		tat:        next,
		remaining:  (l.tolerance - (next - now)) / l.interval,
		resetAfter: next - now,
	}
}

// unspent is the outcome for a request this budget admitted (check said
// allowed) but another refused: this budget is unchanged, and reports its
// state as of now.
func (l limit) unspent(tat, now int64) outcome {
	if tat < now {
		tat = now
	}
	return outcome{
		tat:        tat,
		remaining:  (l.tolerance - (tat - now)) / l.interval,
		resetAfter: tat - now,
	}
}

// Rate is a limit of events per window with a burst, ready for both stores:
// in nanoseconds for the memory store and in microseconds for Redis. It is
// immutable and safe for concurrent use.
type Rate struct {
	memory limit // in nanoseconds
	redis  limit // in microseconds
}

// NewRate returns the rate of events per window with the given burst (the
// bucket size): a client with a full budget may make burst requests at
// once, then gets one back every window/events. It refuses events < 1,
// window <= 0, burst < 1, and a bucket that would take over 100 years to
// refill from empty.
func NewRate(events int, window time.Duration, burst int) (*Rate, error) {
	memory, err := newLimit(events, window, burst, time.Nanosecond)
	if err != nil {
		return nil, err
	}
	redis, err := newLimit(events, window, burst, time.Microsecond)
	if err != nil {
		return nil, err
	}
	return &Rate{memory: memory, redis: redis}, nil
}

// FullAfter is how long an empty bucket takes to be full again: the
// longest Result.ResetAfter the memory store reports.
func (r *Rate) FullAfter() time.Duration { return time.Duration(r.memory.tolerance) }

// ScriptArgs are the ARGV pair of GCRAScript for one key of this rate: the
// emission interval and the tolerance, in microseconds. For tools and
// benchmarks that run the script without a RedisStore.
func (r *Rate) ScriptArgs() (interval, tolerance int64) {
	return r.redis.interval, r.redis.tolerance
}
