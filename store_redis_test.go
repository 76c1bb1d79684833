package sechard

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/sechard/sechard/internal/secrets"
)

// TestRateLimitRedisMatchesMemory: the same request sequence gets the same
// answers and headers from either store.
func TestRateLimitRedisMatchesMemory(t *testing.T) {
	r := startRedis(t)
	const limits = `rate 5/1m burst 3
		route /nl-query/* 10/1m burst 2
		total 8/1m`
	mem, _ := newRedisRateLimit(t, limits, nil)
	red, _ := newRedisRateLimit(t, limits+"\nstore redis "+r.URL, nil)
	if red.redis == nil || mem.redis != nil {
		t.Fatal("stores not as configured")
	}
	seq := []struct{ ip, path string }{
		{"10.0.0.1", "/a"}, {"10.0.0.1", "/a"}, {"10.0.0.1", "/a"}, {"10.0.0.1", "/a"},
		{"10.0.0.1", "/nl-query/x"}, {"10.0.0.1", "/nl-query/y"}, {"10.0.0.1", "/nl-query/z"},
		{"10.0.0.2", "/a"}, {"10.0.0.1", "/b"}, {"10.0.0.1", "/c"}, {"10.0.0.1", "/d"},
		{"10.0.0.1", "/e"}, {"10.0.0.1", "/f"}, {"10.0.0.2", "/nl-query/x"}, {"10.0.0.1", "/x/../b"},
	}
	denied := 0
	for i, s := range seq {
		a, b := hit(mem, s.ip, s.path), hit(red, s.ip, s.path)
		summary := func(r rlResult) string {
			return fmt.Sprintf("%d policy=%s ratelimit=%s retry=%s", r.status,
				r.header.Get("RateLimit-Policy"), r.header.Get("RateLimit"), r.header.Get("Retry-After"))
		}
		if summary(a) != summary(b) {
			t.Errorf("request %d %s %s: memory %s, redis %s", i, s.ip, s.path, summary(a), summary(b))
		}
		if b.status == 429 {
			denied++
		}
	}
	if denied < 3 {
		t.Fatalf("the sequence should hit the limits; %d refusals", denied)
	}
}

// TestRateLimitRedisKeysHashTaggedAndExpiring: with total, both of a
// request's keys carry the client's hash tag (Redis Cluster), and keys
// expire by themselves once the budget is full again.
func TestRateLimitRedisKeysHashTaggedAndExpiring(t *testing.T) {
	r := startRedis(t)
	c, _ := newRedisRateLimit(t, "rate 10/1s burst 5\ntotal 20/1s\nstore redis "+r.URL, nil)
	if st := hit(c, "10.0.0.1", "/"+strings.Repeat("p", 10000)).status; st != 200 {
		t.Fatal(st)
	}
	cl := redisClient(t, r.Addr)
	ctx := context.Background()
	keys, err := cl.Keys(ctx, "sechard:rl:*").Result()
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys %v, %v", keys, err)
	}
	tag := func(k string) string { return k[strings.Index(k, "{"):strings.Index(k, "}")] }
	if tag(keys[0]) != tag(keys[1]) {
		t.Fatalf("keys of one request in different hash slots: %v", keys)
	}
	for _, k := range keys {
		if len(k) > 100 {
			t.Errorf("key %q: a long path must not make a long key", k)
		}
		ttl, _ := cl.PTTL(ctx, k).Result()
		if ttl <= 0 || ttl > 100*time.Millisecond {
			t.Errorf("key %s expires in %v, want (0, 100ms]: when its budget is full again", k, ttl)
		}
	}
	time.Sleep(150 * time.Millisecond)
	if n, _ := cl.Exists(ctx, keys...).Result(); n != 0 {
		t.Fatalf("%d keys still there after their budgets were full again", n)
	}
}

// TestRateLimitRedisOnStoreError: Redis unreachable → decided per
// on_store_error, never a 5xx, logged once.
func TestRateLimitRedisOnStoreError(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "redis://" + l.Addr().String() + "/0"
	l.Close() // nothing listens there now

	for _, tc := range []struct {
		onErr      string
		want       []int
		rateHeader bool
	}{
		{"local", []int{200, 200, 429, 429}, true},
		{"allow", []int{200, 200, 200, 200}, false},
		{"deny", []int{429, 429, 429, 429}, false},
	} {
		t.Run(tc.onErr, func(t *testing.T) {
			c, logs := newRedisRateLimit(t, "rate 2/1m\nstore redis "+deadURL+"\non_store_error "+tc.onErr, nil)
			var got []int
			for i := 0; i < 4; i++ {
				r := hit(c, "10.0.0.1", "/x")
				got = append(got, r.status)
				if (r.header.Get("RateLimit") != "") != tc.rateHeader {
					t.Errorf("request %d: RateLimit %q", i, r.header.Get("RateLimit"))
				}
				if tc.onErr == "deny" && r.header.Get("Retry-After") != "1" {
					t.Errorf("deny: Retry-After %q", r.header.Get("Retry-After"))
				}
			}
			if !equalInts(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if n := logs.FilterMessageSnippet("rate-limit store unavailable").Len(); n != 1 {
				t.Fatalf("%d outage log lines, want 1", n)
			}
			for _, e := range logs.All() {
				if strings.Contains(fmt.Sprint(e.ContextMap()), "\n") {
					t.Errorf("multi-line log field: %v", e.ContextMap())
				}
			}
		})
	}
}

// TestRateLimitRedisUnixSocketAndDB: a unix:// URL with a DB number.
func TestRateLimitRedisUnixSocketAndDB(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "redis.sock")
	startRedis(t, redisOptions{
		Extra: []string{"--unixsocket", sock},
		Ready: redisPingsWith(&redis.Options{Network: "unix", Addr: sock}),
	})
	c, logs := newRedisRateLimit(t, "rate 1/1m\nstore redis unix://"+sock+"?db=3", nil)
	if got := []int{hit(c, "10.0.0.1", "/x").status, hit(c, "10.0.0.1", "/x").status}; !equalInts(got, []int{200, 429}) {
		t.Fatalf("got %v; logs %v", got, logs.All())
	}
	cl := redis.NewClient(&redis.Options{Network: "unix", Addr: sock, DB: 3})
	defer cl.Close()
	if keys, _ := cl.Keys(context.Background(), "sechard:rl:*").Result(); len(keys) != 1 {
		t.Fatalf("keys in DB 3: %v", keys)
	}
}

// TestRateLimitRedisPassword: a password from a secret name, or in the URL;
// neither ever appears in logs.
func TestRateLimitRedisPassword(t *testing.T) {
	const pw = "s3cret-redis-pw"
	addr := startRedisWithPassword(t, pw).Addr

	c, logs := newRedisRateLimit(t, "rate 1/1m\nstore redis redis://"+addr+"/0 password_secret REDIS_PW",
		secrets.Values{"REDIS_PW": secrets.New(pw)})
	if got := c.requiredSecrets(); len(got) != 1 || got[0] != "REDIS_PW" {
		t.Fatalf("requiredSecrets %v", got)
	}
	if got := []int{hit(c, "10.0.0.1", "/x").status, hit(c, "10.0.0.1", "/x").status}; !equalInts(got, []int{200, 429}) {
		t.Fatalf("with the secret: %v", got)
	}
	if logs.FilterMessageSnippet("unavailable").Len() != 0 {
		t.Fatalf("redis refused the password: %v", logs.All())
	}

	inURL, logs2 := newRedisRateLimit(t, "rate 1/1m\nstore redis redis://:wrong-"+pw+"@"+addr+"/0", nil)
	hit(inURL, "10.0.0.1", "/x")
	if logs2.FilterMessageSnippet("unavailable").Len() != 1 {
		t.Fatalf("a wrong password must fail (and fall back): %v", logs2.All())
	}
	for _, e := range append(logs.All(), logs2.All()...) {
		if s := e.Message + fmt.Sprint(e.ContextMap()); strings.Contains(s, pw) {
			t.Fatalf("password in log line: %s", s)
		}
	}

	// A missing secret fails provisioning.
	bad, _ := parseRateLimit("rate 1/1m\nstore redis redis://" + addr + "/0 password_secret NOPE")
	ctx, cancel := newTestContext()
	defer cancel()
	if err := bad.provision(&provisionEnv{Context: ctx, logger: zap.NewNop(), now: time.Now}); err == nil ||
		!strings.Contains(err.Error(), "missing required secret: NOPE") {
		bad.cleanup()
		t.Fatalf("missing secret: %v", err)
	}
}

// redisSite is a site limiting through Redis.
func redisSite(r *redisServer, block string) string {
	return `http://127.0.0.1:{PORT} {
	sechard {
		rate_limit {
			store redis ` + r.URL + `
			` + block + `
		}
	}
	respond "ok"
}`
}

// alternate sends n GETs of path, alternating between servers.
func alternate(path string, n int, servers ...*caddyServer) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = servers[i%len(servers)].Get(path).StatusCode
	}
	return out
}

// TestRateLimitRedisSharedByTwoCaddies: a client alternating between two
// instances sharing one Redis is limited once, at the configured count.
func TestRateLimitRedisSharedByTwoCaddies(t *testing.T) {
	r := startRedis(t)
	s1 := startCaddy(t, redisSite(r, "rate 4/1m"))
	s2 := startCaddy(t, redisSite(r, "rate 4/1m"))
	if got, want := alternate("/q", 6, s1, s2), []int{200, 200, 200, 200, 429, 429}; !equalInts(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if v := s2.Get("/q").Header.Get("RateLimit"); v != `"default";r=0;t=60` {
		t.Fatalf("RateLimit on the second instance %q", v)
	}
}

// TestRateLimitRedisOutageAndRecovery: Redis killed mid-test → no 5xx,
// limiting continues locally, one log line per instance; Redis back →
// sharing resumes within seconds, logged once.
func TestRateLimitRedisOutageAndRecovery(t *testing.T) {
	r := startRedis(t)
	s1 := startCaddy(t, redisSite(r, "rate 3/1m"))
	s2 := startCaddy(t, redisSite(r, "rate 3/1m"))
	if got, want := alternate("/p1", 4, s1, s2), []int{200, 200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("shared: got %v, want %v", got, want)
	}

	r.Stop()
	if got, want := alternate("/p2", 4, s1), []int{200, 200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("during the outage (local memory): got %v, want %v", got, want)
	}
	// Keep asking across a few back-offs: probes fail, nothing more is logged.
	for deadline := time.Now().Add(2500 * time.Millisecond); time.Now().Before(deadline); {
		if st := s1.Get("/p2").StatusCode; st != 429 {
			t.Fatalf("during the outage: %d, want 429", st)
		}
		if st := s2.Get("/other").StatusCode; st >= 500 {
			t.Fatalf("during the outage: %d", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	outage := func(e map[string]any) bool {
		m, _ := e["msg"].(string)
		return strings.HasPrefix(m, "rate-limit store unavailable")
	}
	for _, s := range []*caddyServer{s1, s2} {
		n := 0
		for _, e := range s.LogEntries() {
			if outage(e) {
				n++
				if e["store"] != r.URL {
					t.Errorf("outage log names store %v", e["store"])
				}
			}
		}
		if n != 1 {
			t.Fatalf("%d outage log lines, want 1; logs:\n%s", n, s.Logs())
		}
	}

	r.Start()
	back := func(e map[string]any) bool {
		m, _ := e["msg"].(string)
		return strings.HasPrefix(m, "rate-limit store available again")
	}
	probe := 0
	took := waitFor(t, 5*time.Second, "sharing resumes on both instances", func() bool {
		probe++
		s1.Get(fmt.Sprintf("/probe%d", probe))
		s2.Get(fmt.Sprintf("/probe%d", probe))
		return hasLog(s1, back) && hasLog(s2, back)
	})
	t.Logf("sharing resumed %v after restart", took.Round(time.Millisecond))
	if got, want := alternate("/p3", 4, s1, s2), []int{200, 200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("shared again: got %v, want %v", got, want)
	}
}

func hasLog(s *caddyServer, match func(map[string]any) bool) bool {
	for _, e := range s.LogEntries() {
		if match(e) {
			return true
		}
	}
	return false
}

// TestRateLimitRedisSlowAnsweredWithinTimeout: a Redis that stops answering
// (SIGSTOP) costs a request at most store_timeout plus a small margin.
func TestRateLimitRedisSlowAnsweredWithinTimeout(t *testing.T) {
	r := startRedis(t)
	s := startCaddy(t, redisSite(r, "rate 100/1m\nstore_timeout 50ms"))
	if st := s.Get("/warm").StatusCode; st != 200 {
		t.Fatal(st)
	}
	if err := r.Process().Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer r.Process().Signal(syscall.SIGCONT)
	// The margin covers a loaded CI machine; go-redis's defaults would
	// hang for 3s and retry.
	const budget = 50*time.Millisecond + 250*time.Millisecond
	for i := 0; i < 5; i++ {
		start := time.Now()
		resp := s.Get(fmt.Sprintf("/slow%d", i))
		if took := time.Since(start); took > budget {
			t.Fatalf("request %d took %v with Redis paused, want ≤ %v", i, took, budget)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
}

// TestRateLimitRedisPasswordNotInCaddyLogs: a password in the URL never
// reaches Caddy's logs (only the redacted URL is logged).
func TestRateLimitRedisPasswordNotInCaddyLogs(t *testing.T) {
	const pw = "url-pw-9f3k2"
	s := startCaddy(t, `http://127.0.0.1:{PORT} {
	sechard {
		rate_limit {
			rate 5/1m
			store redis redis://:`+pw+`@127.0.0.1:1/0
		}
	}
	respond "ok"
}`)
	if st := s.Get("/x").StatusCode; st != 200 {
		t.Fatalf("status %d", st)
	}
	s.WaitLog(func(e map[string]any) bool {
		m, _ := e["msg"].(string)
		return strings.HasPrefix(m, "rate-limit store unavailable")
	}, 5*time.Second)
	if strings.Contains(s.Logs(), pw) {
		t.Fatalf("password in logs:\n%s", s.Logs())
	}
}
