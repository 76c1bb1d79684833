package redisconn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/sechard/sechard/internal/secrets"
)

// Topologies, as written after `redis` in the Caddyfile.
const (
	Standalone = "" // one server
	Cluster    = "cluster"
	Sentinel   = "sentinel"
)

// Config is what every Redis line says: `[cluster|sentinel] <url>
// [password_secret NAME] [username NAME] [tls_ca FILE]`.
type Config struct {
	Topology       string // Standalone, Cluster or Sentinel
	URL            string
	PasswordSecret string // the name of the secret holding the password
	Username       string
	TLSCA          string // a PEM file of CA certificates
}

// ParseArgs parses the arguments of a Redis line; usage names the line in
// the usage message.
func ParseArgs(usage string, args []string) (Config, error) {
	var c Config
	if len(args) > 0 && (args[0] == Cluster || args[0] == Sentinel) {
		c.Topology, args = args[0], args[1:]
	}
	if len(args) == 0 || len(args)%2 != 1 {
		return Config{}, fmt.Errorf("usage: %s [cluster|sentinel] <url> [password_secret <NAME>] [username <NAME>] [tls_ca <FILE>]", usage)
	}
	c.URL = args[0]
	var seen []string
	for i := 1; i < len(args); i += 2 {
		opt, val := args[i], args[i+1]
		if slices.Contains(seen, opt) {
			return Config{}, fmt.Errorf("%s given twice", opt)
		}
		seen = append(seen, opt)
		switch opt {
		case "password_secret":
			if err := secrets.CheckName(val); err != nil {
				return Config{}, err
			}
			c.PasswordSecret = val
		case "username":
			c.Username = val
		case "tls_ca":
			c.TLSCA = val
		default:
			return Config{}, fmt.Errorf("unknown option %q (want password_secret, username or tls_ca)", opt)
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate checks what can be checked without the secrets and files.
func (c Config) Validate() error {
	switch c.Topology {
	case Standalone, Cluster, Sentinel:
	default:
		return fmt.Errorf("unknown redis topology %q (want cluster, sentinel or none)", c.Topology)
	}
	if c.URL == "" {
		return errors.New("a redis URL is required")
	}
	tlsURL, err := c.checkURL()
	if err != nil {
		return err
	}
	if c.TLSCA != "" && !tlsURL {
		return fmt.Errorf("tls_ca needs a rediss:// URL, got %s", RedactURL(c.URL))
	}
	return nil
}

// checkURL parses the URL for its topology (only to check it); it reports
// whether the URL asks for TLS.
func (c Config) checkURL() (tlsURL bool, err error) {
	var tc *tls.Config
	switch c.Topology {
	case Cluster:
		var o *redis.ClusterOptions
		if o, err = redis.ParseClusterURL(c.URL); err == nil {
			tc = o.TLSConfig
		}
	case Sentinel:
		var o *redis.FailoverOptions
		if o, err = redis.ParseFailoverURL(c.URL); err == nil {
			tc = o.TLSConfig
			if o.MasterName == "" {
				err = errors.New("missing ?master_name=")
			}
		}
	default:
		var o *redis.Options
		if o, err = redis.ParseURL(c.URL); err == nil {
			tc = o.TLSConfig
		}
	}
	if err != nil {
		// The parse error may quote the URL; don't echo its password.
		msg := "invalid URL"
		if e := err.Error(); !strings.Contains(e, "://") && !strings.Contains(e, "@") {
			msg += " (" + e + ")"
		}
		return false, fmt.Errorf("%s %s: %s", c.describeTopology(), RedactURL(c.URL), msg)
	}
	return tc != nil, nil
}

func (c Config) describeTopology() string {
	if c.Topology == "" {
		return "redis"
	}
	return "redis " + c.Topology
}

// String describes the configuration for logs: topology and URL, without
// any password.
func (c Config) String() string {
	return c.describeTopology() + " " + RedactURL(c.URL)
}

// RequiredSecrets names the secrets the configuration needs.
func (c Config) RequiredSecrets() []string {
	if c.PasswordSecret == "" {
		return nil
	}
	return []string{c.PasswordSecret}
}

// RedactURL hides the password in a Redis URL, for logs and errors.
func RedactURL(raw string) string {
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
