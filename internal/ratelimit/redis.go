package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// gcraLua decides one request against one or two budgets in a single round
// trip, with Redis's own clock (so instances with skewed clocks agree),
// with the same arithmetic as limit.check in microseconds.
//
// KEYS: the budgets' keys (one or two; with two, they share the client's
// hash tag, so Redis Cluster places them together).
// ARGV: for each key, its emission interval T and tolerance B·T in µs.
// Returns {admitted (1|0), now, TAT of key 1, TAT of key 2} in µs; a TAT of
// 0 is a key not held. Only an admitted request writes, and each key expires
// when its budget is full again.
const gcraLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {0, 0}
local ok = 1
for i = 1, #KEYS do
	local tat = tonumber(redis.call('GET', KEYS[i])) or 0
	tats[i] = tat
	if math.max(tat, now) + tonumber(ARGV[2*i-1]) - now > tonumber(ARGV[2*i]) then
		ok = 0
	end
end
if ok == 1 then
	for i = 1, #KEYS do
		local new = math.max(tats[i], now) + tonumber(ARGV[2*i-1])
		redis.call('SET', KEYS[i], string.format('%d', new), 'PX', math.ceil((new - now) / 1000))
	end
end
return {ok, now, tats[1], tats[2]}
`

// GCRAScript is the Lua script RedisStore runs, for tools and benchmarks
// that run it directly (with Rate.ScriptArgs). It must not be modified.
var GCRAScript = redis.NewScript(gcraLua)

// Key layout. Budgets kept in Redis outlive the process that wrote them, so
// these must not change: per-address budgets live under keyPrefix +
// namespace + ":", identity budgets under identityKeyPrefix, and then
// "{<24 hex digits of SHA-256(client)>}:" + kind + tag.
const (
	keyPrefix         = "sechard:rl:"
	identityKeyPrefix = "sechard:rl:id:"
)

// ErrBreakerOpen is the error of a decision the RedisStore did not ask
// Redis for: an earlier one failed less than a back-off ago.
var ErrBreakerOpen = errors.New("rate-limit store skipped: its circuit breaker is open after a failure")

// Back-off and settling times of the circuit breaker.
const (
	// redisBackoff is how long the store is left alone after it failed,
	// before one request probes it again.
	redisBackoff = time.Second
	// redisSettle is how long the store must answer without failing before
	// an outage is over (and reported as over).
	redisSettle = time.Second
)

// RedisOptions configures a RedisStore.
type RedisOptions struct {
	// Namespace names the configuration the per-address budgets belong to
	// (a digest of the limits): a changed configuration starts afresh.
	// Identity budgets do not depend on it.
	Namespace string

	// Timeout is the deadline of one decision; it is never retried.
	Timeout time.Duration

	// OnFailure, when set, is called after each decision Redis failed
	// (not those skipped while the breaker is open), on the caller's
	// goroutine; outageBegan is true for exactly one failure per outage.
	OnFailure func(err error, outageBegan bool)

	// OnRecovery, when set, is called once when an outage ends: Redis has
	// answered without a failure for a second.
	OnRecovery func()
}

// RedisStore keeps budgets in Redis, shared by every instance using it. Each
// decision is one EVALSHA of GCRAScript, timed by Redis's clock. It never
// retries: a decision that fails or takes longer than the timeout opens a
// circuit breaker, and for the next second Take returns ErrBreakerOpen
// without asking Redis; then one call probes Redis while the others keep
// getting ErrBreakerOpen. It is safe for concurrent use.
type RedisStore struct {
	client  redis.UniversalClient
	opts    RedisOptions
	prefix  string // keyPrefix + namespace + ":"
	breaker breaker
}

// NewRedisStore returns a store keeping budgets through client, which the
// caller owns (and closes).
func NewRedisStore(client redis.UniversalClient, opts RedisOptions) *RedisStore {
	return &RedisStore{client: client, opts: opts, prefix: keyPrefix + opts.Namespace + ":"}
}

// Take implements Store. It returns an error when Redis failed, did not
// answer within the timeout, or was not asked because the breaker is open
// (ErrBreakerOpen).
func (s *RedisStore) Take(now time.Time, client string, budgets []Budget) (bool, error) {
	nowNs := now.UnixNano()
	if !s.breaker.allow(nowNs) {
		return false, ErrBreakerOpen
	}
	ok, err := s.eval(client, budgets)
	if err != nil {
		began := s.breaker.failure(nowNs, redisBackoff)
		if s.opts.OnFailure != nil {
			s.opts.OnFailure(err, began)
		}
		return false, err
	}
	if s.breaker.success(time.Now().UnixNano()) && s.opts.OnRecovery != nil {
		s.opts.OnRecovery()
	}
	return ok, nil
}

// eval runs the GCRA script for budgets.
func (s *RedisStore) eval(client string, budgets []Budget) (bool, error) {
	// Not the request's context: a client hanging up must not count as a
	// Redis failure.
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	cd := sha256.Sum256([]byte(client))
	var clientTag [24]byte
	hex.Encode(clientTag[:], cd[:12])
	keys := make([]string, len(budgets))
	args := make([]any, 0, 2*len(budgets))
	for i := range budgets {
		keys[i] = s.key(&clientTag, &budgets[i])
		args = append(args, budgets[i].Rate.redis.interval, budgets[i].Rate.redis.tolerance)
	}
	vals, err := GCRAScript.Run(ctx, s.client, keys, args...).Int64Slice()
	if err != nil {
		return false, err
	}
	if len(vals) != 4 {
		return false, fmt.Errorf("unexpected script reply %v", vals)
	}
	ok, _ := evaluate(budgets, vals[2:2+len(budgets)], vals[1], true)
	if ok != (vals[0] == 1) {
		for i := range budgets {
			budgets[i].Result = Result{}
		}
		return false, fmt.Errorf("script and evaluation disagree (%v)", vals)
	}
	return ok, nil
}

// key is where b lives in Redis for the client whose digest is clientTag
// (see the key layout). Every key of one client shares its hash tag, so
// Redis Cluster keeps a request's budgets on one node, and a key's length
// is bounded whatever the client and path.
func (s *RedisStore) key(clientTag *[24]byte, b *Budget) string {
	prefix := s.prefix
	if b.Kind == KindIdentity {
		// Independent of the per-address configuration, so an unchanged
		// identity line keeps its budgets across reloads that change
		// other lines.
		prefix = identityKeyPrefix
	}
	tag := b.Tag
	if b.Kind == KindPath {
		d := sha256.Sum256([]byte(b.Tag))
		tag = hex.EncodeToString(d[:12])
	}
	return prefix + "{" + string(clientTag[:]) + "}:" + string(byte(b.Kind)) + tag
}

// breaker is a circuit breaker: closed (ask the store) until a failure,
// then open (don't) for a back-off, then half-open: one caller probes while
// the others stay on the fallback for another back-off.
//
// An outage is reported once: it ends only when the store has answered
// without a failure for redisSettle. Part of a Redis Cluster down (one
// master lost until its replica takes over) fails some decisions and not
// others; without the settling time every probe that happened to reach a
// live master would end the outage and the next failure start another.
type breaker struct {
	openUntil atomic.Int64 // Unix ns; 0 when closed
	down      atomic.Bool  // an outage is in progress (reported once)
	upSince   atomic.Int64 // during an outage: first success since the last failure (Unix ns; 0: none)
}

// allow reports whether to ask the store now.
func (b *breaker) allow(now int64) bool {
	u := b.openUntil.Load()
	if u == 0 {
		return true
	}
	if now < u {
		return false
	}
	return b.openUntil.CompareAndSwap(u, now+int64(redisBackoff))
}

// failure opens the breaker; it reports whether an outage starts now.
func (b *breaker) failure(now int64, backoff time.Duration) bool {
	b.openUntil.Store(now + int64(backoff))
	b.upSince.Store(0)
	return b.down.CompareAndSwap(false, true)
}

// success closes the breaker; it reports whether an outage ends now.
func (b *breaker) success(now int64) bool {
	if b.openUntil.Load() != 0 {
		b.openUntil.Store(0)
	}
	// Load first: the common case (no outage) then writes nothing.
	if !b.down.Load() {
		return false
	}
	since := b.upSince.Load()
	if since == 0 {
		b.upSince.CompareAndSwap(0, now)
		return false
	}
	return now-since >= int64(redisSettle) && b.down.CompareAndSwap(true, false)
}
