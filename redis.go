package sechard

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Redis topologies, as written after `redis` in the Caddyfile.
const (
	redisStandalone = "" // one server
	redisCluster    = "cluster"
	redisSentinel   = "sentinel"
)

// redisConfig is what every Redis line says (`rate_limit { store redis … }`,
// `revocation { redis … }`): `[cluster|sentinel] <url> [password_secret
// NAME] [username NAME] [tls_ca FILE]`.
type redisConfig struct {
	Topology       string // redisStandalone, redisCluster or redisSentinel
	URL            string
	PasswordSecret string
	Username       string
	TLSCA          string
}

// redisParams are what a user of Redis needs from its client.
type redisParams struct {
	timeout  time.Duration // per call; dials get at least 500ms
	poolSize int           // per node
	minIdle  int           // per node
}

// redisClients holds the Redis clients of every loaded config, one per
// distinct configuration, across reloads.
var redisClients = caddy.NewUsagePool()

// pooledRedis is a client shared through redisClients; the last config
// using it closes it.
type pooledRedis struct{ redis.UniversalClient }

func (p pooledRedis) Destruct() error { return p.Close() }

// parseRedisArgs parses `[cluster|sentinel] <url> [password_secret NAME]
// [username NAME] [tls_ca FILE]`, the arguments of every Redis line; usage
// names the line in errors, which carry the Caddyfile's file and line.
func parseRedisArgs(d *caddyfile.Dispenser, usage string, args []string) (redisConfig, error) {
	var rc redisConfig
	fail := func(format string, a ...any) (redisConfig, error) {
		return redisConfig{}, d.Errf(usage+": "+format, a...)
	}
	if len(args) > 0 && (args[0] == redisCluster || args[0] == redisSentinel) {
		rc.Topology, args = args[0], args[1:]
	}
	if len(args) == 0 || len(args)%2 != 1 {
		return fail("usage: %s [cluster|sentinel] <url> [password_secret <NAME>] [username <NAME>] [tls_ca <FILE>]", usage)
	}
	rc.URL = args[0]
	seen := map[string]bool{}
	for i := 1; i < len(args); i += 2 {
		opt, val := args[i], args[i+1]
		if seen[opt] {
			return fail("%s given twice", opt)
		}
		seen[opt] = true
		switch opt {
		case "password_secret":
			if !validSecretName(val) {
				return fail("invalid secret name %q: %s", val, secretNameRule)
			}
			rc.PasswordSecret = val
		case "username":
			rc.Username = val
		case "tls_ca":
			rc.TLSCA = val
		default:
			return fail("unknown option %q (want password_secret, username or tls_ca)", opt)
		}
	}
	if err := rc.validate(); err != nil {
		return fail("%v", err)
	}
	return rc, nil
}

// validate checks what can be checked without the secrets and files.
func (rc redisConfig) validate() error {
	switch rc.Topology {
	case redisStandalone, redisCluster, redisSentinel:
	default:
		return fmt.Errorf("unknown redis topology %q (want cluster, sentinel or none)", rc.Topology)
	}
	if rc.URL == "" {
		return errors.New("a redis URL is required")
	}
	tlsURL, err := rc.parse()
	if err != nil {
		return err
	}
	if rc.TLSCA != "" && !tlsURL {
		return fmt.Errorf("tls_ca needs a rediss:// URL, got %s", redactURL(rc.URL))
	}
	return nil
}

// parse parses the URL for its topology (only to check it); it reports
// whether the URL asks for TLS.
func (rc redisConfig) parse() (tlsURL bool, err error) {
	var tc *tls.Config
	switch rc.Topology {
	case redisCluster:
		var o *redis.ClusterOptions
		if o, err = redis.ParseClusterURL(rc.URL); err == nil {
			tc = o.TLSConfig
		}
	case redisSentinel:
		var o *redis.FailoverOptions
		if o, err = redis.ParseFailoverURL(rc.URL); err == nil {
			tc = o.TLSConfig
			if o.MasterName == "" {
				err = errors.New("missing ?master_name=")
			}
		}
	default:
		var o *redis.Options
		if o, err = redis.ParseURL(rc.URL); err == nil {
			tc = o.TLSConfig
		}
	}
	if err != nil {
		// The parse error may quote the URL; don't echo its password.
		msg := "invalid URL"
		if e := err.Error(); !strings.Contains(e, "://") && !strings.Contains(e, "@") {
			msg += " (" + e + ")"
		}
		return false, fmt.Errorf("%s %s: %s", rc.describeTopology(), redactURL(rc.URL), msg)
	}
	return tc != nil, nil
}

func (rc redisConfig) describeTopology() string {
	if rc.Topology == "" {
		return "redis"
	}
	return "redis " + rc.Topology
}

// String describes the configuration for logs: topology and URL, without
// any password.
func (rc redisConfig) String() string {
	return rc.describeTopology() + " " + redactURL(rc.URL)
}

// requiredSecrets names the secrets the configuration needs.
func (rc redisConfig) requiredSecrets() []string {
	if rc.PasswordSecret == "" {
		return nil
	}
	return []string{rc.PasswordSecret}
}

// client returns the shared client for this configuration and its pool key
// (release it with redisClients.Delete(key)). A new client is pinged once:
// a TLS failure (wrong CA, a plain-text server) or a topology that does not
// match the server fails the config load; a server that merely does not
// answer does not (the users fall back and log it, as for an outage).
func (rc redisConfig) client(ctx context.Context, p redisParams, secrets secretValues) (redis.UniversalClient, string, error) {
	if err := rc.validate(); err != nil {
		return nil, "", err
	}
	password := ""
	if rc.PasswordSecret != "" {
		sec, ok := secrets[rc.PasswordSecret]
		if !ok {
			return nil, "", fmt.Errorf("missing required secret: %s", rc.PasswordSecret)
		}
		password = sec.Value()
	}
	var roots *x509.CertPool
	var caDigest [32]byte
	if rc.TLSCA != "" {
		pem, err := os.ReadFile(rc.TLSCA)
		if err != nil {
			return nil, "", fmt.Errorf("%s: tls_ca: %w", rc, err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, "", fmt.Errorf("%s: tls_ca %s: no PEM certificate found", rc, rc.TLSCA)
		}
		caDigest = sha256.Sum256(pem)
	}
	pw := sha256.Sum256([]byte(password))
	key := fmt.Sprintf("redis:%s|%s|%s|%x|%x|%d|%d|%d", rc.Topology, rc.URL, rc.Username, pw[:8], caDigest[:8],
		p.timeout, p.poolSize, p.minIdle)
	fresh := false
	v, _, err := redisClients.LoadOrNew(key, func() (caddy.Destructor, error) {
		c, err := rc.newClient(p, password, roots)
		if err != nil {
			return nil, err
		}
		fresh = true
		return pooledRedis{c}, nil
	})
	if err != nil {
		return nil, "", err
	}
	c := v.(pooledRedis).UniversalClient
	if fresh {
		if err := rc.check(ctx, c); err != nil {
			redisClients.Delete(key)
			return nil, "", err
		}
	}
	return c, key, nil
}

// newClient builds a client for a request path. go-redis defaults suit
// batch jobs (5s dials, 3s reads, retries, context deadlines ignored);
// here every call is bounded by its context deadline and p.timeout, and
// never retried, so an outage costs at most one timeout. RESP2: go-redis's
// RESP3 over TLS 1.3 stalls ~50ms on reused connections.
func (rc redisConfig) newClient(p redisParams, password string, roots *x509.CertPool) (redis.UniversalClient, error) {
	dial := max(p.timeout, 500*time.Millisecond)
	noMaint := func() *maintnotifications.Config {
		return &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	}
	tlsConf := func(tc *tls.Config, perNode bool) *tls.Config {
		if tc == nil {
			return nil
		}
		if roots != nil {
			tc.RootCAs = roots
		}
		if perNode {
			// Each node is verified by its own address (the seed's
			// name would be wrong for the others).
			tc.ServerName = ""
		}
		return tc
	}
	switch rc.Topology {
	case redisCluster:
		o, err := redis.ParseClusterURL(rc.URL)
		if err != nil {
			return nil, err
		}
		o.Protocol = 2
		o.ContextTimeoutEnabled = true
		o.MaxRetries = -1
		o.DialTimeout, o.DialerRetries = dial, 1
		o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = p.timeout, p.timeout, p.timeout
		o.PoolSize, o.MinIdleConns = max(o.PoolSize, p.poolSize), max(o.MinIdleConns, p.minIdle)
		o.DisableIdentity = true
		o.DisableRoutingPolicies = true // routing by key only: no COMMAND round trip on the request path
		o.MaintNotificationsConfig = noMaint()
		o.TLSConfig = tlsConf(o.TLSConfig, true)
		if rc.Username != "" {
			o.Username = rc.Username
		}
		if password != "" {
			o.Password = password
		}
		return redis.NewClusterClient(o), nil
	case redisSentinel:
		o, err := redis.ParseFailoverURL(rc.URL)
		if err != nil {
			return nil, err
		}
		o.Protocol = 2
		o.ContextTimeoutEnabled = true
		o.MaxRetries = -1
		o.DialTimeout, o.DialerRetries = dial, 1
		o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = p.timeout, p.timeout, p.timeout
		o.PoolSize, o.MinIdleConns = max(o.PoolSize, p.poolSize), max(o.MinIdleConns, p.minIdle)
		o.DisableIdentity = true
		o.TLSConfig = tlsConf(o.TLSConfig, true)
		if rc.Username != "" {
			o.Username = rc.Username
		}
		if password != "" {
			o.Password = password
		}
		return redis.NewFailoverClient(o), nil
	default:
		o, err := redis.ParseURL(rc.URL)
		if err != nil {
			return nil, err
		}
		o.Protocol = 2
		o.ContextTimeoutEnabled = true
		o.MaxRetries = -1
		o.DialTimeout, o.DialerRetries = dial, 1
		o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = p.timeout, p.timeout, p.timeout
		o.PoolSize, o.MinIdleConns = max(o.PoolSize, p.poolSize), max(o.MinIdleConns, p.minIdle)
		o.DisableIdentity = true
		o.MaintNotificationsConfig = noMaint()
		o.TLSConfig = tlsConf(o.TLSConfig, false)
		if rc.Username != "" {
			o.Username = rc.Username
		}
		if password != "" {
			o.Password = password
		}
		return redis.NewClient(o), nil
	}
}

// check pings a new client once. Errors that only a config change can fix
// (TLS verification, TLS against a plain-text server, a cluster URL on a
// server without cluster support) are returned; anything else (refused,
// timeout, a password not yet set on the server) is left to the users,
// which fall back and log the outage as they would at any other time.
func (rc redisConfig) check(ctx context.Context, c redis.UniversalClient) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := c.Ping(ctx).Err()
	if err == nil || !redisConfigError(err) {
		return nil
	}
	hint := ""
	if strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "certificate") {
		if rc.TLSCA != "" {
			hint = fmt.Sprintf(" (is %s the CA that signed the server's certificate?)", rc.TLSCA)
		} else {
			hint = " (name the CA that signed the server's certificate with tls_ca)"
		}
	}
	return fmt.Errorf("%s: %v%s", rc, err, hint)
}

// redisConfigError reports whether err is one that retrying cannot fix.
func redisConfigError(err error) bool {
	var (
		unknownCA   x509.UnknownAuthorityError
		hostname    x509.HostnameError
		invalid     x509.CertificateInvalidError
		verify      *tls.CertificateVerificationError
		recordError tls.RecordHeaderError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verify) || errors.As(err, &recordError) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "x509:") || strings.Contains(s, "tls: ") ||
		strings.Contains(s, "cluster support disabled")
}

// redisFailed is called when a call failed: a Cluster client then reloads
// its slot map in the background (throttled by go-redis), so that once a
// replica has taken over a lost master's slots the next call goes there,
// rather than to the dead address until the periodic reload.
func redisFailed(c redis.UniversalClient) {
	if cc, ok := c.(*redis.ClusterClient); ok {
		cc.ReloadState(context.Background())
	}
}

// redisErrorHint explains errors that mean the topology is wrong, for the
// outage log line ("" otherwise).
func redisErrorHint(err error) string {
	s := err.Error()
	switch {
	case strings.HasPrefix(s, "MOVED ") || strings.HasPrefix(s, "ASK ") || strings.HasPrefix(s, "CROSSSLOT"):
		return "this Redis is a Cluster node: use `redis cluster <url>`"
	case strings.HasPrefix(s, "READONLY"):
		return "this Redis is a replica: point at the primary, or use `redis sentinel <url>`"
	case strings.HasPrefix(s, "NOPERM"):
		return "the Redis user lacks a command or key pattern sechard needs (see the README's ACL list)"
	}
	return ""
}

// redactURL hides the password in a Redis URL, for logs and errors.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
