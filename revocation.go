package sechard

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
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
	bounds tokenBounds // set by auth from its jwt block; defaults otherwise
	cancel context.CancelFunc
	done   chan struct{}
	client redis.UniversalClient
	// clientKey releases client in redisClients; legacy: also read the
	// layout of earlier versions (one server only).
	clientKey string
	legacy    bool

	// snap is what the request path reads: an immutable set swapped whole.
	snap atomic.Pointer[revocationSet]

	// pollMu serialises Redis reads, so an older read (the poller's) never
	// replaces a newer one (an admin call's refreshNow).
	pollMu sync.Mutex

	// mu guards the per-source lists below and serialises rebuilds.
	mu         sync.Mutex
	fileList   []revocationEntry
	fileStat   os.FileInfo
	fileFailed bool // the last check failed (logged once until it works again)
	redisList  []revocationEntry
	redisDown  bool // Redis is unreachable (logged once until it is back)
}

const (
	defaultRevocationRefresh  = 10 * time.Second
	defaultRevocationCacheTTL = 5 * time.Second

	// Every revocation key carries the {revoked} hash tag, so the scripts
	// and MGET that touch several of them stay in one Redis Cluster slot.
	redisKeyPrefix = "sechard:{revoked}:"
	redisIndexKey  = redisKeyPrefix + "index"
	// legacyRedisKeyPrefix is the layout before hash tags; still read from
	// one server so revocations written by earlier versions keep applying
	// until they expire.
	legacyRedisKeyPrefix = "sechard:revoked:"
)

// tokenBounds say how long a token can be accepted: until iat + maxTTL +
// leeway at most, and leeway past its exp. A revocation must last as long.
type tokenBounds struct{ maxTTL, leeway time.Duration }

var defaultTokenBounds = tokenBounds{defaultMaxTTL, defaultLeeway}

// jtiExpiry is when a jti revocation may be forgotten (unix seconds).
func (b tokenBounds) jtiExpiry(exp int64) int64 { return exp + ceilSeconds(int64(b.leeway)) }

// subExpiry is when a subject revocation may be forgotten: every token it
// covers was issued before `before`, so none is accepted after this.
func (b tokenBounds) subExpiry(before int64) int64 {
	return before + ceilSeconds(int64(b.maxTTL+b.leeway))
}

// widen returns bounds covering the tokens of both b and o.
func (b tokenBounds) widen(o tokenBounds) tokenBounds {
	return tokenBounds{max(b.maxTTL, o.maxTTL), max(b.leeway, o.leeway)}
}

// setTokenBounds sizes the revocations' lifetimes to the tokens auth
// accepts (v is nil without a jwt block).
func (rv *Revocation) setTokenBounds(v *verifier) {
	if rv == nil {
		return
	}
	rv.bounds = defaultTokenBounds
	if v != nil {
		rv.bounds = tokenBounds{v.MaxTTL(), v.Leeway()}
	}
}

// revocationEntry is one revocation: a jti, or a subject with a time before
// which its tokens are revoked (Before == nil: all its tokens).
type revocationEntry struct {
	JTI     string `json:"jti,omitempty"`
	Exp     int64  `json:"exp,omitempty"`
	Sub     string `json:"sub,omitempty"`
	Before  *int64 `json:"before,omitempty"`
	Source  string `json:"source"`
	expires int64  // unix seconds after which the entry may be forgotten; 0 = never
}

// revocationSet is an immutable snapshot of every source; the request path
// only reads it.
type revocationSet struct {
	jti     map[string]struct{}
	sub     map[string]int64 // subject -> tokens with iat (unix) below this are revoked
	entries []revocationEntry
}

var emptyRevocationSet = &revocationSet{}

func (rv *Revocation) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "file":
			if !d.NextArg() {
				return d.ArgErr()
			}
			rv.File = d.Val()
		case "redis":
			rc, err := parseRedisArgs(d, "redis", d.RemainingArgs())
			if err != nil {
				return err
			}
			rv.Redis, rv.RedisTopology, rv.RedisPasswordSecret = rc.URL, rc.Topology, rc.PasswordSecret
			rv.RedisUsername, rv.RedisTLSCA = rc.Username, rc.TLSCA
		case "refresh", "cache_ttl":
			name := d.Val()
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return d.Errf("%s: want a positive duration, got %q", name, d.Val())
			}
			if name == "refresh" {
				rv.Refresh = caddy.Duration(dur)
			} else {
				rv.CacheTTL = caddy.Duration(dur)
			}
		default:
			return d.Errf("unrecognized revocation option %q", d.Val())
		}
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	return nil
}

// requiredSecrets names the secrets the revocation config needs.
func (rv *Revocation) requiredSecrets() []string {
	if rv == nil || rv.Redis == "" {
		return nil
	}
	return rv.redisConfig().requiredSecrets()
}

// redisConfig is the revocation's Redis line.
func (rv *Revocation) redisConfig() redisConfig {
	return redisConfig{Topology: rv.RedisTopology, URL: rv.Redis, PasswordSecret: rv.RedisPasswordSecret,
		Username: rv.RedisUsername, TLSCA: rv.RedisTLSCA}
}

// redisID identifies the Redis (topology and URL) in lastRedisLists.
func (rv *Revocation) redisID() string { return rv.RedisTopology + " " + rv.Redis }

func (rv *Revocation) provision(env *provisionEnv) error {
	if rv == nil {
		return nil
	}
	rv.logger = env.logger.Named("revocation")
	rv.now = env.now
	if rv.now == nil {
		rv.now = time.Now
	}
	if rv.Refresh < 0 || rv.CacheTTL < 0 {
		return errors.New("refresh and cache_ttl must not be negative")
	}
	if rv.Refresh == 0 {
		rv.Refresh = caddy.Duration(defaultRevocationRefresh)
	}
	if rv.CacheTTL == 0 {
		rv.CacheTTL = caddy.Duration(defaultRevocationCacheTTL)
	}
	if rv.bounds.maxTTL <= 0 {
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
		rc := rv.redisConfig()
		client, key, err := rc.client(env.Context, redisParams{timeout: 250 * time.Millisecond, poolSize: 2}, env.secrets)
		if err != nil {
			return fmt.Errorf("revocation %w", err)
		}
		rv.client, rv.clientKey = client, key
		rv.legacy = rc.Topology == redisStandalone
		// Start from what this process last knew of this Redis (e.g. before a
		// reload), so an outage at reload time forgets nothing.
		if last, ok := lastRedisLists.Load(rv.redisID()); ok {
			rv.redisList = last.([]revocationEntry)
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
	if s == nil {
		return false
	}
	if jti != "" {
		if _, ok := s.jti[jti]; ok {
			return true
		}
	}
	if sub != "" {
		if before, ok := s.sub[sub]; ok && iat.Unix() < before {
			return true
		}
	}
	return false
}

// loop checks the file every Refresh and polls Redis every CacheTTL until
// the config is unloaded.
func (rv *Revocation) loop(ctx context.Context) {
	defer close(rv.done)
	var fileTick, redisTick <-chan time.Time
	if rv.File != "" {
		t := time.NewTicker(time.Duration(rv.Refresh))
		defer t.Stop()
		fileTick = t.C
	}
	if rv.client != nil {
		t := time.NewTicker(time.Duration(rv.CacheTTL))
		defer t.Stop()
		redisTick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-fileTick:
			rv.checkFile()
		case <-redisTick:
			rv.pollRedis(ctx)
		}
	}
}

// checkFile re-reads the file when it changed. A vanished or unreadable file
// keeps the last good list; that is logged once, and once when it recovers.
func (rv *Revocation) checkFile() {
	fi, err := os.Stat(rv.File)
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if err == nil && rv.fileStat != nil && !rv.fileFailed && os.SameFile(fi, rv.fileStat) &&
		fi.ModTime().Equal(rv.fileStat.ModTime()) && fi.Size() == rv.fileStat.Size() {
		return // unchanged
	}
	var list []revocationEntry
	if err == nil {
		list, fi, err = rv.readFile()
	}
	if err != nil {
		if !rv.fileFailed {
			rv.fileFailed = true
			rv.logger.Error("revocation file unreadable; the last good list keeps applying",
				zap.String("file", rv.File), zap.Error(err), zap.Int("entries", len(rv.fileList)))
		}
		return
	}
	if rv.fileFailed {
		rv.logger.Info("revocation file readable again", zap.String("file", rv.File))
	}
	rv.fileFailed = false
	rv.fileList, rv.fileStat = list, fi
	rv.logger.Info("revocation file loaded", zap.String("file", rv.File), zap.Int("entries", len(list)))
	rv.rebuildLocked()
}

// readFile reads and parses the revocation file. Malformed lines are logged
// and skipped; the rest applies.
func (rv *Revocation) readFile() ([]revocationEntry, os.FileInfo, error) {
	f, err := os.Open(rv.File)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if fi.IsDir() {
		return nil, nil, fmt.Errorf("%s is a directory", rv.File)
	}
	list, bad, err := parseRevocationFile(f)
	if err != nil {
		return nil, nil, err
	}
	for _, b := range bad {
		rv.logger.Warn("ignoring malformed revocation line", zap.String("file", rv.File),
			zap.Int("line", b.line), zap.String("problem", b.problem))
	}
	return list, fi, nil
}

type badLine struct {
	line    int
	problem string
}

// parseRevocationFile parses the file format: `<jti>`, `sub:<subject>` or
// `sub:<subject> <unix seconds>`, with `#` comments.
func parseRevocationFile(f io.Reader) ([]revocationEntry, []badLine, error) {
	var list []revocationEntry
	var bad []badLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := commentStart(line); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		e, problem := parseRevocationLine(line)
		if problem != "" {
			bad = append(bad, badLine{n, problem})
			continue
		}
		e.Source = "file"
		list = append(list, e)
	}
	return list, bad, sc.Err()
}

// commentStart returns where a comment begins: a '#' at the start of the
// line or after whitespace; -1 if none. Whitespace is what TrimSpace trims,
// so a '#' that starts a trimmed entry is always a comment.
func commentStart(line string) int {
	for i, c := range line {
		if c == '#' {
			if prev, _ := utf8.DecodeLastRuneInString(line[:i]); i == 0 || unicode.IsSpace(prev) {
				return i
			}
		}
	}
	return -1
}

// parseRevocationLine parses a trimmed line without its comment. Subjects
// may hold spaces (mTLS `cn:` names do): the last field is the time only
// when it is all digits, and only after a subject.
func parseRevocationLine(line string) (revocationEntry, string) {
	sub, isSub := strings.CutPrefix(line, "sub:")
	if !isSub {
		if strings.ContainsFunc(line, unicode.IsSpace) {
			return revocationEntry{}, "want one jti per line, or sub:<subject> [<unix seconds>]"
		}
		return revocationEntry{JTI: line}, ""
	}
	if sub == "" {
		return revocationEntry{}, "empty subject after sub:"
	}
	if first, _ := utf8.DecodeRuneInString(sub); unicode.IsSpace(first) {
		return revocationEntry{}, "the subject must follow sub: without a space"
	}
	i := strings.LastIndexFunc(sub, unicode.IsSpace)
	if i < 0 {
		return revocationEntry{Sub: sub}, ""
	}
	_, size := utf8.DecodeRuneInString(sub[i:])
	last := sub[i+size:]
	if strings.ContainsFunc(last, func(r rune) bool { return r < '0' || r > '9' }) {
		return revocationEntry{Sub: sub}, ""
	}
	before, err := strconv.ParseInt(last, 10, 64)
	if err != nil || before <= 0 {
		return revocationEntry{}, "the time after the subject must be unix seconds"
	}
	return revocationEntry{Sub: strings.TrimRightFunc(sub[:i], unicode.IsSpace), Before: &before}, ""
}

// pollRedis reads the fleet's revocations from Redis. When Redis is
// unreachable, the last known list keeps applying; the outage is logged
// once, and once when Redis is back.
func (rv *Revocation) pollRedis(parent context.Context) {
	rv.pollMu.Lock()
	defer rv.pollMu.Unlock()
	timeout := min(time.Duration(rv.CacheTTL), time.Second)
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	list, err := readRedisRevocations(ctx, rv.client, rv.now(), rv.bounds, rv.legacy)
	if parent.Err() != nil {
		return // unloading: not an outage
	}
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if err != nil {
		redisFailed(rv.client)
		if !rv.redisDown {
			rv.redisDown = true
			rv.logger.Error("revocation redis unreachable; the last known list keeps applying",
				zap.String("redis", redactURL(rv.Redis)), zap.String("topology", rv.RedisTopology),
				zap.Error(err), zap.Int("entries", len(rv.redisList)))
		}
		return
	}
	if rv.redisDown {
		rv.redisDown = false
		rv.logger.Info("revocation redis reachable again", zap.String("redis", redactURL(rv.Redis)))
	}
	rv.redisList = list
	lastRedisLists.Store(rv.redisID(), list)
	rv.rebuildLocked()
}

// lastRedisLists remembers, per Redis URL, the last list read, across
// reloads of the config.
var lastRedisLists sync.Map

// readRedisRevocations reads the live entries of the index, then the
// subject keys' times. An entry expires at its index score, set by the
// writer; a jti's exp is shown as that minus this node's leeway. With
// legacy, the layout of earlier versions (keys without the hash tag) is
// read too, and both lists are returned together.
func readRedisRevocations(ctx context.Context, c redis.UniversalClient, now time.Time, b tokenBounds, legacy bool) ([]revocationEntry, error) {
	list, err := readRedisLayout(ctx, c, now, b, redisKeyPrefix)
	if err != nil || !legacy {
		return list, err
	}
	old, err := readRedisLayout(ctx, c, now, b, legacyRedisKeyPrefix)
	if err != nil {
		return nil, err
	}
	return append(list, old...), nil
}

// readRedisLayout reads the revocations under one key prefix: its index,
// then its subject keys (all in the prefix's hash slot).
func readRedisLayout(ctx context.Context, c redis.UniversalClient, now time.Time, b tokenBounds, prefix string) ([]revocationEntry, error) {
	members, err := c.ZRangeByScoreWithScores(ctx, prefix+"index", &redis.ZRangeBy{
		Min: strconv.FormatInt(now.Unix(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, err
	}
	var list []revocationEntry
	var subKeys, subs []string
	var subExpires []int64
	for _, m := range members {
		name, _ := m.Member.(string)
		switch {
		case strings.HasPrefix(name, "jti:"):
			list = append(list, revocationEntry{JTI: name[4:], Exp: int64(m.Score) - ceilSeconds(int64(b.leeway)),
				Source: "redis", expires: int64(m.Score)})
		case strings.HasPrefix(name, "sub:"):
			subs = append(subs, name[4:])
			subKeys = append(subKeys, prefix+name)
			subExpires = append(subExpires, int64(m.Score))
		}
	}
	if len(subKeys) > 0 {
		vals, err := c.MGet(ctx, subKeys...).Result()
		if err != nil {
			return nil, err
		}
		for i, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue // expired meanwhile
			}
			before, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				continue
			}
			list = append(list, revocationEntry{Sub: subs[i], Before: &before, Source: "redis",
				expires: subExpires[i]})
		}
	}
	return list, nil
}

// redisAddScript stores one revocation atomically: its own key (a subject
// keeps the latest of its times), its index entry scored by expiry, and the
// index's own expiry at its latest entry, so every key leaves by itself.
// An entry's expiry only grows: nodes with a longer max_ttl may share it.
//
// KEYS[1] entry key, KEYS[2] index; ARGV[1] value, ARGV[2] expire-at (unix),
// ARGV[3] index member, ARGV[4] "max" to keep the larger numeric value.
var redisAddScript = redis.NewScript(`
local value, expat = ARGV[1], tonumber(ARGV[2])
local curexp = tonumber(redis.call("ZSCORE", KEYS[2], ARGV[3]))
if curexp and curexp > expat then expat = curexp end
if ARGV[4] == "max" then
	local cur = tonumber(redis.call("GET", KEYS[1]) or "")
	if cur and cur > tonumber(value) then value = tostring(cur) end
end
redis.call("SET", KEYS[1], value)
redis.call("EXPIREAT", KEYS[1], expat)
redis.call("ZADD", KEYS[2], expat, ARGV[3])
local now = tonumber(redis.call("TIME")[1])
redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", "(" .. now)
local top = redis.call("ZRANGE", KEYS[2], -1, -1, "WITHSCORES")
if top[2] then redis.call("EXPIREAT", KEYS[2], top[2]) end
return expat
`)

// addRedisRevocation writes one revocation to Redis.
func addRedisRevocation(ctx context.Context, c redis.UniversalClient, e revocationEntry) error {
	var key, member, value, keep string
	if e.JTI != "" {
		member = "jti:" + e.JTI
		value = strconv.FormatInt(e.Exp, 10)
	} else {
		member = "sub:" + e.Sub
		value = strconv.FormatInt(*e.Before, 10)
		keep = "max"
	}
	key = redisKeyPrefix + member
	return redisAddScript.Run(ctx, c, []string{key, redisIndexKey},
		value, strconv.FormatInt(e.expires, 10), member, keep).Err()
}

// rebuildLocked merges every source into a new snapshot and swaps it in.
// rv.mu must be held.
func (rv *Revocation) rebuildLocked() {
	now := rv.now().Unix()
	s := &revocationSet{jti: make(map[string]struct{}), sub: make(map[string]int64)}
	add := func(e revocationEntry) {
		if e.expires != 0 && e.expires < now {
			return
		}
		if e.JTI != "" {
			s.jti[e.JTI] = struct{}{}
		} else {
			before := int64(math.MaxInt64)
			if e.Before != nil {
				before = *e.Before
			}
			if cur, ok := s.sub[e.Sub]; !ok || before > cur {
				s.sub[e.Sub] = before
			}
		}
		s.entries = append(s.entries, e)
	}
	for _, e := range rv.fileList {
		add(e)
	}
	for _, e := range rv.redisList {
		add(e)
	}
	if rv.client == nil {
		for _, e := range localRevocations.list() {
			add(e)
		}
	}
	rv.snap.Store(s)
}

// refreshNow re-reads Redis (or the in-memory list) at once, so a
// revocation posted to this node's admin API applies here without waiting.
func (rv *Revocation) refreshNow(ctx context.Context) {
	if rv.client != nil {
		rv.pollRedis(ctx)
		return
	}
	rv.mu.Lock()
	rv.rebuildLocked()
	rv.mu.Unlock()
}

// memoryRevocations holds revocations posted to the admin API when no Redis
// is configured. It is process-wide, so they survive config reloads (not
// restarts: use a file or Redis for that).
type memoryRevocations struct {
	mu      sync.Mutex
	entries map[string]revocationEntry // by "jti:<jti>" or "sub:<sub>"
}

var localRevocations = &memoryRevocations{entries: make(map[string]revocationEntry)}

func (m *memoryRevocations) add(e revocationEntry, now int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, old := range m.entries {
		if old.expires < now {
			delete(m.entries, k)
		}
	}
	key := "jti:" + e.JTI
	if e.JTI == "" {
		key = "sub:" + e.Sub
	}
	if old, ok := m.entries[key]; ok {
		// The stronger revocation and the longer lifetime stay.
		e.expires = max(e.expires, old.expires)
		if e.JTI == "" && *old.Before > *e.Before {
			e.Before = old.Before
		}
	}
	m.entries[key] = e
}

func (m *memoryRevocations) list() []revocationEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]revocationEntry, 0, len(m.entries))
	for _, e := range m.entries {
		out = append(out, e)
	}
	return out
}

// The registry of active Revocation instances (one per loaded auth config),
// which the admin API reaches.
var revocationRegistry = struct {
	sync.Mutex
	m map[*Revocation]struct{}
}{m: make(map[*Revocation]struct{})}

func registerRevocation(rv *Revocation) {
	revocationRegistry.Lock()
	revocationRegistry.m[rv] = struct{}{}
	revocationRegistry.Unlock()
}

func unregisterRevocation(rv *Revocation) {
	revocationRegistry.Lock()
	delete(revocationRegistry.m, rv)
	revocationRegistry.Unlock()
}

// activeRevocations returns the registered instances.
func activeRevocations() []*Revocation {
	revocationRegistry.Lock()
	defer revocationRegistry.Unlock()
	out := make([]*Revocation, 0, len(revocationRegistry.m))
	for rv := range revocationRegistry.m {
		out = append(out, rv)
	}
	return out
}

// entries returns the instance's current local view.
func (rv *Revocation) entries() []revocationEntry {
	if s := rv.snap.Load(); s != nil {
		return s.entries
	}
	return nil
}
