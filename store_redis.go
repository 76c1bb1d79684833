package sechard

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

// redisStore will hold budgets in Redis (issue 5); not implemented yet.
type redisStore struct{}

func (c *RateLimit) provisionRedis(env *provisionEnv) error {
	return errors.New("store redis: not implemented yet")
}

func (s *redisStore) take(ex *exchange, c *RateLimit, now time.Time, client string, bs []budget) (bool, decision) {
	return true, allow
}

// shortDigest returns a short, stable hex digest of s.
func shortDigest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}
