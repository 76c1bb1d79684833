package sechard

import (
	"hash/maphash"
	"sync"
	"time"
)

// tokenCache remembers tokens whose signature and claims were verified, so a
// client repeating its token skips the signature check. It is bounded
// (cacheShards × cacheShardSize entries), and an entry lives until the
// token's exp plus leeway. A hit compares the full token string, so a hash
// collision can never stand in for a verified token; it also checks that the
// key that verified the token is still configured (a JWKS rotation that
// drops a key drops its tokens at once). Revocation and certificate binding
// are not cached here: the caller checks them on every request (a bound
// token's identity carries the thumbprint its certificate must have).
type tokenCache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

const (
	cacheShards    = 16
	cacheShardSize = 10000 / cacheShards
	// maxCachedToken: larger tokens are verified every time (they are rare
	// and would make the cache's memory bound 8 KiB per entry).
	maxCachedToken = 4 << 10
)

type cacheShard struct {
	mu      sync.RWMutex
	entries map[uint64]*cacheEntry
}

type cacheEntry struct {
	token   string
	id      *identity
	expires time.Time
	kid     string
	key     *verifyKey
}

func newTokenCache() *tokenCache {
	c := &tokenCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].entries = make(map[uint64]*cacheEntry)
	}
	return c
}

func (c *tokenCache) get(token string, now time.Time, v *verifier) (*identity, bool) {
	if c == nil || len(token) > maxCachedToken {
		return nil, false
	}
	h := maphash.String(c.seed, token)
	s := &c.shards[h%cacheShards]
	s.mu.RLock()
	e := s.entries[h]
	s.mu.RUnlock()
	if e == nil || e.token != token || !now.Before(e.expires) {
		return nil, false
	}
	// The key must still be the one the token was verified with.
	ks := v.keys.Load()
	k := ks.byKID[e.kid]
	if e.kid == "" {
		k = ks.only
	}
	if k != e.key {
		return nil, false
	}
	return e.id, true
}

func (c *tokenCache) put(token string, id *identity, expires time.Time, kid string, key *verifyKey, now time.Time) {
	if c == nil || len(token) > maxCachedToken {
		return
	}
	h := maphash.String(c.seed, token)
	s := &c.shards[h%cacheShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.entries) >= cacheShardSize {
		for k, e := range s.entries {
			if !now.Before(e.expires) {
				delete(s.entries, k)
			}
		}
		// Still full: drop arbitrary entries (map order is random).
		for k := range s.entries {
			if len(s.entries) < cacheShardSize {
				break
			}
			delete(s.entries, k)
		}
	}
	s.entries[h] = &cacheEntry{token: token, id: id, expires: expires, kid: kid, key: key}
}

func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].entries)
		c.shards[i].mu.RUnlock()
	}
	return n
}
