package jwtverify

import (
	"hash/maphash"
	"sync"
	"time"
)

// tokenCache remembers tokens whose signature and claims were verified, with
// what the caller made of their claims, so a client repeating its token
// skips the signature check. It is bounded (cacheShards × cacheShardSize
// entries), and an entry lives until the token's exp plus leeway. A hit
// compares the full token string, so a hash collision can never stand in
// for a verified token; it also checks that the key that verified the token
// is still configured (a JWKS rotation that drops a key drops its tokens at
// once).
type tokenCache[T any] struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard[T]
}

const (
	cacheShards    = 16
	cacheShardSize = 10000 / cacheShards
	// maxCachedToken: larger tokens are verified every time (they are rare
	// and would make the cache's memory bound 8 KiB per entry).
	maxCachedToken = 4 << 10
)

type cacheShard[T any] struct {
	mu      sync.RWMutex
	entries map[uint64]*cacheEntry[T]
}

type cacheEntry[T any] struct {
	token   string
	value   T
	expires time.Time
	kid     string // "" for a token without kid
	key     *Key
}

func newTokenCache[T any]() *tokenCache[T] {
	c := &tokenCache[T]{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].entries = make(map[uint64]*cacheEntry[T])
	}
	return c
}

// get returns the cached value of token, if it has not expired at now and
// the key that verified it is still the one keys has for its kid.
func (c *tokenCache[T]) get(token string, now time.Time, keys *keySet) (value T, ok bool) {
	if c == nil || len(token) > maxCachedToken {
		return value, false
	}
	h := maphash.String(c.seed, token)
	s := &c.shards[h%cacheShards]
	s.mu.RLock()
	e := s.entries[h]
	s.mu.RUnlock()
	if e == nil || e.token != token || !now.Before(e.expires) || keys.lookup(e.kid) != e.key {
		return value, false
	}
	return e.value, true
}

func (c *tokenCache[T]) put(token string, value T, expires time.Time, kid string, key *Key, now time.Time) {
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
	s.entries[h] = &cacheEntry[T]{token: token, value: value, expires: expires, kid: kid, key: key}
}
