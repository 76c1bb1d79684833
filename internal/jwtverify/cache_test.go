package jwtverify

import (
	"fmt"
	"testing"
	"time"

	"github.com/sechard/sechard/internal/jwttest"
)

func TestTokenCacheIsBoundedAndExpires(t *testing.T) {
	c := newTokenCache[*testIdentity]()
	k := &Key{KID: "k"}
	keys := newKeySet([]*Key{k})
	now := time.Unix(1_800_000_000, 0)
	id := &testIdentity{subject: "s"}
	for i := range 25000 {
		c.put(fmt.Sprintf("token-%d", i), id, now.Add(time.Minute), "k", k, now)
	}
	if n := c.len(); n > cacheShards*cacheShardSize {
		t.Fatalf("cache holds %d entries, bound is %d", n, cacheShards*cacheShardSize)
	}
	c.put("fresh", id, now.Add(time.Minute), "k", k, now)
	if got, ok := c.get("fresh", now, keys); !ok || got != id {
		t.Fatal("fresh entry missing")
	}
	if _, ok := c.get("fresh", now.Add(time.Minute), keys); ok {
		t.Fatal("entry served at its expiry")
	}
	// A different token never hits, whatever its hash.
	if _, ok := c.get("fresh2", now, keys); ok {
		t.Fatal("hit for a token never stored")
	}
	// The key that verified the token was replaced: no hit.
	if _, ok := c.get("fresh", now, newKeySet([]*Key{{KID: "k"}})); ok {
		t.Fatal("hit after the verifying key was replaced")
	}
	// A token without kid is tied to the only key.
	c.put("no-kid", id, now.Add(time.Minute), "", k, now)
	if _, ok := c.get("no-kid", now, keys); !ok {
		t.Fatal("token without kid missing")
	}
	if _, ok := c.get("no-kid", now, newKeySet([]*Key{k, {KID: "other"}})); ok {
		t.Fatal("token without kid served once its key is no longer the only one")
	}
}

// The cache of a Verifier drops a token at once when a JWKS refresh drops
// its key.
func TestVerifierCacheFollowsKeyRotation(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v := newTestVerifier(t, now, func(c *Config) { c.Algorithms = append(c.Algorithms, "EdDSA") }, "es256")
	tok := jwttest.Sign("ed", jwttest.Claims(now, nil), nil)
	v.keys.Store(newKeySet(v.static, []*Key{testKey("ed")}))
	first, err := v.Verify(tok, now)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := v.Verify(tok, now); again != first {
		t.Fatal("second verification not served from the cache")
	}
	v.keys.Store(newKeySet(v.static))
	if _, err := v.Verify(tok, now); kindOf(t, err) != UnknownKey {
		t.Fatalf("token of a dropped key: %v", err)
	}
}

// len counts the cached tokens, for tests.
func (c *tokenCache[T]) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].entries)
		c.shards[i].mu.RUnlock()
	}
	return n
}
