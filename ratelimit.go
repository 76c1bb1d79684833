package sechard

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"path"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// RateLimit limits request rates per client and route (SEC-09).
//
// Requests are counted per (client key, route). The route of a request is
// the first `routes` entry whose path pattern matches it; a request matched
// by none is counted per cleaned path (path.Clean, no query) under the
// default `rate`. `total`, when set, is one more budget per client that
// every request spends too, so a client cannot escape its limits by varying
// paths. A request is admitted only if every budget it spends admits it,
// and a refused request spends nothing.
//
// `identities` are budgets per authenticated identity, spent in a step of
// their own after auth has accepted the request (see IdentityLimit).
//
// Each limit is a GCRA (token bucket) of N requests per window with a burst:
// a client starts with `burst` requests available (default N), and gets one
// back every window/N. Responses carry `RateLimit-Policy` and `RateLimit`
// (draft-ietf-httpapi-ratelimit-headers-10); refusals are 429 with
// `Retry-After`.
type RateLimit struct {
	// Key is a placeholder template that identifies the client. Default:
	// `{http.vars.client_ip}` (the Caddyfile's `{client_ip}`), which
	// honours the server's `trusted_proxies`; behind a CDN, configure
	// `trusted_proxies` with `trusted_proxies_strict` rather than keying on
	// `{remote_host}`, or every user shares the CDN's budget. Without
	// strict, clients choose their own address (a warning is logged).
	Key string `json:"key,omitempty"`

	// IPv6Prefix is how many leading bits of an IPv6 client address name
	// the client when the key uses `{client_ip}`: every address in one
	// /IPv6Prefix network shares a budget, so a host holding a /64 cannot
	// mint budgets by cycling addresses. 1 to 128; 128 counts each address
	// on its own. IPv4 addresses (IPv4-mapped IPv6 included) always count
	// one each. Default: 64.
	IPv6Prefix int `json:"ipv6_prefix,omitempty"`

	// Rate is the default limit, applied per client to each distinct path
	// that no route matches. Without it, such paths are limited only by
	// Total.
	Rate *RateSpec `json:"rate,omitempty"`

	// Routes are path patterns with their own limit, checked in order; the
	// first match wins, and every path it matches shares one budget per
	// client. Patterns are those of Caddy's path matcher (`/exact`,
	// `/prefix/*`, `*.suffix`, `*substring*`), matched case-insensitively
	// on the cleaned path.
	Routes []RouteLimit `json:"routes,omitempty"`

	// Total is an optional per-client budget that every request spends in
	// addition to its route's, across all routes.
	Total *RateSpec `json:"total,omitempty"`

	// Identities are budgets per authenticated identity, spent after
	// `auth` has accepted a request (and so needing `auth`): one budget per
	// identity across all paths, whatever address it calls from. A request
	// auth refused, or one to a `public` path, spends none. They come on
	// top of the per-address budgets above, which are spent before auth.
	Identities []IdentityLimit `json:"identities,omitempty"`

	// Store is where budgets live: `memory` (default; this instance only)
	// or `redis` (shared by every instance using the same Redis).
	Store string `json:"store,omitempty"`

	// RedisTopology is how Redis is deployed when Store is `redis`: empty
	// for one server, `cluster` for Redis Cluster, `sentinel` for a primary
	// found through Redis Sentinel (failover followed automatically).
	RedisTopology string `json:"redis_topology,omitempty"`

	// RedisURL locates Redis when Store is `redis`. One server:
	// `redis://[user:pass@]host:port/db`, `rediss://…` for TLS, or
	// `unix:///path?db=N`. Cluster: `redis[s]://seed1:port?addr=seed2:port`
	// (more `addr=` seeds optional). Sentinel: `redis[s]://sentinel1:port?
	// master_name=NAME&addr=sentinel2:port`; there the URL's user and
	// password are the sentinels' own. Prefer RedisPasswordSecret to a
	// password in the URL, which would be visible in the JSON config.
	RedisURL string `json:"redis_url,omitempty"`

	// RedisPasswordSecret names a secret (resolved like every sechard
	// secret, and required) whose value is the Redis password (of the data
	// nodes, for Cluster and Sentinel). It overrides any password in
	// RedisURL.
	RedisPasswordSecret string `json:"redis_password_secret,omitempty"`

	// RedisUsername is the Redis ACL user to authenticate as (with the
	// password from RedisPasswordSecret). It overrides any user in
	// RedisURL (for Sentinel: the data nodes' user).
	RedisUsername string `json:"redis_username,omitempty"`

	// RedisTLSCA is a PEM file of the CA certificates that sign the Redis
	// servers' certificates, for a `rediss://` URL whose servers the
	// system's roots don't vouch for. A server not signed by them fails
	// the config load.
	RedisTLSCA string `json:"redis_tls_ca,omitempty"`

	// OnStoreError says what happens while Redis is unreachable or slower
	// than StoreTimeout: `local` (default) keeps limiting in this
	// instance's memory (the fleet-wide limit then grows with the number
	// of instances), `allow` admits every request, `deny` refuses every
	// request with 429.
	OnStoreError string `json:"on_store_error,omitempty"`

	// StoreTimeout is the deadline for one Redis decision; it is never
	// retried on the request path. Default: 50ms.
	StoreTimeout caddy.Duration `json:"store_timeout,omitempty"`

	// MaxKeys bounds the memory store: at most this many (client, route)
	// budgets are held; when full, the least recently used go first.
	// Default: 1000000.
	MaxKeys int `json:"max_keys,omitempty"`

	// Mode is `enforce` (default) or `report`: decide and log, never refuse
	// (and send no rate-limit headers).
	Mode string `json:"mode,omitempty"`

	routes    []compiledRoute
	deflt     *compiledLimit
	total     *compiledLimit
	idLimits  map[string]*compiledLimit // by identity; nil without named identity lines
	idStar    *compiledLimit            // the `*` line; nil without one
	idMem     *memoryStore              // identity budgets, kept by identity and line
	idMemKey  string
	keyPH     string // the key template when it is exactly one placeholder
	keyIP     bool   // the key template uses the client IP
	mem       *memoryStore
	memKey    string
	redis     *redisStore
	redisKey  string
	onErr     string
	logger    *zap.Logger
	now       func() time.Time
	cfgDigest string // identifies the limits in Redis keys
	metrics   *handlerMetrics
	untrack   func() // stops counting mem in sechard_ratelimit_memory_keys
	untrackID func() // likewise for idMem

	// proxyCheck, when provisioning could not see the server, is true until
	// the first request has checked its proxy settings.
	proxyCheck *atomic.Bool
}

// RateSpec is a limit: Events requests per Window, with a burst.
type RateSpec struct {
	// Events is the number of requests admitted per Window (N > 0).
	Events int `json:"events"`
	// Window is the period the Events are spread over (> 0).
	Window caddy.Duration `json:"window"`
	// Burst is how many requests a client with a full budget may make at
	// once (the bucket size, ≥ 1). Default: Events.
	Burst int `json:"burst,omitempty"`
}

// IdentityLimit is the budget of an authenticated identity.
type IdentityLimit struct {
	// Identity is the identity as `{http.auth.user.id}` shows it: a JWT's
	// `sub`, an API key's secret name, a client certificate's identity as
	// its `client_cert` line names it. `*` stands for every identity
	// without a line of its own, each with a budget of its own.
	Identity string `json:"identity"`
	RateSpec
}

// RouteLimit is a path pattern with its own limit.
type RouteLimit struct {
	// Path is a path pattern, as in Caddy's path matcher.
	Path string `json:"path"`
	RateSpec
}

type compiledRoute struct {
	match caddyhttp.MatchPath
	tag   string // the route's budget id: its index
	limit *compiledLimit
}

// compiledLimit is one RateSpec ready for the request path.
type compiledLimit struct {
	name   string    // the policy's name in headers, an sf-string body
	mem    gcraLimit // in nanoseconds
	red    gcraLimit // in microseconds
	policy string    // `"name";q=N;w=W`
	idTag  string    // identity lines: the line's budget id, a digest of its limit
}

// budget is one limit a request spends, identified by kind and tag within
// the client: 'r' + route index, 'p' + cleaned path, 't' for total; or,
// with the identity as the client, 'i' + a digest of the identity line's
// limit (so a line that is unchanged keeps its budgets whatever else
// changes, and a changed one starts afresh).
type budget struct {
	kind  byte
	tag   string
	limit *compiledLimit
	res   gcraResult // in nanoseconds
}

// Defaults.
const (
	clientIPPlaceholder     = "http.vars.client_ip"
	defaultRateLimitKey     = "{" + clientIPPlaceholder + "}"
	defaultStoreTimeout     = 50 * time.Millisecond
	defaultMaxKeys          = 1_000_000
	defaultIPv6Prefix       = 64
	maxSFInteger            = 999_999_999_999_999 // RFC 9651 §3.3.1
	memorySweepInterval     = 30 * time.Second
	storeErrorLocal         = "local"
	storeErrorAllow         = "allow"
	storeErrorDeny          = "deny"
	storeMemory             = "memory"
	storeRedis              = "redis"
	rateLimitedReason       = "rate_limited"
	rateStoreDownReason     = "rate_limit_store_unavailable"
	rateLimitHeader         = "Ratelimit"        // RateLimit, in canonical form for direct map use
	rateLimitPolicyHeader   = "Ratelimit-Policy" // RateLimit-Policy, likewise
	rateLimitRetryAfterHead = "Retry-After"
	identityPolicy          = "identity" // the identity budgets' policy name
	identityAny             = "*"
	kindIdentity            = 'i'
	redisIdentityPrefix     = "sechard:rl:id:" // identity budgets: independent of the per-address config
)

// rateLimitPool holds memory stores and Redis clients across config
// reloads, keyed by their configuration.
var rateLimitPool = caddy.NewUsagePool()

func (c *RateLimit) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "key":
			if !d.NextArg() {
				return d.ArgErr()
			}
			c.Key = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "ipv6_prefix":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 1 || n > 128 {
				return d.Errf("ipv6_prefix must be an integer from 1 to 128, got %q", d.Val())
			}
			c.IPv6Prefix = n
			if d.NextArg() {
				return d.ArgErr()
			}
		case "rate", "total":
			which := d.Val()
			spec, err := parseRateSpec(d, d.RemainingArgs())
			if err != nil {
				return err
			}
			if which == "rate" {
				c.Rate = spec
			} else {
				c.Total = spec
			}
		case "route":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.ArgErr()
			}
			if !strings.HasPrefix(args[0], "/") && !strings.HasPrefix(args[0], "*") {
				return d.Errf("route path pattern must start with / or *: %q", args[0])
			}
			spec, err := parseRateSpec(d, args[1:])
			if err != nil {
				return err
			}
			c.Routes = append(c.Routes, RouteLimit{Path: args[0], RateSpec: *spec})
		case "identity":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.ArgErr()
			}
			spec, err := parseRateSpec(d, args[1:])
			if err != nil {
				return err
			}
			for _, il := range c.Identities {
				if il.Identity == args[0] {
					return d.Errf("identity %q has two lines", args[0])
				}
			}
			c.Identities = append(c.Identities, IdentityLimit{Identity: args[0], RateSpec: *spec})
		case "store":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			switch args[0] {
			case storeMemory:
				if len(args) != 1 {
					return d.ArgErr()
				}
			case storeRedis:
				rc, err := parseRedisArgs(d, "store redis", args[1:])
				if err != nil {
					return err
				}
				c.setRedisConfig(rc)
			default:
				return d.Errf("unknown rate_limit store %q (want memory or redis)", args[0])
			}
			c.Store = args[0]
		case "on_store_error":
			if !d.NextArg() {
				return d.ArgErr()
			}
			switch v := d.Val(); v {
			case storeErrorLocal, storeErrorAllow, storeErrorDeny:
				c.OnStoreError = v
			default:
				return d.Errf("on_store_error must be local, allow or deny, got %q", v)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "store_timeout":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return d.Errf("store_timeout must be a positive duration, got %q", d.Val())
			}
			c.StoreTimeout = caddy.Duration(dur)
			if d.NextArg() {
				return d.ArgErr()
			}
		case "max_keys":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return d.Errf("max_keys must be a positive integer, got %q", d.Val())
			}
			c.MaxKeys = n
			if d.NextArg() {
				return d.ArgErr()
			}
		case "mode":
			var err error
			if c.Mode, err = parseMode(d, "rate_limit"); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized rate_limit option %q", d.Val())
		}
	}
	return nil
}

// parseRateSpec parses `<N>/<duration> [burst <B>]`.
func parseRateSpec(d *caddyfile.Dispenser, args []string) (*RateSpec, error) {
	if len(args) != 1 && len(args) != 3 {
		return nil, d.Errf("usage: <N>/<duration> [burst <B>]")
	}
	n, per, ok := strings.Cut(args[0], "/")
	if !ok {
		return nil, d.Errf("rate must be <N>/<duration>, got %q", args[0])
	}
	events, err := strconv.Atoi(n)
	if err != nil || events <= 0 {
		return nil, d.Errf("rate count must be a positive integer, got %q", n)
	}
	window, err := caddy.ParseDuration(per)
	if err != nil || window <= 0 {
		return nil, d.Errf("rate window must be a positive duration, got %q", per)
	}
	spec := &RateSpec{Events: events, Window: caddy.Duration(window)}
	if len(args) == 3 {
		if args[1] != "burst" {
			return nil, d.Errf("expected burst, got %q", args[1])
		}
		b, err := strconv.Atoi(args[2])
		if err != nil || b < 1 {
			return nil, d.Errf("burst must be an integer ≥ 1, got %q", args[2])
		}
		spec.Burst = b
	}
	return spec, nil
}

func (c *RateLimit) provision(env *provisionEnv) error {
	if c == nil {
		return nil
	}
	c.logger = env.logger.Named("rate_limit")
	c.now = env.now
	c.metrics = env.metrics
	if c.Key == "" {
		c.Key = defaultRateLimitKey
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = caddy.Duration(defaultStoreTimeout)
	}
	if c.StoreTimeout < 0 {
		return fmt.Errorf("store_timeout must be positive")
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = defaultMaxKeys
	}
	if c.IPv6Prefix == 0 {
		c.IPv6Prefix = defaultIPv6Prefix
	}
	if c.IPv6Prefix < 1 || c.IPv6Prefix > 128 {
		return fmt.Errorf("ipv6_prefix must be from 1 to 128, got %d", c.IPv6Prefix)
	}
	if c.MaxKeys < 0 {
		return fmt.Errorf("max_keys must be positive")
	}
	if c.Rate == nil && c.Total == nil && len(c.Routes) == 0 && len(c.Identities) == 0 {
		return fmt.Errorf("rate_limit needs at least one of rate, route, total or identity")
	}
	c.onErr = c.OnStoreError
	switch c.onErr {
	case "":
		c.onErr = storeErrorLocal
	case storeErrorLocal, storeErrorAllow, storeErrorDeny:
	default:
		return fmt.Errorf("on_store_error must be local, allow or deny, got %q", c.OnStoreError)
	}
	if ph, ok := singlePlaceholder(c.Key); ok {
		c.keyPH = ph
	}
	addressed := c.Rate != nil || c.Total != nil || len(c.Routes) > 0
	if c.keyIP = keyUsesClientIP(c.Key); c.keyIP && addressed {
		if srv, ok := env.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
			c.warnIfSpoofable(srv)
		} else {
			c.proxyCheck = new(atomic.Bool)
			c.proxyCheck.Store(true)
		}
	}

	var err error
	if c.deflt, err = compileLimit("default", c.Rate); err != nil {
		return fmt.Errorf("rate: %w", err)
	}
	if c.total, err = compileLimit("total", c.Total); err != nil {
		return fmt.Errorf("total: %w", err)
	}
	c.routes = make([]compiledRoute, len(c.Routes))
	for i, rl := range c.Routes {
		if rl.Path == "" {
			return fmt.Errorf("route %d: empty path pattern", i)
		}
		spec := rl.RateSpec
		lim, err := compileLimit(rl.Path, &spec)
		if err != nil {
			return fmt.Errorf("route %s: %w", rl.Path, err)
		}
		m := caddyhttp.MatchPath{rl.Path}
		if err := m.Provision(env.Context); err != nil {
			return fmt.Errorf("route %s: %w", rl.Path, err)
		}
		c.routes[i] = compiledRoute{match: m, tag: strconv.Itoa(i), limit: lim}
	}
	if err := c.compileIdentities(); err != nil {
		return err
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
	c.cfgDigest = shortDigest(string(ident))
	c.memKey = "memory:" + string(ident)
	now := env.now
	v, _, err := rateLimitPool.LoadOrNew(c.memKey, func() (caddy.Destructor, error) {
		return newMemoryStore(c.MaxKeys, now, memorySweepInterval), nil
	})
	if err != nil {
		return err
	}
	c.mem = v.(*memoryStore)
	c.untrack = env.metrics.trackMemoryStore(c.mem)
	if len(c.Identities) > 0 {
		// Identity budgets live apart from the per-address ones, keyed by
		// identity and line, so that they outlive reloads changing other
		// lines.
		c.idMemKey = "memory:identities:" + strconv.Itoa(c.MaxKeys)
		v, _, err := rateLimitPool.LoadOrNew(c.idMemKey, func() (caddy.Destructor, error) {
			return newMemoryStore(c.MaxKeys, now, memorySweepInterval), nil
		})
		if err != nil {
			c.cleanup()
			return err
		}
		c.idMem = v.(*memoryStore)
		c.untrackID = env.metrics.trackMemoryStore(c.idMem)
	}

	switch c.Store {
	case "", storeMemory:
	case storeRedis:
		if err := c.provisionRedis(env); err != nil {
			c.cleanup()
			return err
		}
	default:
		c.cleanup()
		return fmt.Errorf("unknown store %q (want memory or redis)", c.Store)
	}
	return nil
}

// compileIdentities prepares the identity lines.
func (c *RateLimit) compileIdentities() error {
	c.idLimits, c.idStar = nil, nil
	for _, il := range c.Identities {
		if il.Identity == "" {
			return fmt.Errorf("identity: empty name (use * for every identity)")
		}
		spec := il.RateSpec
		lim, err := compileLimit(identityPolicy, &spec)
		if err != nil {
			return fmt.Errorf("identity %s: %w", il.Identity, err)
		}
		burst := spec.Burst
		if burst == 0 {
			burst = spec.Events
		}
		lim.idTag = shortDigest(fmt.Sprintf("%d/%d/%d", spec.Events, int64(spec.Window), burst))
		if il.Identity == identityAny {
			if c.idStar != nil {
				return fmt.Errorf("identity *: two lines")
			}
			c.idStar = lim
			continue
		}
		if c.idLimits == nil {
			c.idLimits = make(map[string]*compiledLimit)
		}
		if c.idLimits[il.Identity] != nil {
			return fmt.Errorf("identity %s: two lines", il.Identity)
		}
		c.idLimits[il.Identity] = lim
	}
	return nil
}

// hasIdentities reports whether c has identity lines.
func (c *RateLimit) hasIdentities() bool { return c != nil && len(c.Identities) > 0 }

// compileLimit checks spec and prepares it; a nil spec is no limit.
func compileLimit(name string, spec *RateSpec) (*compiledLimit, error) {
	if spec == nil {
		return nil, nil
	}
	burst := spec.Burst
	if burst == 0 {
		burst = spec.Events
	}
	if spec.Events <= 0 {
		return nil, fmt.Errorf("events must be positive, got %d", spec.Events)
	}
	// q and r go out as structured-field integers, at most 15 digits.
	if spec.Events > maxSFInteger || burst > maxSFInteger {
		return nil, fmt.Errorf("events and burst must be at most %d", maxSFInteger)
	}
	if spec.Window <= 0 {
		return nil, fmt.Errorf("window must be positive, got %v", time.Duration(spec.Window))
	}
	if burst < 1 {
		return nil, fmt.Errorf("burst must be at least 1, got %d", spec.Burst)
	}
	mem, err := newGCRALimit(spec.Events, time.Duration(spec.Window), burst, time.Nanosecond)
	if err != nil {
		return nil, err
	}
	red, err := newGCRALimit(spec.Events, time.Duration(spec.Window), burst, time.Microsecond)
	if err != nil {
		return nil, err
	}
	l := &compiledLimit{name: sfStringBody(name), mem: mem, red: red}
	l.policy = `"` + l.name + `";q=` + strconv.Itoa(spec.Events) + ";w=" +
		strconv.FormatInt(ceilSeconds(int64(spec.Window)), 10)
	return l, nil
}

// sfStringBody is the policy name inside a structured-field string (RFC
// 9651 §3.3.3): policyName, with " and \ escaped.
func sfStringBody(s string) string {
	return sfEscaper.Replace(policyName(s))
}

var sfEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// singlePlaceholder reports whether tpl is exactly one placeholder, such as
// {http.vars.client_ip}, and returns its name.
func singlePlaceholder(tpl string) (string, bool) {
	if len(tpl) < 3 || tpl[0] != '{' || tpl[len(tpl)-1] != '}' {
		return "", false
	}
	inner := tpl[1 : len(tpl)-1]
	if strings.ContainsAny(inner, "{}\\") {
		return "", false
	}
	return inner, true
}

func (c *RateLimit) cleanup() error {
	if c == nil {
		return nil
	}
	var err error
	if c.untrack != nil {
		c.untrack()
		c.untrack = nil
	}
	if c.untrackID != nil {
		c.untrackID()
		c.untrackID = nil
	}
	if c.mem != nil {
		_, err = rateLimitPool.Delete(c.memKey)
		c.mem = nil
	}
	if c.idMem != nil {
		if _, e := rateLimitPool.Delete(c.idMemKey); e != nil && err == nil {
			err = e
		}
		c.idMem = nil
	}
	if c.redis != nil {
		if _, e := redisClients.Delete(c.redisKey); e != nil && err == nil {
			err = e
		}
		c.redis = nil
	}
	return err
}

func (c *RateLimit) mode() string {
	if c == nil {
		return ""
	}
	return c.Mode
}

// clientKey resolves the key template for this request, with the client
// IP as its client network (see clientNet).
func (c *RateLimit) clientKey(ex *exchange) string {
	if c.keyPH != "" {
		s, _ := ex.repl.GetString(c.keyPH)
		if c.keyPH == clientIPPlaceholder {
			return c.clientNet(s)
		}
		return s
	}
	if !c.keyIP {
		return ex.repl.ReplaceAll(c.Key, "")
	}
	s, _ := ex.repl.ReplaceFunc(c.Key, func(ph string, v any) (any, error) {
		if ph == clientIPPlaceholder {
			if ip, ok := v.(string); ok {
				return c.clientNet(ip), nil
			}
		}
		return v, nil
	})
	return s
}

// clientNet is the client an address stands for: an IPv6 address's
// /IPv6Prefix network, an IPv4 address itself. The common IPv4 case is
// returned as it is, without parsing or allocating.
func (c *RateLimit) clientNet(ip string) string {
	if strings.IndexByte(ip, ':') < 0 {
		return ip
	}
	a, err := netip.ParseAddr(ip)
	switch {
	case err != nil:
		return ip
	case a.Is4In6():
		return a.Unmap().String()
	}
	p, err := a.WithZone("").Prefix(c.IPv6Prefix)
	if err != nil {
		return ip
	}
	var buf [len("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")]byte
	return string(p.AppendTo(buf[:0])) // one allocation; p.String() makes two
}

// budgets returns the budgets r spends: its route's (or its path's under
// the default rate) and total's.
func (c *RateLimit) budgets(r *http.Request, bs *[2]budget) []budget {
	n := 0
	matched := false
	for i := range c.routes {
		rt := &c.routes[i]
		if rt.match.Match(r) {
			bs[n] = budget{kind: 'r', tag: rt.tag, limit: rt.limit}
			n++
			matched = true
			break
		}
	}
	if !matched && c.deflt != nil {
		p := r.URL.Path
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		bs[n] = budget{kind: 'p', tag: path.Clean(p), limit: c.deflt}
		n++
	}
	if c.total != nil {
		bs[n] = budget{kind: 't', limit: c.total}
		n++
	}
	return bs[:n]
}

func (c *RateLimit) decide(ex *exchange) decision {
	if c == nil {
		return allow
	}
	var arr [2]budget
	bs := c.budgets(ex.r, &arr)
	if len(bs) == 0 {
		return allow
	}
	if c.proxyCheck != nil && c.proxyCheck.Load() && c.proxyCheck.CompareAndSwap(true, false) {
		if srv, ok := ex.r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
			c.warnIfSpoofable(srv)
		}
	}
	ok, d := c.spend(ex, c.mem, c.clientKey(ex), bs)
	if d != nil {
		return *d
	}
	if c.Mode != modeReport {
		hdr := ex.w.Header()
		b := ex.rl.policy.extend(hdr, rateLimitPolicyHeader, true)
		ex.rl.policy.set(hdr, rateLimitPolicyHeader, appendPolicies(b, bs))
		b = ex.rl.value.extend(hdr, rateLimitHeader, true)
		ex.rl.value.set(hdr, rateLimitHeader, appendRateLimitItems(b, bs))
	}
	if ok {
		return allow
	}
	return c.refusal(ex, bs, "over the "+refusedBy(bs)+" limit")
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
	lim := c.idLimits[ex.identity]
	if lim == nil {
		if lim = c.idStar; lim == nil {
			return allow
		}
	}
	bs := [1]budget{{kind: kindIdentity, tag: lim.idTag, limit: lim}}
	ok, d := c.spend(ex, c.idMem, ex.identity, bs[:])
	if d != nil {
		return *d
	}
	if c.Mode != modeReport {
		// Joins the per-address step's values (RFC 9651 lists).
		hdr := ex.w.Header()
		b := ex.rl.policy.extend(hdr, rateLimitPolicyHeader, false)
		ex.rl.policy.set(hdr, rateLimitPolicyHeader, append(b, lim.policy...))
		b = ex.rl.value.extend(hdr, rateLimitHeader, false)
		ex.rl.value.set(hdr, rateLimitHeader, appendRateLimitItems(b, bs[:]))
	}
	if ok {
		return allow
	}
	return c.refusal(ex, bs[:], "over the identity limit of "+strconv.Quote(ex.identity))
}

// localStore is the memory store that holds bs (identity budgets are kept
// apart); on_store_error local decides there while Redis is away.
func (c *RateLimit) localStore(bs []budget) *memoryStore {
	if len(bs) > 0 && bs[0].kind == kindIdentity {
		return c.idMem
	}
	return c.mem
}

// spend takes one request from every budget in bs, for client, from Redis
// or mem. d, when not nil, is the decision to return as is: Redis could not
// decide, and on_store_error is allow or deny.
func (c *RateLimit) spend(ex *exchange, mem *memoryStore, client string, bs []budget) (ok bool, d *decision) {
	now := c.now()
	if c.redis != nil {
		if ok, d = c.redis.take(c, ex.requestID, now, client, bs); d != nil && d.Status != 0 {
			d.Event, d.EventValue = eventRateLimited, refusedBy(bs)
		}
		return ok, d
	}
	return mem.take(now.UnixNano(), client, bs), nil
}

// refusal is the 429 for a request some budget of bs refused.
func (c *RateLimit) refusal(ex *exchange, bs []budget, detail string) decision {
	var retry int64
	for i := range bs {
		if !bs[i].res.allowed && bs[i].res.retryAfter > retry {
			retry = bs[i].res.retryAfter
		}
	}
	return decision{
		Status: http.StatusTooManyRequests,
		Reason: rateLimitedReason,
		Detail: detail,
		Header: http.Header{rateLimitRetryAfterHead: []string{strconv.FormatInt(max(ceilSeconds(retry), 1), 10)}},
		Event:  eventRateLimited, EventValue: refusedBy(bs),
	}
}

// refusedBy names the first budget that refused.
func refusedBy(bs []budget) string {
	for i := range bs {
		if !bs[i].res.allowed {
			return bs[i].limit.name
		}
	}
	return ""
}

// policyHeader is the RateLimit-Policy field value for bs.
func policyHeader(bs []budget) string {
	if len(bs) == 1 {
		return bs[0].limit.policy
	}
	return string(appendPolicies(nil, bs))
}

// appendPolicies appends the RateLimit-Policy list members of bs to b.
func appendPolicies(b []byte, bs []budget) []byte {
	for i := range bs {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, bs[i].limit.policy...)
	}
	return b
}

// rateLimitValue is the RateLimit field value for bs: each policy's
// remaining requests and the seconds until its budget is full again.
func rateLimitValue(bs []budget) string {
	var buf [160]byte
	return string(appendRateLimitItems(buf[:0], bs))
}

// appendRateLimitItems appends the RateLimit list members of bs to b.
func appendRateLimitItems(b []byte, bs []budget) []byte {
	for i := range bs {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, '"')
		b = append(b, bs[i].limit.name...)
		b = append(b, `";r=`...)
		b = strconv.AppendInt(b, bs[i].res.remaining, 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, ceilSeconds(bs[i].res.resetAfter), 10)
	}
	return b
}

// ceilSeconds converts nanoseconds to whole seconds, rounding up.
func ceilSeconds(ns int64) int64 {
	if ns <= 0 {
		return 0
	}
	return (ns + int64(time.Second) - 1) / int64(time.Second)
}

// keyUsesClientIP reports whether a key template contains the client IP,
// which Caddy may take from X-Forwarded-For.
func keyUsesClientIP(key string) bool {
	return strings.Contains(key, "{"+clientIPPlaceholder+"}") || strings.Contains(key, "{client_ip}")
}

// serverTrustsProxies reports whether srv reads client addresses from
// trusted proxies' headers. Caddy zeroes TrustedProxiesRaw once it has
// loaded the source, and keeps the source unexported, hence the reflection.
func serverTrustsProxies(srv *caddyhttp.Server) bool {
	if srv.TrustedProxiesRaw != nil || srv.TrustedProxiesUnix {
		return true
	}
	f := reflect.ValueOf(srv).Elem().FieldByName("trustedProxies")
	return f.IsValid() && f.Kind() == reflect.Interface && !f.IsNil()
}

// warnIfSpoofable logs that clients choose their own key when the server
// trusts proxies without trusted_proxies_strict.
func (c *RateLimit) warnIfSpoofable(srv *caddyhttp.Server) {
	if srv == nil || srv.TrustedProxiesStrict > 0 || !serverTrustsProxies(srv) {
		return
	}
	c.logger.Warn("the rate-limit key uses the client IP and the server trusts proxies without trusted_proxies_strict: "+
		"clients can spoof the left-most X-Forwarded-For value and get a fresh budget per request; "+
		"set trusted_proxies_strict in the server options",
		zap.String("key", c.Key), zap.String("server", srv.Name()))
}

// ipv6Ident is IPv6Prefix where it changes what a budget means: not at the
// default, so budgets kept across reloads (and in Redis) outlive upgrades.
func (c *RateLimit) ipv6Ident() int {
	if c.IPv6Prefix == defaultIPv6Prefix || !keyUsesClientIP(c.Key) {
		return 0
	}
	return c.IPv6Prefix
}

// policyName is how a policy's name reads in the headers: itself, with
// bytes a structured-field string cannot hold (outside printable ASCII)
// shown as '?'.
func policyName(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] < 0x20 || b[j] > 0x7e {
					b[j] = '?'
				}
			}
			return string(b)
		}
	}
	return s
}

// keyPrefix is where bs lives in Redis: under the per-address config's
// digest, or, for identity budgets, under a prefix of their own (the line's
// limit is in the key), so an unchanged identity line keeps its budgets
// across reloads that change other lines.
func (s *redisStore) keyPrefix(bs []budget) string {
	if bs[0].kind == kindIdentity {
		return redisIdentityPrefix
	}
	return s.prefix
}
