package sechard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/sechard/sechard/internal/redisconn"
)

// gcraScript decides one request against one or two budgets in a single
// round trip, with Redis's own clock (so instances with skewed clocks
// agree), with the same arithmetic as gcraLimit.check in microseconds.
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

var gcraScript = redis.NewScript(gcraLua)

// redisBackoff is how long the store is left alone after it failed, before
// one request probes it again.
const redisBackoff = time.Second

// redisStore keeps budgets in Redis, shared by every instance using it. It
// never retries on the request path: a decision that fails or takes longer
// than the store timeout opens a circuit breaker, and for the next second
// requests are decided by onErr without asking Redis.
type redisStore struct {
	client    redis.UniversalClient
	redacted  string // the URL without its password, for logs
	topology  string // "" (one server), "cluster" or "sentinel"
	timeout   time.Duration
	prefix    string // "sechard:rl:<config digest>:"
	onErr     string
	logger    *zap.Logger
	breaker   breaker
	storeErrs prometheus.Counter // sechard_ratelimit_store_errors_total{store="redis"}; nil without metrics
}

// redisConfig is the store's Redis line.
func (c *RateLimit) redisConfig() redisconn.Config {
	return redisconn.Config{Topology: c.RedisTopology, URL: c.RedisURL, PasswordSecret: c.RedisPasswordSecret,
		Username: c.RedisUsername, TLSCA: c.RedisTLSCA}
}

func (c *RateLimit) setRedisConfig(rc redisconn.Config) {
	c.RedisTopology, c.RedisURL, c.RedisPasswordSecret = rc.Topology, rc.URL, rc.PasswordSecret
	c.RedisUsername, c.RedisTLSCA = rc.Username, rc.TLSCA
}

// requiredSecrets names the secrets the rate-limit config needs.
func (c *RateLimit) requiredSecrets() []string {
	if c == nil || c.Store != storeRedis {
		return nil
	}
	return c.redisConfig().RequiredSecrets()
}

func (c *RateLimit) provisionRedis(env *provisionEnv) error {
	if c.RedisURL == "" {
		return errors.New("store redis needs a URL")
	}
	timeout := time.Duration(c.StoreTimeout)
	client, key, err := openRedis(env.Context, c.redisConfig(), redisconn.Params{Timeout: timeout, PoolSize: 64, MinIdle: 2}, env.secrets)
	if err != nil {
		return fmt.Errorf("store %w", err)
	}
	c.redisKey = key
	c.redis = &redisStore{
		client:    client,
		redacted:  redisconn.RedactURL(c.RedisURL),
		topology:  c.RedisTopology,
		timeout:   timeout,
		prefix:    "sechard:rl:" + c.cfgDigest + ":",
		onErr:     c.onErr,
		logger:    c.logger,
		storeErrs: env.metrics.storeErrors(storeRedis),
	}
	c.logger.Info("rate limits shared through redis",
		zap.String("store", c.redis.redacted), zap.String("topology", c.redis.topologyName()),
		zap.String("on_store_error", c.onErr), zap.Duration("store_timeout", timeout))
	return nil
}

// topologyName names the topology in logs.
func (s *redisStore) topologyName() string {
	if s.topology == "" {
		return "server"
	}
	return s.topology
}

// take decides a request through Redis. It returns a decision to use as is
// when Redis could not decide and onErr says what to do instead; otherwise
// nil, with bs filled in as the memory store would.
func (s *redisStore) take(c *RateLimit, requestID string, now time.Time, client string, bs []budget) (bool, *decision) {
	nowNs := now.UnixNano()
	if s.breaker.allow(nowNs) {
		ok, err := s.eval(client, bs)
		if err == nil {
			if s.breaker.success(time.Now().UnixNano()) {
				s.logger.Warn("rate-limit store available again; limits are shared again",
					zap.String("store", s.redacted), zap.String("request_id", requestID))
			}
			return ok, nil
		}
		redisconn.Failed(s.client)
		if s.breaker.failure(nowNs, redisBackoff) {
			fields := []zap.Field{zap.String("store", s.redacted), zap.String("topology", s.topologyName()),
				zap.String("on_store_error", s.onErr), zap.Error(err), zap.String("request_id", requestID)}
			if h := redisconn.ErrorHint(err); h != "" {
				fields = append(fields, zap.String("hint", h))
			}
			s.logger.Error("rate-limit store unavailable; deciding without it until it answers again", fields...)
		}
	}
	// Redis did not answer this decision: it failed, timed out, or the
	// breaker is open.
	if s.storeErrs != nil {
		s.storeErrs.Inc()
	}
	switch s.onErr {
	case storeErrorAllow:
		return true, &allow
	case storeErrorDeny:
		return false, &decision{
			Status: http.StatusTooManyRequests,
			Reason: rateStoreDownReason,
			Detail: "rate-limit store unavailable",
			Header: http.Header{rateLimitRetryAfterHead: []string{"1"}},
		}
	}
	return c.localStore(bs).take(nowNs, client, bs), nil
}

// eval runs the GCRA script for bs.
func (s *redisStore) eval(client string, bs []budget) (bool, error) {
	// Not the request's context: a client hanging up must not count as a
	// Redis failure.
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	cd := sha256.Sum256([]byte(client))
	tag := "{" + hex.EncodeToString(cd[:12]) + "}:"
	keys := make([]string, len(bs))
	args := make([]any, 0, 2*len(bs))
	for i := range bs {
		keys[i] = s.keyPrefix(bs) + tag + string(bs[i].kind) + budgetTag(&bs[i])
		args = append(args, bs[i].limit.red.interval, bs[i].limit.red.tolerance)
	}
	vals, err := gcraScript.Run(ctx, s.client, keys, args...).Int64Slice()
	if err != nil {
		return false, err
	}
	if len(vals) != 4 {
		return false, fmt.Errorf("unexpected script reply %v", vals)
	}
	ok := evaluate(bs, vals[2:2+len(bs)], vals[1], true)
	if ok != (vals[0] == 1) {
		return false, fmt.Errorf("script and evaluation disagree (%v)", vals)
	}
	for i := range bs {
		bs[i].res.resetAfter *= int64(time.Microsecond)
		bs[i].res.retryAfter *= int64(time.Microsecond)
	}
	return ok, nil
}

// budgetTag is the budget's part of a Redis key: a route's index, or a
// digest of the cleaned path (bounded, whatever its length).
func budgetTag(b *budget) string {
	if b.kind != 'p' {
		return b.tag
	}
	d := sha256.Sum256([]byte(b.tag))
	return hex.EncodeToString(d[:12])
}

// shortDigest returns a short, stable hex digest of s.
func shortDigest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

// breaker is a circuit breaker: closed (ask the store) until a failure,
// then open (don't) for a back-off, then half-open: one caller probes while
// the others stay on the fallback for another back-off.
//
// An outage is logged once: it ends only when the store has answered
// without a failure for redisSettle. Part of a Redis Cluster down (one
// master lost until its replica takes over) fails some decisions and not
// others; without the settling time every probe that happened to reach a
// live master would end the outage and the next failure start another.
type breaker struct {
	openUntil atomic.Int64 // Unix ns; 0 when closed
	down      atomic.Bool  // an outage is in progress (logged once)
	upSince   atomic.Int64 // during an outage: first success since the last failure (Unix ns; 0: none)
}

// redisSettle is how long the store must answer without failing before an
// outage is over (and logged as over).
const redisSettle = time.Second

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
