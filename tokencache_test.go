package sechard

import (
	"fmt"
	"testing"
	"time"
)

func TestTokenCacheIsBoundedAndExpires(t *testing.T) {
	c := newTokenCache()
	k := &verifyKey{kid: "k"}
	v := &verifier{}
	v.keys.Store(newKeySet([]*verifyKey{k}))
	now := time.Unix(1_800_000_000, 0)
	id := &identity{subject: "s"}
	for i := range 25000 {
		c.put(fmt.Sprintf("token-%d", i), id, now.Add(time.Minute), "k", k, now)
	}
	if n := c.len(); n > cacheShards*cacheShardSize {
		t.Fatalf("cache holds %d entries, bound is %d", n, cacheShards*cacheShardSize)
	}
	c.put("fresh", id, now.Add(time.Minute), "k", k, now)
	if got, ok := c.get("fresh", now, v); !ok || got != id {
		t.Fatal("fresh entry missing")
	}
	if _, ok := c.get("fresh", now.Add(time.Minute), v); ok {
		t.Fatal("entry served at its expiry")
	}
	// A different token never hits, whatever its hash.
	if _, ok := c.get("fresh2", now, v); ok {
		t.Fatal("hit for a token never stored")
	}
	// The key that verified the token was replaced: no hit.
	v.keys.Store(newKeySet([]*verifyKey{{kid: "k"}}))
	if _, ok := c.get("fresh", now, v); ok {
		t.Fatal("hit after the verifying key was replaced")
	}
}
