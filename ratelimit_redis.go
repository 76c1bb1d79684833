package sechard

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/sechard/sechard/internal/ratelimit"
	"github.com/sechard/sechard/internal/redisconn"
)

// redisConfig is the store's Redis line.
func (c *RateLimit) redisConfig() redisconn.Config {
	return redisconn.Config{Topology: c.RedisTopology, URL: c.RedisURL, PasswordSecret: c.RedisPasswordSecret,
		Username: c.RedisUsername, TLSCA: c.RedisTLSCA}
}

func (c *RateLimit) setRedisConfig(rc redisconn.Config) {
	c.RedisTopology, c.RedisURL, c.RedisPasswordSecret = rc.Topology, rc.URL, rc.PasswordSecret
	c.RedisUsername, c.RedisTLSCA = rc.Username, rc.TLSCA
}

// requiredSecrets names the secrets the rate-limit config needs.
func (c *RateLimit) requiredSecrets() []string {
	if c == nil || c.Store != storeRedis {
		return nil
	}
	return c.redisConfig().RequiredSecrets()
}

// provisionRedis connects the Redis store. Its outages are logged here,
// once when one begins and once when it ends; what a request gets
// meanwhile is decided by spend, per on_store_error.
func (c *RateLimit) provisionRedis(env *provisionEnv) error {
	if c.RedisURL == "" {
		return errors.New("store redis needs a URL")
	}
	timeout := time.Duration(c.StoreTimeout)
	client, key, err := openRedis(env.Context, c.redisConfig(), redisconn.Params{Timeout: timeout, PoolSize: 64, MinIdle: 2}, env.secrets)
	if err != nil {
		return fmt.Errorf("store %w", err)
	}
	c.redisClient, c.redisPoolKey = client, key
	c.storeErrors = env.metrics.storeErrors(storeRedis)
	redacted, topology := redisconn.RedactURL(c.RedisURL), c.RedisTopology
	if topology == "" {
		topology = "server"
	}
	logger, onStoreError := c.logger, c.onStoreError
	c.redis = ratelimit.NewRedisStore(client, ratelimit.RedisOptions{
		Namespace: c.configDigest,
		Timeout:   timeout,
		OnFailure: func(err error, outageBegan bool) {
			redisconn.Failed(client)
			if !outageBegan {
				return
			}
			fields := []zap.Field{zap.String("store", redacted), zap.String("topology", topology),
				zap.String("on_store_error", onStoreError), zap.Error(err)}
			if h := redisconn.ErrorHint(err); h != "" {
				fields = append(fields, zap.String("hint", h))
			}
			logger.Error("rate-limit store unavailable; deciding without it until it answers again", fields...)
		},
		OnRecovery: func() {
			logger.Warn("rate-limit store available again; limits are shared again", zap.String("store", redacted))
		},
	})
	c.logger.Info("rate limits shared through redis",
		zap.String("store", redacted), zap.String("topology", topology),
		zap.String("on_store_error", onStoreError), zap.Duration("store_timeout", timeout))
	return nil
}
