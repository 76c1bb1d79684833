package sechard

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/sechard/sechard/internal/redisconn"
	"github.com/sechard/sechard/internal/revocation"
)

// Revocation rejects tokens that were revoked before they expire (the
// runbook's "token blacklist cache with short TTL"). A token is revoked when
// its `jti` is listed, or when its subject is listed and the token was issued
// before the subject's revocation time.
//
// Revocations come from any combination of a file, a Redis shared by the
// fleet, and Caddy's admin API (`POST /sechard/revocations`). Requests are
// answered from a local, immutable snapshot of all sources, rebuilt when a
// source changes; Redis is polled every `cache_ttl`, never asked on the
// request path.
type Revocation struct {
	// A file of revocations, one per line: a token's `jti`; `sub:<subject>`
	// to revoke every token of that subject; or `sub:<subject> <unix seconds>`
	// to revoke that subject's tokens issued before that time. Subjects may
	// hold spaces: the last field is the time when it is all digits. A `#`
	// at the start of a line or after whitespace starts a comment. The file
	// is re-read when its modification time or size changes; if it vanishes
	// or cannot be read, the last good list keeps applying.
	File string `json:"file,omitempty"`

	// How often the file is checked for changes. Default: 10s.
	Refresh caddy.Duration `json:"refresh,omitempty"`

	// A Redis URL shared by the fleet, in the form RedisTopology calls for
	// (see rate_limit's redis_url). Revocations posted to the admin API are
	// written there, as one key per revoked jti
	// (`sechard:{revoked}:jti:<jti>`) and one per revoked subject
	// (`sechard:{revoked}:sub:<subject>`), each expiring by itself once the
	// tokens it covers have expired, plus an index sorted set
	// (`sechard:{revoked}:index`) that also expires. The `{revoked}` hash
	// tag keeps them in one Redis Cluster slot.
	Redis string `json:"redis,omitempty"`

	// How Redis is deployed: empty for one server, `cluster` for Redis
	// Cluster, `sentinel` for a primary found through Redis Sentinel.
	RedisTopology string `json:"redis_topology,omitempty"`

	// Names a secret (resolved like every sechard secret, and required)
	// whose value is the Redis password. It overrides any password in the
	// Redis URL, which would be visible in the JSON config and the admin
	// API.
	RedisPasswordSecret string `json:"redis_password_secret,omitempty"`

	// The Redis ACL user to authenticate as; it overrides any user in the
	// URL (for Sentinel: the data nodes' user).
	RedisUsername string `json:"redis_username,omitempty"`

	// A PEM file of the CA certificates that sign the Redis servers'
	// certificates (`rediss://` URLs). A server not signed by them fails
	// the config load.
	RedisTLSCA string `json:"redis_tls_ca,omitempty"`

	// How stale a local answer may be: Redis is read every cache_ttl and
	// requests are answered from the local copy. If Redis is unreachable the
	// last known list keeps applying. Default: 5s.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`

	logger *zap.Logger
	now    func() time.Time
	bounds revocation.Bounds // set by auth from its jwt block; defaults otherwise
	cancel context.CancelFunc
	done   chan struct{}
	client redis.UniversalClient
	// clientKey releases client in redisClients; legacy: also read the
	// layout of earlier versions (one server only).
	clientKey string
	legacy    bool

	// snap is what the request path reads: an immutable set swapped whole.
	snap atomic.Pointer[revocation.Set]

	// pollMu serialises Redis reads, so an older read (the poller's) never
	// replaces a newer one (an admin call's refreshNow).
	pollMu sync.Mutex

	// mu guards the per-source lists below and serialises rebuilds.
	mu         sync.Mutex
	fileList   []revocation.Entry
	fileStat   os.FileInfo
	fileFailed bool // the last check failed (logged once until it works again)
	redisList  []revocation.Entry
	redisDown  bool // Redis is unreachable (logged once until it is back)
}

const (
	defaultRevocationRefresh  = 10 * time.Second
	defaultRevocationCacheTTL = 5 * time.Second
)

// defaultTokenBounds are the lifetimes of the tokens a jwt block accepts by
// default.
var defaultTokenBounds = revocation.Bounds{MaxTTL: defaultMaxTTL, Leeway: defaultLeeway}

// setTokenBounds sizes the revocations' lifetimes to the tokens auth
// accepts (v is nil without a jwt block).
func (rv *Revocation) setTokenBounds(v *verifier) {
	if rv == nil {
		return
	}
	rv.bounds = defaultTokenBounds
	if v != nil {
		rv.bounds = revocation.Bounds{MaxTTL: v.MaxTTL(), Leeway: v.Leeway()}
	}
}

var emptyRevocationSet = revocation.NewSet(0)

// unmarshalCaddyfile parses the revocation block:
//
//	revocation {
//		file      <path>
//		refresh   <duration>
//		redis     [cluster|sentinel] <url> [password_secret <NAME>] [username <NAME>] [tls_ca <FILE>]
//		cache_ttl <duration>
//	}
func (rv *Revocation) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch name := d.Val(); name {
		case "file":
			if !d.AllArgs(&rv.File) {
				return d.ArgErr()
			}
		case "redis":
			rc, err := parseRedisArgs(d, "redis", d.RemainingArgs())
			if err != nil {
				return err
			}
			rv.setRedisConfig(rc)
		case "refresh", "cache_ttl":
			var val string
			if !d.AllArgs(&val) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(val)
			if err != nil || dur <= 0 {
				return d.Errf("%s: want a positive duration, got %q", name, val)
			}
			if name == "refresh" {
				rv.Refresh = caddy.Duration(dur)
			} else {
				rv.CacheTTL = caddy.Duration(dur)
			}
		default:
			return d.Errf("unrecognized revocation option %q", name)
		}
	}
	return nil
}

// requiredSecrets names the secrets the revocation config needs.
func (rv *Revocation) requiredSecrets() []string {
	if rv == nil || rv.Redis == "" {
		return nil
	}
	return rv.redisConfig().RequiredSecrets()
}

// redisConfig is the revocation's Redis line.
func (rv *Revocation) redisConfig() redisconn.Config {
	return redisconn.Config{Topology: rv.RedisTopology, URL: rv.Redis, PasswordSecret: rv.RedisPasswordSecret,
		Username: rv.RedisUsername, TLSCA: rv.RedisTLSCA}
}

func (rv *Revocation) setRedisConfig(rc redisconn.Config) {
	rv.Redis, rv.RedisTopology, rv.RedisPasswordSecret = rc.URL, rc.Topology, rc.PasswordSecret
	rv.RedisUsername, rv.RedisTLSCA = rc.Username, rc.TLSCA
}

// redisID identifies the Redis (topology and URL) in lastRedisLists.
func (rv *Revocation) redisID() string { return rv.RedisTopology + " " + rv.Redis }

// validate reports every problem of the configuration that needs no file
// and no server.
func (rv *Revocation) validate() error {
	var errs []error
	if rv.Refresh < 0 || rv.CacheTTL < 0 {
		errs = append(errs, errors.New("refresh and cache_ttl must not be negative"))
	}
	if rv.Redis != "" {
		errs = append(errs, rv.redisConfig().Validate())
	}
	return errors.Join(errs...)
}

func (rv *Revocation) provision(env *provisionEnv) error {
	if rv == nil {
		return nil
	}
	if err := rv.validate(); err != nil {
		return err
	}
	rv.logger = env.logger.Named("revocation")
	rv.now = env.now
	if rv.now == nil {
		rv.now = time.Now
	}
	if rv.Refresh == 0 {
		rv.Refresh = caddy.Duration(defaultRevocationRefresh)
	}
	if rv.CacheTTL == 0 {
		rv.CacheTTL = caddy.Duration(defaultRevocationCacheTTL)
	}
	if rv.bounds.MaxTTL <= 0 {
		rv.bounds = defaultTokenBounds // provisioned outside auth (tests)
	}
	rv.snap.Store(emptyRevocationSet)

	if rv.File != "" {
		list, fi, err := rv.readFile()
		if err != nil {
			return fmt.Errorf("loading revocation file: %w", err)
		}
		rv.fileList, rv.fileStat = list, fi
	}
	if rv.Redis != "" {
		// An outage must not stall the poller: fail fast and keep the last
		// known list instead.
		client, key, err := openRedis(env.Context, rv.redisConfig(), redisconn.Params{Timeout: 250 * time.Millisecond, PoolSize: 2}, env.secrets)
		if err != nil {
			return err
		}
		rv.client, rv.clientKey = client, key
		rv.legacy = rv.RedisTopology == redisconn.Standalone
		// Start from what this process last knew of this Redis (e.g. before a
		// reload), so an outage at reload time forgets nothing.
		if last, ok := lastRedisLists.Load(rv.redisID()); ok {
			rv.redisList = last.([]revocation.Entry)
		}
		rv.pollRedis(env.Context)
	}

	rv.mu.Lock()
	rv.rebuildLocked()
	rv.mu.Unlock()

	ctx, cancel := context.WithCancel(env.Context)
	rv.cancel = cancel
	rv.done = make(chan struct{})
	go rv.loop(ctx)

	registerRevocation(rv)
	return nil
}

func (rv *Revocation) cleanup() error {
	if rv == nil || rv.cancel == nil {
		return nil
	}
	unregisterRevocation(rv)
	rv.cancel()
	rv.cancel = nil // Caddy may call Cleanup again after a failed Validate
	<-rv.done
	if rv.client != nil {
		rv.client = nil
		_, err := redisClients.Delete(rv.clientKey)
		return err
	}
	return nil
}

// revoked reports whether a token with this jti, subject and issue time has
// been revoked. It is on the hot path: two map lookups in an immutable
// snapshot, no locks, no allocations.
func (rv *Revocation) revoked(jti, sub string, iat time.Time) bool {
	if rv == nil {
		return false
	}
	s := rv.snap.Load()
	return s != nil && s.Revoked(jti, sub, iat)
}
