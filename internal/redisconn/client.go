package redisconn

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Params are what a user of Redis needs from its client.
type Params struct {
	Timeout  time.Duration // per call; dials get at least 500ms
	PoolSize int           // per node
	MinIdle  int           // per node
}

// Prepared is a validated configuration with its password and CA
// certificates in hand: everything a client needs.
type Prepared struct {
	config   Config
	params   Params
	password string
	roots    *x509.CertPool
	key      string
}

// Prepare validates c and reads its tls_ca file; password is the value of
// c.PasswordSecret ("" for none).
func (c Config) Prepare(p Params, password string) (*Prepared, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var roots *x509.CertPool
	var caDigest [sha256.Size]byte
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("%s: tls_ca: %w", c, err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: tls_ca %s: no PEM certificate found", c, c.TLSCA)
		}
		caDigest = sha256.Sum256(pem)
	}
	pw := sha256.Sum256([]byte(password))
	key := fmt.Sprintf("redis:%s|%s|%s|%x|%x|%d|%d|%d", c.Topology, c.URL, c.Username, pw[:8], caDigest[:8],
		p.Timeout, p.PoolSize, p.MinIdle)
	return &Prepared{config: c, params: p, password: password, roots: roots, key: key}, nil
}

// Key identifies the client NewClient builds: two Prepared with the same
// key build interchangeable clients.
func (p *Prepared) Key() string { return p.key }

// knobs point at the options every topology shares, so that one function
// sets them for all three.
type knobs struct {
	protocol, maxRetries, dialerRetries, poolSize, minIdle *int
	contextTimeout, disableIdentity                        *bool
	dial, read, write, poolWait                            *time.Duration
	tls                                                    **tls.Config
	username, password                                     *string
}

// NewClient builds a client for a request path. go-redis defaults suit
// batch jobs (5s dials, 3s reads, retries, context deadlines ignored);
// here every call is bounded by its context deadline and the timeout, and
// never retried, so an outage costs at most one timeout. RESP2: go-redis's
// RESP3 over TLS 1.3 stalls ~50ms on reused connections.
func (p *Prepared) NewClient() (redis.UniversalClient, error) {
	noMaint := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	switch p.config.Topology {
	case Cluster:
		o, err := redis.ParseClusterURL(p.config.URL)
		if err != nil {
			return nil, err
		}
		p.tune(knobs{protocol: &o.Protocol, maxRetries: &o.MaxRetries, dialerRetries: &o.DialerRetries,
			poolSize: &o.PoolSize, minIdle: &o.MinIdleConns, contextTimeout: &o.ContextTimeoutEnabled,
			disableIdentity: &o.DisableIdentity, dial: &o.DialTimeout, read: &o.ReadTimeout, write: &o.WriteTimeout,
			poolWait: &o.PoolTimeout, tls: &o.TLSConfig, username: &o.Username, password: &o.Password}, true)
		o.DisableRoutingPolicies = true // routing by key only: no COMMAND round trip on the request path
		o.MaintNotificationsConfig = noMaint
		return redis.NewClusterClient(o), nil
	case Sentinel:
		o, err := redis.ParseFailoverURL(p.config.URL)
		if err != nil {
			return nil, err
		}
		p.tune(knobs{protocol: &o.Protocol, maxRetries: &o.MaxRetries, dialerRetries: &o.DialerRetries,
			poolSize: &o.PoolSize, minIdle: &o.MinIdleConns, contextTimeout: &o.ContextTimeoutEnabled,
			disableIdentity: &o.DisableIdentity, dial: &o.DialTimeout, read: &o.ReadTimeout, write: &o.WriteTimeout,
			poolWait: &o.PoolTimeout, tls: &o.TLSConfig, username: &o.Username, password: &o.Password}, true)
		return redis.NewFailoverClient(o), nil
	default:
		o, err := redis.ParseURL(p.config.URL)
		if err != nil {
			return nil, err
		}
		p.tune(knobs{protocol: &o.Protocol, maxRetries: &o.MaxRetries, dialerRetries: &o.DialerRetries,
			poolSize: &o.PoolSize, minIdle: &o.MinIdleConns, contextTimeout: &o.ContextTimeoutEnabled,
			disableIdentity: &o.DisableIdentity, dial: &o.DialTimeout, read: &o.ReadTimeout, write: &o.WriteTimeout,
			poolWait: &o.PoolTimeout, tls: &o.TLSConfig, username: &o.Username, password: &o.Password}, false)
		o.MaintNotificationsConfig = noMaint
		return redis.NewClient(o), nil
	}
}

// tune sets the shared options. perNode: each node is verified by its own
// address (the seed's name would be wrong for the others).
func (p *Prepared) tune(k knobs, perNode bool) {
	*k.protocol = 2
	*k.contextTimeout = true
	*k.maxRetries = -1
	*k.dial, *k.dialerRetries = max(p.params.Timeout, 500*time.Millisecond), 1
	*k.read, *k.write, *k.poolWait = p.params.Timeout, p.params.Timeout, p.params.Timeout
	*k.poolSize, *k.minIdle = max(*k.poolSize, p.params.PoolSize), max(*k.minIdle, p.params.MinIdle)
	*k.disableIdentity = true
	if tc := *k.tls; tc != nil {
		if p.roots != nil {
			tc.RootCAs = p.roots
		}
		if perNode {
			tc.ServerName = ""
		}
	}
	if p.config.Username != "" {
		*k.username = p.config.Username
	}
	if p.password != "" {
		*k.password = p.password
	}
}

// Check pings a new client once. Errors that only a config change can fix
// (TLS verification, TLS against a plain-text server, a cluster URL on a
// server without cluster support) are returned; anything else (refused,
// timeout, a password not yet set on the server) is left to the caller,
// which falls back and logs the outage as it would at any other time.
func (p *Prepared) Check(ctx context.Context, c redis.UniversalClient) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := c.Ping(ctx).Err()
	if err == nil || !configError(err) {
		return nil
	}
	hint := ""
	if strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "certificate") {
		if p.config.TLSCA != "" {
			hint = fmt.Sprintf(" (is %s the CA that signed the server's certificate?)", p.config.TLSCA)
		} else {
			hint = " (name the CA that signed the server's certificate with tls_ca)"
		}
	}
	return fmt.Errorf("%s: %v%s", p.config, err, hint)
}

// configError reports whether err is one that retrying cannot fix.
func configError(err error) bool {
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

// Failed is called when a call failed: a Cluster client then reloads its
// slot map in the background (throttled by go-redis), so that once a
// replica has taken over a lost master's slots the next call goes there,
// rather than to the dead address until the periodic reload.
func Failed(c redis.UniversalClient) {
	if cc, ok := c.(*redis.ClusterClient); ok {
		cc.ReloadState(context.Background())
	}
}

// ErrorHint explains errors that mean the topology is wrong, for the outage
// log line ("" otherwise).
func ErrorHint(err error) string {
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
