package sechard

import (
	"context"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"

	"github.com/sechard/sechard/internal/redisconn"
	"github.com/sechard/sechard/internal/secrets"
)

// redisClients holds the Redis clients of every loaded config, one per
// distinct configuration (redisconn.Prepared.Key), across reloads.
var redisClients = caddy.NewUsagePool()

// pooledRedis is a client shared through redisClients; the last config
// using it closes it.
type pooledRedis struct{ redis.UniversalClient }

func (p pooledRedis) Destruct() error { return p.Close() }

// Interface guards
var _ caddy.Destructor = pooledRedis{}

// parseRedisArgs parses `[cluster|sentinel] <url> [password_secret NAME]
// [username NAME] [tls_ca FILE]`, the arguments of every Redis line; usage
// names the line in errors, which carry the Caddyfile's file and line.
func parseRedisArgs(d *caddyfile.Dispenser, usage string, args []string) (redisconn.Config, error) {
	rc, err := redisconn.ParseArgs(usage, args)
	if err != nil {
		return redisconn.Config{}, d.Errf("%s: %v", usage, err)
	}
	return rc, nil
}

// openRedis returns the shared client for rc and its pool key (release it
// with redisClients.Delete(key)). A new client is checked once
// (redisconn.Prepared.Check): a TLS failure or a topology that does not
// match the server fails the config load; a server that merely does not
// answer does not (the users fall back and log it, as for an outage).
func openRedis(ctx context.Context, rc redisconn.Config, p redisconn.Params, values secrets.Values) (redis.UniversalClient, string, error) {
	password := ""
	if rc.PasswordSecret != "" {
		sec, ok := values[rc.PasswordSecret]
		if !ok {
			return nil, "", fmt.Errorf("missing required secret: %s", rc.PasswordSecret)
		}
		password = sec.Value()
	}
	prepared, err := rc.Prepare(p, password)
	if err != nil {
		return nil, "", err
	}
	key := prepared.Key()
	fresh := false
	v, _, err := redisClients.LoadOrNew(key, func() (caddy.Destructor, error) {
		c, err := prepared.NewClient()
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
		if err := prepared.Check(ctx, c); err != nil {
			redisClients.Delete(key)
			return nil, "", err
		}
	}
	return c, key, nil
}
