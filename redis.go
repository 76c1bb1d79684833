package sechard

import (
	"fmt"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// redisOptions parses a Redis URL (redis://, rediss://, unix://; password and
// DB number included) into client options fit for a request path. go-redis
// defaults suit batch jobs (5s dials, 3s reads, 3 retries, context deadlines
// ignored); here every call is bounded by its context deadline and timeout,
// and never retried, so an outage costs at most one timeout.
func redisOptions(rawURL string, timeout time.Duration) (*redis.Options, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		// The parse error may quote the URL; don't echo its password.
		return nil, fmt.Errorf("redis %s: invalid URL", redactURL(rawURL))
	}
	opts.ContextTimeoutEnabled = true
	opts.MaxRetries = -1
	opts.DialTimeout = max(timeout, 500*time.Millisecond)
	opts.DialerRetries = 1
	opts.ReadTimeout = timeout
	opts.WriteTimeout = timeout
	opts.PoolTimeout = timeout
	opts.DisableIdentity = true
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return opts, nil
}

// redactURL hides the password in a Redis URL, for logs and errors.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// parseRedisArgs parses `<url> [password_secret <NAME>]`, the arguments of
// every Redis line (`rate_limit { store redis … }`, `revocation { redis … }`);
// usage names the line in the error.
func parseRedisArgs(d *caddyfile.Dispenser, usage string, args []string) (url, secret string, err error) {
	if len(args) != 1 && !(len(args) == 3 && args[1] == "password_secret") {
		return "", "", d.Errf("usage: %s <url> [password_secret <NAME>]", usage)
	}
	if len(args) == 3 {
		secret = args[2]
		if !validSecretName(secret) {
			return "", "", d.Errf("invalid secret name %q: %s", secret, secretNameRule)
		}
	}
	return args[0], secret, nil
}

// setRedisPassword takes the password from the named secret (none: keep the
// URL's), so it never sits in the JSON config.
func setRedisPassword(opts *redis.Options, name string, secrets secretValues) error {
	if name == "" {
		return nil
	}
	sec, ok := secrets[name]
	if !ok {
		return fmt.Errorf("missing required secret: %s", name)
	}
	opts.Password = sec.Value()
	return nil
}
