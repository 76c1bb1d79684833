package revocation

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// KeyPrefix starts every revocation key. The {revoked} hash tag keeps
	// the keys in one Redis Cluster slot, so the script and MGET that touch
	// several of them can run there.
	KeyPrefix = "sechard:{revoked}:"
	indexKey  = KeyPrefix + "index"
	// LegacyKeyPrefix is the layout before hash tags; still read from one
	// server so revocations written by earlier versions keep applying until
	// they expire.
	LegacyKeyPrefix = "sechard:revoked:"
)

// ReadRedis reads the live entries of the index, then the subject keys'
// times. An entry expires at its index score, set by the writer; a jti's exp
// is shown as that minus b's leeway. With legacy, the layout of earlier
// versions (keys without the hash tag) is read too, and both lists are
// returned together.
func ReadRedis(ctx context.Context, c redis.Cmdable, now time.Time, b Bounds, legacy bool) ([]Entry, error) {
	list, err := readLayout(ctx, c, now, b, KeyPrefix)
	if err != nil || !legacy {
		return list, err
	}
	old, err := readLayout(ctx, c, now, b, LegacyKeyPrefix)
	if err != nil {
		return nil, err
	}
	return append(list, old...), nil
}

// readLayout reads the revocations under one key prefix: its index, then
// its subject keys (all in the prefix's hash slot).
func readLayout(ctx context.Context, c redis.Cmdable, now time.Time, b Bounds, prefix string) ([]Entry, error) {
	members, err := c.ZRangeByScoreWithScores(ctx, prefix+"index", &redis.ZRangeBy{
		Min: strconv.FormatInt(now.Unix(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, err
	}
	var list []Entry
	var subKeys, subs []string
	var subExpires []int64
	for _, m := range members {
		name, _ := m.Member.(string)
		switch {
		case strings.HasPrefix(name, "jti:"):
			list = append(list, Entry{JTI: name[4:], Exp: int64(m.Score) - ceilSeconds(b.Leeway),
				Source: "redis", Expires: int64(m.Score)})
		case strings.HasPrefix(name, "sub:"):
			subs = append(subs, name[4:])
			subKeys = append(subKeys, prefix+name)
			subExpires = append(subExpires, int64(m.Score))
		}
	}
	if len(subKeys) > 0 {
		vals, err := c.MGet(ctx, subKeys...).Result()
		if err != nil {
			return nil, err
		}
		for i, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue // expired meanwhile
			}
			before, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				continue
			}
			list = append(list, Entry{Sub: subs[i], Before: &before, Source: "redis", Expires: subExpires[i]})
		}
	}
	return list, nil
}

// addScript stores one revocation atomically: its own key (a subject keeps
// the latest of its times), its index entry scored by expiry, and the
// index's own expiry at its latest entry, so every key leaves by itself.
// An entry's expiry only grows: nodes with a longer max_ttl may share it.
//
// KEYS[1] entry key, KEYS[2] index; ARGV[1] value, ARGV[2] expire-at (unix),
// ARGV[3] index member, ARGV[4] "max" to keep the larger numeric value.
var addScript = redis.NewScript(`
local value, expat = ARGV[1], tonumber(ARGV[2])
local curexp = tonumber(redis.call("ZSCORE", KEYS[2], ARGV[3]))
if curexp and curexp > expat then expat = curexp end
if ARGV[4] == "max" then
	local cur = tonumber(redis.call("GET", KEYS[1]) or "")
	if cur and cur > tonumber(value) then value = tostring(cur) end
end
redis.call("SET", KEYS[1], value)
redis.call("EXPIREAT", KEYS[1], expat)
redis.call("ZADD", KEYS[2], expat, ARGV[3])
local now = tonumber(redis.call("TIME")[1])
redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", "(" .. now)
local top = redis.call("ZRANGE", KEYS[2], -1, -1, "WITHSCORES")
if top[2] then redis.call("EXPIREAT", KEYS[2], top[2]) end
return expat
`)

// AddRedis writes one revocation to Redis; it expires at e.Expires.
func AddRedis(ctx context.Context, c redis.Scripter, e Entry) error {
	var member, value, keep string
	if e.JTI != "" {
		member = "jti:" + e.JTI
		value = strconv.FormatInt(e.Exp, 10)
	} else {
		member = "sub:" + e.Sub
		value = strconv.FormatInt(*e.Before, 10)
		keep = "max"
	}
	return addScript.Run(ctx, c, []string{KeyPrefix + member, indexKey},
		value, strconv.FormatInt(e.Expires, 10), member, keep).Err()
}
