package sechard

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/sechard/sechard/internal/ratelimit"
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

	// Compiled at provision; see ratelimit_stage.go.
	routes            []compiledRoute
	defaultLimit      *compiledLimit            // Rate; nil without one
	total             *compiledLimit            // Total; nil without one
	identityLimits    map[string]*compiledLimit // by identity; nil without named identity lines
	anyIdentity       *compiledLimit            // the `*` line; nil without one
	keyPlaceholder    string                    // the key template when it is exactly one placeholder
	keyHasClientIP    bool                      // the key template uses the client IP
	configDigest      string                    // names the per-address limits in Redis keys
	onStoreError      string                    // OnStoreError with its default
	memory            *ratelimit.MemoryStore    // per-address budgets; on_store_error local decides here too
	memoryPoolKey     string
	identityMemory    *ratelimit.MemoryStore // identity budgets, kept by identity and line
	identityPoolKey   string
	redis             *ratelimit.RedisStore // nil unless Store is redis
	redisClient       redis.UniversalClient
	redisPoolKey      string
	storeErrors       prometheus.Counter // nil without metrics
	logger            *zap.Logger
	now               func() time.Time
	metrics           *handlerMetrics
	untrackMemory     func() // stops counting memory in sechard_ratelimit_memory_keys
	untrackIdentities func() // likewise for identityMemory

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

// Defaults and names.
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
)

func (c *RateLimit) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "key":
			if !d.AllArgs(&c.Key) {
				return d.ArgErr()
			}
		case "ipv6_prefix":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return d.Errf("ipv6_prefix must be an integer from 1 to 128, got %q", v)
			}
			if err := checkIPv6Prefix(n); err != nil {
				return d.WrapErr(err)
			}
			c.IPv6Prefix = n
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
			c.Identities = append(c.Identities, IdentityLimit{Identity: args[0], RateSpec: *spec})
			if err := checkIdentities(c.Identities); err != nil {
				return d.WrapErr(err)
			}
		case "store":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			if err := checkStore(args[0]); err != nil {
				return d.WrapErr(err)
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
			}
			c.Store = args[0]
		case "on_store_error":
			if !d.AllArgs(&c.OnStoreError) {
				return d.ArgErr()
			}
			if err := checkOnStoreError(c.OnStoreError); err != nil {
				return d.WrapErr(err)
			}
		case "store_timeout":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("store_timeout must be a positive duration, got %q", v)
			}
			c.StoreTimeout = caddy.Duration(dur)
			if err := checkStoreTimeout(c.StoreTimeout); err != nil {
				return d.WrapErr(err)
			}
		case "max_keys":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return d.Errf("max_keys must be a positive integer, got %q", v)
			}
			if err := checkMaxKeys(n); err != nil {
				return d.WrapErr(err)
			}
			c.MaxKeys = n
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
	if err != nil {
		return nil, d.Errf("rate count must be a positive integer, got %q", n)
	}
	window, err := caddy.ParseDuration(per)
	if err != nil {
		return nil, d.Errf("rate window must be a positive duration, got %q", per)
	}
	spec := &RateSpec{Events: events, Window: caddy.Duration(window)}
	if len(args) == 3 {
		if args[1] != "burst" {
			return nil, d.Errf("expected burst, got %q", args[1])
		}
		// An explicit burst is at least 1 (0 would read as the default).
		b, err := strconv.Atoi(args[2])
		if err != nil || b < 1 {
			return nil, d.Errf("burst must be an integer ≥ 1, got %q", args[2])
		}
		spec.Burst = b
	}
	if err := spec.check(); err != nil {
		return nil, d.WrapErr(err)
	}
	return spec, nil
}

// The checks below are each rule of the config in one place: the Caddyfile
// parser calls them to report the line, and provision calls them for every
// config (JSON included).

// check reports what is wrong with a limit.
func (s *RateSpec) check() error {
	var errs []error
	if s.Events <= 0 {
		errs = append(errs, fmt.Errorf("events must be a positive integer, got %d", s.Events))
	}
	if s.Window <= 0 {
		errs = append(errs, fmt.Errorf("window must be a positive duration, got %v", time.Duration(s.Window)))
	}
	if s.Burst < 0 {
		errs = append(errs, fmt.Errorf("burst must be at least 1, got %d", s.Burst))
	}
	// q and r go out as structured-field integers, at most 15 digits.
	if s.Events > maxSFInteger || s.Burst > maxSFInteger {
		errs = append(errs, fmt.Errorf("events and burst must be at most %d", maxSFInteger))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if _, err := ratelimit.NewRate(s.Events, time.Duration(s.Window), s.burst()); err != nil {
		return err
	}
	return nil
}

// burst is Burst with its default, Events.
func (s *RateSpec) burst() int {
	if s.Burst == 0 {
		return s.Events
	}
	return s.Burst
}

// checkIPv6Prefix checks ipv6_prefix as written in a Caddyfile, or with
// its default.
func checkIPv6Prefix(n int) error {
	if n < 1 || n > 128 {
		return fmt.Errorf("ipv6_prefix must be from 1 to 128, got %d", n)
	}
	return nil
}

// checkStore checks store as written in a Caddyfile, or with its default.
func checkStore(s string) error {
	switch s {
	case storeMemory, storeRedis:
		return nil
	}
	return fmt.Errorf("unknown store %q (want memory or redis)", s)
}

// checkOnStoreError checks on_store_error as written in a Caddyfile, or
// with its default.
func checkOnStoreError(v string) error {
	switch v {
	case storeErrorLocal, storeErrorAllow, storeErrorDeny:
		return nil
	}
	return fmt.Errorf("on_store_error must be local, allow or deny, got %q", v)
}

// checkStoreTimeout checks store_timeout as written in a Caddyfile, or
// with its default.
func checkStoreTimeout(d caddy.Duration) error {
	if d <= 0 {
		return fmt.Errorf("store_timeout must be a positive duration, got %v", time.Duration(d))
	}
	return nil
}

// checkMaxKeys checks max_keys as written in a Caddyfile, or with its
// default.
func checkMaxKeys(n int) error {
	if n <= 0 {
		return fmt.Errorf("max_keys must be a positive integer, got %d", n)
	}
	return nil
}

// checkIdentities reports identity lines without a name, and identities
// with two lines.
func checkIdentities(ids []IdentityLimit) error {
	var errs []error
	seen := make(map[string]bool, len(ids))
	for _, il := range ids {
		if il.Identity == "" {
			errs = append(errs, errors.New("identity: empty name (use * for every identity)"))
			continue
		}
		if seen[il.Identity] {
			errs = append(errs, fmt.Errorf("identity %q has two lines", il.Identity))
		}
		seen[il.Identity] = true
	}
	return errors.Join(errs...)
}
