package sechard

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/sechard/sechard/internal/ratelimit"
)

// rateLimitPool holds memory stores across config reloads, keyed by what
// their budgets mean.
var rateLimitPool = caddy.NewUsagePool()

// The pool destructs a memory store (stopping its sweeper) when the last
// config using it is cleaned up.
var _ caddy.Destructor = (*ratelimit.MemoryStore)(nil)

type compiledRoute struct {
	match caddyhttp.MatchPath
	tag   string // the route's budget tag: its index
	limit *compiledLimit
}

// compiledLimit is one RateSpec ready for the request path.
type compiledLimit struct {
	name        string // the configured name: a route's pattern, "default", "total" or "identity"
	quotedName  string // name as a structured-field String, quotes included
	policy      string // its RateLimit-Policy member: `"name";q=N;w=W`
	rate        *ratelimit.Rate
	identityTag string // identity lines: the line's budget tag, a digest of its limit
}

// spending is the budgets one step of a request spends (at most two), with
// the limits they stand for. It lives on the stack of the step.
type spending struct {
	budgets [2]ratelimit.Budget
	limits  [2]*compiledLimit
	n       int
}

func (s *spending) add(kind ratelimit.Kind, tag string, l *compiledLimit) {
	s.budgets[s.n] = ratelimit.Budget{Kind: kind, Tag: tag, Rate: l.rate}
	s.limits[s.n] = l
	s.n++
}

// spent is the budgets for the store.
func (s *spending) spent() []ratelimit.Budget { return s.budgets[:s.n] }

func (c *RateLimit) provision(env *provisionEnv) error {
	if c == nil {
		return nil
	}
	c.logger = env.logger.Named("rate_limit")
	c.now = env.now
	c.metrics = env.metrics
	if err := c.compile(env.Context); err != nil {
		return err
	}
	addressed := c.Rate != nil || c.Total != nil || len(c.Routes) > 0
	if c.keyHasClientIP && addressed {
		if srv, ok := env.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
			c.warnIfSpoofable(srv)
		} else {
			c.proxyCheck = new(atomic.Bool)
			c.proxyCheck.Store(true)
		}
	}

	// State is shared across reloads by everything that determines what a
	// budget means: the key template and the limits. Changing any of them
	// starts every budget afresh.
	ident, _ := json.Marshal(struct {
		Key        string
		IPv6Prefix int `json:",omitempty"` // omitted at the default: budgets survive the upgrade
		Rate       *RateSpec
		Routes     []RouteLimit
		Total      *RateSpec
		MaxKeys    int
	}{c.Key, c.ipv6Ident(), c.Rate, c.Routes, c.Total, c.MaxKeys})
	c.configDigest = shortDigest(string(ident))
	c.memoryPoolKey = "memory:" + string(ident)
	now := env.now
	v, _, err := rateLimitPool.LoadOrNew(c.memoryPoolKey, func() (caddy.Destructor, error) {
		return ratelimit.NewMemoryStore(c.MaxKeys, now, memorySweepInterval), nil
	})
	if err != nil {
		return err
	}
	c.memory = v.(*ratelimit.MemoryStore)
	c.untrackMemory = env.metrics.trackMemoryStore(c.memory)
	if len(c.Identities) > 0 {
		// Identity budgets live apart from the per-address ones, keyed by
		// identity and line, so that they outlive reloads changing other
		// lines.
		c.identityPoolKey = "memory:identities:" + strconv.Itoa(c.MaxKeys)
		v, _, err := rateLimitPool.LoadOrNew(c.identityPoolKey, func() (caddy.Destructor, error) {
			return ratelimit.NewMemoryStore(c.MaxKeys, now, memorySweepInterval), nil
		})
		if err != nil {
			c.cleanup()
			return err
		}
		c.identityMemory = v.(*ratelimit.MemoryStore)
		c.untrackIdentities = env.metrics.trackMemoryStore(c.identityMemory)
	}
	if c.Store == storeRedis {
		if err := c.provisionRedis(env); err != nil {
			c.cleanup()
			return err
		}
	}
	return nil
}

// compile applies the defaults, checks the config and prepares the limits
// for the request path. It reports every problem it finds.
func (c *RateLimit) compile(ctx caddy.Context) error {
	if c.Key == "" {
		c.Key = defaultRateLimitKey
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = caddy.Duration(defaultStoreTimeout)
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = defaultMaxKeys
	}
	if c.IPv6Prefix == 0 {
		c.IPv6Prefix = defaultIPv6Prefix
	}
	c.onStoreError = c.OnStoreError
	if c.onStoreError == "" {
		c.onStoreError = storeErrorLocal
	}
	store := c.Store
	if store == "" {
		store = storeMemory
	}
	errs := []error{
		checkStoreTimeout(c.StoreTimeout),
		checkMaxKeys(c.MaxKeys),
		checkIPv6Prefix(c.IPv6Prefix),
		checkOnStoreError(c.onStoreError),
		checkStore(store),
	}
	if c.Rate == nil && c.Total == nil && len(c.Routes) == 0 && len(c.Identities) == 0 {
		errs = append(errs, errors.New("rate_limit needs at least one of rate, route, total or identity"))
	}
	if ph, ok := singlePlaceholder(c.Key); ok {
		c.keyPlaceholder = ph
	}
	c.keyHasClientIP = keyUsesClientIP(c.Key)

	var err error
	if c.defaultLimit, err = compileLimit("default", c.Rate); err != nil {
		errs = append(errs, fmt.Errorf("rate: %w", err))
	}
	if c.total, err = compileLimit("total", c.Total); err != nil {
		errs = append(errs, fmt.Errorf("total: %w", err))
	}
	c.routes = make([]compiledRoute, len(c.Routes))
	for i, rl := range c.Routes {
		if rl.Path == "" {
			errs = append(errs, fmt.Errorf("route %d: empty path pattern", i))
			continue
		}
		spec := rl.RateSpec
		lim, err := compileLimit(rl.Path, &spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("route %s: %w", rl.Path, err))
			continue
		}
		m := caddyhttp.MatchPath{rl.Path}
		if err := m.Provision(ctx); err != nil {
			errs = append(errs, fmt.Errorf("route %s: %w", rl.Path, err))
			continue
		}
		c.routes[i] = compiledRoute{match: m, tag: strconv.Itoa(i), limit: lim}
	}
	errs = append(errs, c.compileIdentities())
	return errors.Join(errs...)
}

// compileIdentities prepares the identity lines.
func (c *RateLimit) compileIdentities() error {
	c.identityLimits, c.anyIdentity = nil, nil
	if err := checkIdentities(c.Identities); err != nil {
		return err
	}
	var errs []error
	for _, il := range c.Identities {
		spec := il.RateSpec
		lim, err := compileLimit(identityPolicy, &spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("identity %s: %w", il.Identity, err))
			continue
		}
		lim.identityTag = shortDigest(fmt.Sprintf("%d/%d/%d", spec.Events, int64(spec.Window), spec.burst()))
		if il.Identity == identityAny {
			c.anyIdentity = lim
			continue
		}
		if c.identityLimits == nil {
			c.identityLimits = make(map[string]*compiledLimit)
		}
		c.identityLimits[il.Identity] = lim
	}
	return errors.Join(errs...)
}

// hasIdentities reports whether c has identity lines.
func (c *RateLimit) hasIdentities() bool { return c != nil && len(c.Identities) > 0 }

// compileLimit checks spec and prepares it; a nil spec is no limit.
func compileLimit(name string, spec *RateSpec) (*compiledLimit, error) {
	if spec == nil {
		return nil, nil
	}
	if err := spec.check(); err != nil {
		return nil, err
	}
	rate, err := ratelimit.NewRate(spec.Events, time.Duration(spec.Window), spec.burst())
	if err != nil {
		return nil, err
	}
	quoted, policy, err := policyFields(name, spec)
	if err != nil {
		return nil, err
	}
	return &compiledLimit{name: name, quotedName: quoted, policy: policy, rate: rate}, nil
}

func (c *RateLimit) cleanup() error {
	if c == nil {
		return nil
	}
	var errs []error
	if c.untrackMemory != nil {
		c.untrackMemory()
		c.untrackMemory = nil
	}
	if c.untrackIdentities != nil {
		c.untrackIdentities()
		c.untrackIdentities = nil
	}
	if c.memory != nil {
		_, err := rateLimitPool.Delete(c.memoryPoolKey)
		errs = append(errs, err)
		c.memory = nil
	}
	if c.identityMemory != nil {
		_, err := rateLimitPool.Delete(c.identityPoolKey)
		errs = append(errs, err)
		c.identityMemory = nil
	}
	if c.redisClient != nil {
		_, err := redisClients.Delete(c.redisPoolKey)
		errs = append(errs, err)
		c.redis, c.redisClient = nil, nil
	}
	return errors.Join(errs...)
}

func (c *RateLimit) mode() string {
	if c == nil {
		return ""
	}
	return c.Mode
}

// budgets adds to sp the budgets r spends: its route's (or its path's
// under the default rate) and total's.
func (c *RateLimit) budgets(r *http.Request, sp *spending) {
	matched := false
	for i := range c.routes {
		rt := &c.routes[i]
		if rt.match.Match(r) {
			sp.add(ratelimit.KindRoute, rt.tag, rt.limit)
			matched = true
			break
		}
	}
	if !matched && c.defaultLimit != nil {
		p := r.URL.Path
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		sp.add(ratelimit.KindPath, path.Clean(p), c.defaultLimit)
	}
	if c.total != nil {
		sp.add(ratelimit.KindTotal, "", c.total)
	}
}

func (c *RateLimit) decide(ex *exchange) decision {
	if c == nil {
		return allow
	}
	var sp spending
	c.budgets(ex.r, &sp)
	if sp.n == 0 {
		return allow
	}
	if c.proxyCheck != nil && c.proxyCheck.Load() && c.proxyCheck.CompareAndSwap(true, false) {
		if srv, ok := ex.r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
			c.warnIfSpoofable(srv)
		}
	}
	ok, d := c.spend(ex, c.memory, c.clientKey(ex), &sp)
	if d != nil {
		return *d
	}
	if c.Mode != modeReport {
		hdr, rl := ex.w.Header(), &ex.scratch().rl
		b := rl.policy.extend(hdr, rateLimitPolicyHeader, true)
		rl.policy.set(hdr, rateLimitPolicyHeader, appendPolicies(b, &sp))
		b = rl.value.extend(hdr, rateLimitHeader, true)
		rl.value.set(hdr, rateLimitHeader, appendRateLimitItems(b, &sp))
	}
	if ok {
		return allow
	}
	return c.refusal(ex, &sp, "over the "+refusedBy(&sp)+" limit")
}

// decideIdentity spends the budget of the identity auth accepted, if an
// identity line covers it: step 7 of the order of work, after auth. A
// request auth refused or let through without an identity (a `public`
// path) has no identity and spends nothing. Its policy joins the route
// and total policies already in the RateLimit and RateLimit-Policy fields.
func (c *RateLimit) decideIdentity(ex *exchange) decision {
	if c == nil || ex.identity == "" {
		return allow
	}
	lim := c.identityLimits[ex.identity]
	if lim == nil {
		if lim = c.anyIdentity; lim == nil {
			return allow
		}
	}
	var sp spending
	sp.add(ratelimit.KindIdentity, lim.identityTag, lim)
	ok, d := c.spend(ex, c.identityMemory, ex.identity, &sp)
	if d != nil {
		return *d
	}
	if c.Mode != modeReport {
		// Joins the per-address step's values (RFC 9651 lists).
		hdr, rl := ex.w.Header(), &ex.scratch().rl
		b := rl.policy.extend(hdr, rateLimitPolicyHeader, false)
		rl.policy.set(hdr, rateLimitPolicyHeader, append(b, lim.policy...))
		b = rl.value.extend(hdr, rateLimitHeader, false)
		rl.value.set(hdr, rateLimitHeader, appendRateLimitItems(b, &sp))
	}
	if ok {
		return allow
	}
	return c.refusal(ex, &sp, "over the identity limit of "+strconv.Quote(ex.identity))
}

// spend takes one request from every budget of sp for client: from Redis
// when the store is redis, else from local, the memory store of these
// budgets (identity budgets are kept apart). d, when not nil, is the
// decision to return as is: Redis could not decide, and on_store_error is
// allow or deny; with local, local decides instead.
//
// The stores are called by their concrete types rather than through
// ratelimit.Store: through an interface, sp's budgets would escape to the
// heap on every request.
func (c *RateLimit) spend(ex *exchange, local *ratelimit.MemoryStore, client string, sp *spending) (ok bool, d *decision) {
	now := c.now()
	if c.redis == nil {
		ok, _ = local.Take(now, client, sp.spent()) // never fails
		return ok, nil
	}
	ok, err := c.redis.Take(now, client, sp.spent())
	if err == nil {
		return ok, nil
	}
	// Redis did not decide: it failed, timed out, or its breaker is open.
	if c.storeErrors != nil {
		c.storeErrors.Inc()
	}
	switch c.onStoreError {
	case storeErrorAllow:
		return true, &allow
	case storeErrorDeny:
		return false, &decision{
			Status: http.StatusTooManyRequests,
			Reason: rateStoreDownReason,
			Detail: "rate-limit store unavailable",
			Header: http.Header{rateLimitRetryAfterHead: []string{"1"}},
			Event:  eventRateLimited, EventValue: refusedBy(sp),
		}
	}
	ok, _ = local.Take(now, client, sp.spent())
	return ok, nil
}

// refusal is the 429 for a request some budget of sp refused.
func (c *RateLimit) refusal(ex *exchange, sp *spending, detail string) decision {
	var retry time.Duration
	for _, b := range sp.spent() {
		if !b.Result.Allowed && b.Result.RetryAfter > retry {
			retry = b.Result.RetryAfter
		}
	}
	return decision{
		Status: http.StatusTooManyRequests,
		Reason: rateLimitedReason,
		Detail: detail,
		Header: http.Header{rateLimitRetryAfterHead: []string{strconv.FormatInt(max(ceilSeconds(int64(retry)), 1), 10)}},
		Event:  eventRateLimited, EventValue: refusedBy(sp),
	}
}

// refusedBy names the first budget of sp that refused.
func refusedBy(sp *spending) string {
	for i, b := range sp.spent() {
		if !b.Result.Allowed {
			return sp.limits[i].name
		}
	}
	return ""
}

// shortDigest returns a short, stable hex digest of s.
func shortDigest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

func (c *RateLimit) name() string { return "rate_limit" }

func (c *RateLimit) reasons() []string { return []string{rateLimitedReason, rateStoreDownReason} }
