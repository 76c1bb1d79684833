package ratelimit

import "time"

// Store keeps budgets and spends them. Both stores of this package
// implement it: [MemoryStore], which never fails, and [RedisStore], which
// fails when Redis does, is slower than its timeout, or its circuit breaker
// is open. What to do then (admit, refuse, decide in memory) is the
// caller's choice.
type Store interface {
	// Take spends one request at now from every budget in budgets (one or
	// two) if all of them admit it, and from none otherwise; it reports
	// whether they did, and sets each budget's Result. With a non-nil
	// error the store could not decide: allowed is false, nothing was
	// spent and the Results are unset.
	Take(now time.Time, client string, budgets []Budget) (allowed bool, err error)
}

var (
	_ Store = (*MemoryStore)(nil)
	_ Store = (*RedisStore)(nil)
)

// Kind is what a budget counts. Its value is the byte that names the kind
// in Redis keys, which must not change while budgets are kept there.
type Kind byte

const (
	// KindRoute is a configured route's budget; the tag is the route's
	// index.
	KindRoute Kind = 'r'
	// KindPath is the budget of one cleaned path under the default rate;
	// the tag is the path (digested in Redis keys, whatever its length).
	KindPath Kind = 'p'
	// KindTotal is the budget every request of a client spends; no tag.
	KindTotal Kind = 't'
	// KindIdentity is an authenticated identity's budget; the tag names the
	// identity line's limit, so that an unchanged line keeps its budgets.
	// Redis keeps identity budgets apart from the others (see RedisStore).
	KindIdentity Kind = 'i'
)

// Budget is one limit a request spends: the client's budget of this kind
// and tag, at Rate. Take fills in Result.
type Budget struct {
	Kind   Kind
	Tag    string
	Rate   *Rate
	Result Result
}

// Result is how a budget stands after a request.
type Result struct {
	// Allowed is true when this budget admitted the request (which may
	// still have been refused by another budget, and then spent nothing).
	Allowed bool
	// Remaining is how many more requests the budget admits right now.
	Remaining int64
	// ResetAfter is how long until the budget is full again.
	ResetAfter time.Duration
	// RetryAfter is how long until this budget admits one request; 0 when
	// it admitted this one.
	RetryAfter time.Duration
}

// evaluate decides a request against budgets (one or two) whose stored
// TATs are tats, in nanoseconds, or in microseconds (Redis) when micro: it is
// admitted only if every budget admits it, and a budget that would have
// admitted a request refused by another reports itself unspent. It fills
// in the Results and returns the TATs to store if the request is
// committed.
func evaluate(budgets []Budget, tats []int64, now int64, micro bool) (ok bool, next [2]int64) {
	unit := time.Nanosecond
	if micro {
		unit = time.Microsecond
	}
	var outs [2]outcome
	ok = true
	for i := range budgets {
		outs[i] = budgets[i].Rate.limit(micro).check(tats[i], now)
		ok = ok && outs[i].allowed
	}
	for i := range budgets {
		o := outs[i]
		if !ok && o.allowed {
			o = budgets[i].Rate.limit(micro).unspent(tats[i], now)
		}
		next[i] = o.tat
		budgets[i].Result = o.result(unit)
	}
	return ok, next
}

// result is o for the caller, its instants in unit.
func (o outcome) result(unit time.Duration) Result {
	return Result{
		Allowed:    o.allowed,
		Remaining:  o.remaining,
		ResetAfter: time.Duration(o.resetAfter) * unit,
		RetryAfter: time.Duration(o.retryAfter) * unit,
	}
}

// limit is r in microseconds when micro, else in nanoseconds.
func (r *Rate) limit(micro bool) limit {
	if micro {
		return r.redis
	}
	return r.memory
}
