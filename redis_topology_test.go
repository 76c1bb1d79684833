package sechard

// Redis topologies for real, on loopback: a 3-master Redis Cluster, a
// primary + replica + Sentinel, a TLS-only server, and an ACL user with only
// the commands sechard needs. Every server is started by the test.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/sechard/sechard/internal/ratelimit"
	"github.com/sechard/sechard/internal/redisconn"
	"github.com/sechard/sechard/internal/redistest"
)

// TestRedisLineParsing: the three forms and their options, for both users
// of Redis; mistakes are config errors naming the Caddyfile line.
func TestRedisLineParsing(t *testing.T) {
	good := []struct {
		line string
		want redisconn.Config
	}{
		{"redis://127.0.0.1:6379/0", redisconn.Config{URL: "redis://127.0.0.1:6379/0"}},
		{"redis://h:1/0 password_secret REDIS_PW", redisconn.Config{URL: "redis://h:1/0", PasswordSecret: "REDIS_PW"}},
		{"cluster redis://a:7001?addr=b:7002&addr=c:7003 username sechard password_secret PW",
			redisconn.Config{Topology: "cluster", URL: "redis://a:7001?addr=b:7002&addr=c:7003", Username: "sechard", PasswordSecret: "PW"}},
		{"sentinel rediss://s1:26379?master_name=m&addr=s2:26379 tls_ca /etc/ca.pem username u",
			redisconn.Config{Topology: "sentinel", URL: "rediss://s1:26379?master_name=m&addr=s2:26379", TLSCA: "/etc/ca.pem", Username: "u"}},
		{"rediss://h:6380/0 tls_ca ca.pem", redisconn.Config{URL: "rediss://h:6380/0", TLSCA: "ca.pem"}},
	}
	for _, tc := range good {
		c, err := parseRateLimit("rate 1/1s\nstore redis " + tc.line)
		if err != nil {
			t.Fatalf("store redis %s: %v", tc.line, err)
		}
		if got := c.redisConfig(); got != tc.want || c.Store != storeRedis {
			t.Errorf("store redis %s: %+v, want %+v", tc.line, got, tc.want)
		}
		d := caddyfile.NewTestDispenser("revocation {\nredis " + tc.line + "\n}")
		d.Next()
		rv := new(Revocation)
		if err := rv.unmarshalCaddyfile(d); err != nil {
			t.Fatalf("revocation redis %s: %v", tc.line, err)
		}
		if got := rv.redisConfig(); got != tc.want {
			t.Errorf("revocation redis %s: %+v, want %+v", tc.line, got, tc.want)
		}
	}
	bad := []struct{ line, want string }{
		{"", "usage"},
		{"cluster", "usage"},
		{"redis://h:1/0 password_secret", "usage"},
		{"redis://h:1/0 tls_ca ca.pem", "tls_ca needs a rediss:// URL"},
		{"redis://h:1/0 passwort_secret X", `unknown option "passwort_secret"`},
		{"redis://h:1/0 username a username b", "username given twice"},
		{"redis://h:1/0 password_secret bad-name", "invalid secret name"},
		{"sentinel redis://s:26379", "master_name"},
		{"http://:pw-in-url@h:1/0", "invalid URL"},
		{"cluster redis://h:1?bogus=1", "invalid URL"},
	}
	for _, tc := range bad {
		_, err := parseRateLimit("rate 1/1s\n\nstore redis " + tc.line)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Testfile:4") {
			t.Errorf("store redis %s: error %v, want %q at line 4", tc.line, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "pw-in-url") {
			t.Errorf("error quotes the password: %v", err)
		}
	}
}

// TestRedisClusterOnPlainServerFailsLoad: `cluster` against a server
// without cluster support is a config error at load, while an unreachable
// Redis is not (decisions fall back, as in any outage).
func TestRedisClusterOnPlainServerFailsLoad(t *testing.T) {
	r := startRedis(t)
	c, err := parseRateLimit("rate 1/1m\nstore redis cluster redis://" + r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := newTestContext()
	defer cancel()
	env := &provisionEnv{Context: ctx, logger: zap.NewNop(), now: time.Now}
	if err := c.provision(env); err == nil || !strings.Contains(err.Error(), "cluster support disabled") {
		c.cleanup()
		t.Fatalf("provision: %v, want a config error", err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	for _, line := range []string{"redis redis://" + dead, "redis cluster redis://" + dead} {
		c, _ := parseRateLimit("rate 1/1m\nstore " + line)
		if err := c.provision(env); err != nil {
			t.Fatalf("store %s: %v; an unreachable Redis must not fail the load", line, err)
		}
		c.cleanup()
	}
}

// redisBaseArgs are the arguments every test server gets.
func redisBaseArgs(port int, dir string) []string {
	return []string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
		"--repl-diskless-sync-delay", "0"}
}

// testCluster is a 3-master Redis Cluster on loopback.
type testCluster struct {
	nodes []*redisServer
	URL   string // redis://seed?addr=…&addr=…
}

// startRedisCluster starts three masters (with a replica each when
// replicas), joins them with `redis-cli --cluster create` and waits until
// the cluster is ok.
func startRedisCluster(t testing.TB, replicas bool) *testCluster {
	t.Helper()
	cli := requireTool(t, "redis-cli")
	requireTool(t, "redis-server")
	dir := t.TempDir()
	tc := &testCluster{}
	var addrs []string
	size, perMaster := 3, "0"
	if replicas {
		size, perMaster = 6, "1"
	}
	for range size {
		port := freePort(t)
		args := append(redisBaseArgs(port, dir), "--cluster-enabled", "yes",
			"--cluster-config-file", fmt.Sprintf("nodes-%d.conf", port),
			"--cluster-port", fmt.Sprint(freePort(t)), "--cluster-node-timeout", "1000")
		n := startRedis(t, redisOptions{Port: port, Args: args})
		tc.nodes = append(tc.nodes, n)
		addrs = append(addrs, n.Addr)
	}
	out, err := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...),
		"--cluster-replicas", perMaster, "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	tc.URL = "redis://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2]
	waitFor(t, 15*time.Second, "cluster state ok on every node", func() bool {
		for _, n := range tc.nodes {
			c := redis.NewClient(&redis.Options{Addr: n.Addr})
			info, err := c.ClusterInfo(context.Background()).Result()
			c.Close()
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", size)) {
				return false
			}
			// A replica that has not synced yet could not take over.
			c = redis.NewClient(&redis.Options{Addr: n.Addr})
			repl, err := c.Info(context.Background(), "replication").Result()
			c.Close()
			if err != nil || strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
				return false
			}
		}
		return true
	})
	return tc
}

// eachNode runs fn with a plain client on every node.
func (tc *testCluster) eachNode(t testing.TB, fn func(addr string, c *redis.Client)) {
	t.Helper()
	for _, n := range tc.nodes {
		c := redis.NewClient(&redis.Options{Addr: n.Addr})
		fn(n.Addr, c)
		c.Close()
	}
}

// sechardACL is the Redis ACL rule for sechard's user: the commands both
// users of Redis need (README: "Redis ACL user"), on sechard's keys only.
// `cluster|slots` is for Redis Cluster clients.
var sechardACL = []string{"on", "resetkeys", "~sechard:*", "resetchannels", "-@all",
	"+evalsha", "+eval", "+get", "+set", "+time", "+mget",
	"+zadd", "+zscore", "+zrange", "+zrangebyscore", "+zremrangebyscore", "+expireat",
	"+ping", "+cluster|slots"}

func aclSetUser(ctx context.Context, c *redis.Client, user, password string) error {
	args := []any{"acl", "setuser", user, "reset"}
	for _, r := range sechardACL {
		args = append(args, r)
	}
	args = append(args, ">"+password)
	return c.Do(ctx, args...).Err()
}

// topologySite is a site with a rate limit per X-Client header (routes
// under /rl/ only) and auth with a revocation list, both on one Redis line.
func topologySite(pub, redisLine, rlExtra string) string {
	return fmt.Sprintf(`http://127.0.0.1:{PORT} {
	sechard {
		rate_limit {
			key {http.request.header.X-Client}
			rate 100000/1m
			route /rl/* 3/1m
			store %s
			%s
		}
		auth {
			phase jwt_only
			public /rl/*
			jwt {
				public_key %s
			}
			revocation {
				%s
				cache_ttl 300ms
			}
		}
	}
	respond "ok"
}`, redisLine, rlExtra, pub, redisLine)
}

// alternateClient sends n GETs of path as client, alternating servers.
func alternateClient(client, path string, n int, servers ...*caddyServer) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = servers[i%len(servers)].Get(path, "X-Client", client).StatusCode
	}
	return out
}

// storeTrouble returns the log lines saying Redis failed, for either user.
func storeTrouble(s *caddyServer) []string {
	var out []string
	for _, e := range s.LogEntries() {
		m, _ := e["msg"].(string)
		if strings.HasPrefix(m, "rate-limit store unavailable") || strings.HasPrefix(m, "revocation redis unreachable") {
			out = append(out, fmt.Sprint(e))
		}
	}
	return out
}

// countMsg counts log entries whose message starts with prefix.
func countMsg(s *caddyServer, prefix string) int {
	n := 0
	for _, e := range s.LogEntries() {
		if m, _ := e["msg"].(string); strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

// TestRedisClusterSharedLimitsAndRevocations: two Caddy instances on a
// 3-master Cluster, authenticated as an ACL user with only sechard's
// commands, share one limit per client for clients whose keys land on all
// three masters; a revocation posted to one reaches the other within
// cache_ttl; no store error at any point; the password is nowhere.
func TestRedisClusterSharedLimitsAndRevocations(t *testing.T) {
	tc := startRedisCluster(t, false)
	const pw = "cluster-acl-pw-7Hq2"
	tc.eachNode(t, func(addr string, c *redis.Client) {
		if err := aclSetUser(context.Background(), c, "sechard", pw); err != nil {
			t.Fatalf("ACL SETUSER on %s: %v", addr, err)
		}
	})
	priv, pub, _ := keygen(t, "EdDSA")
	site := topologySite(pub, "redis cluster "+tc.URL+" username sechard password_secret SECHARD_T_CLUSTER_PW", "")
	env := caddyOptions{Env: []string{"SECHARD_T_CLUSTER_PW=" + pw}}
	a := startCaddy(t, site, env)
	b := startCaddy(t, site, env)

	const clients = 24
	for i := range clients {
		client := fmt.Sprintf("client-%d", i)
		if got, want := alternateClient(client, "/rl/x", 4, a, b), []int{200, 200, 200, 429}; !equalInts(got, want) {
			t.Fatalf("%s: got %v, want %v; logs:\n%s", client, got, want, a.Logs())
		}
	}
	// The budgets' keys are spread over every master.
	perNode := map[string]int{}
	total := 0
	tc.eachNode(t, func(addr string, c *redis.Client) {
		keys, err := c.Keys(context.Background(), "sechard:rl:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			slot, err := c.ClusterKeySlot(context.Background(), k).Result()
			if err != nil {
				t.Fatal(err)
			}
			owner := slotOwner(t, c, slot)
			if owner != addr {
				t.Errorf("key %s (slot %d) on %s, owned by %s", k, slot, addr, owner)
			}
		}
		perNode[addr] = len(keys)
		total += len(keys)
	})
	if total != clients || len(perNode) != 3 {
		t.Fatalf("keys per master %v, want %d keys in all", perNode, clients)
	}
	for addr, n := range perNode {
		if n == 0 {
			t.Fatalf("no budget on master %s: keys per master %v", addr, perNode)
		}
	}
	t.Logf("budget keys per master: %v", perNode)

	// Revocation through a's admin API reaches b within cache_ttl.
	tok, _ := mintToken(t, priv, "service-bi")
	requireStatus(t, a, tok, http.StatusOK)
	requireStatus(t, b, tok, http.StatusOK)
	if out, err := runCaddy(t, nil, "sechard", "revoke", "--address", a.AdminAddr, "--token", tok); err != nil {
		t.Fatalf("revoke on a: %v\n%s", err, out)
	}
	requireStatus(t, a, tok, http.StatusUnauthorized)
	took := waitFor(t, 300*time.Millisecond+700*time.Millisecond, "revocation reaches b", func() bool {
		return b.Get("/data", "Authorization", "Bearer "+tok).StatusCode == http.StatusUnauthorized
	})
	t.Logf("b refused the revoked token %v after the revocation", took)
	// The revocation's keys share one slot (the {revoked} tag).
	tc.eachNode(t, func(addr string, c *redis.Client) {
		keys, _ := c.Keys(context.Background(), "sechard:{revoked}:*").Result()
		if len(keys) != 0 && len(keys) != 2 {
			t.Errorf("revocation keys on %s: %v, want the jti key and the index together", addr, keys)
		}
	})

	for _, s := range []*caddyServer{a, b} {
		if tr := storeTrouble(s); len(tr) != 0 {
			t.Fatalf("store errors logged: %v", tr)
		}
		if strings.Contains(s.Logs(), pw) {
			t.Fatal("password in Caddy's logs")
		}
	}
	requireNoPasswordInConfig(t, a, site, pw)

	// A one-server URL pointed at a cluster node is not silently a
	// per-instance limit: the outage line says what is wrong.
	one, logs := newRedisRateLimit(t, "key {http.request.header.X-Client}\nrate 5/1m\nstore redis redis://"+
		tc.nodes[0].Addr+"/0", nil)
	for i := 0; i < 30 && logs.FilterMessageSnippet("rate-limit store unavailable").Len() == 0; i++ {
		hit(one, "10.0.0.1", "/x", "X-Client", fmt.Sprintf("moved-%d", i))
	}
	out := logs.FilterMessageSnippet("rate-limit store unavailable").All()
	if len(out) != 1 || !strings.Contains(fmt.Sprint(out[0].ContextMap()["hint"]), "redis cluster <url>") {
		t.Fatalf("outage lines %v, want one with a hint to use `redis cluster`", out)
	}
}

// TestRevocationRedisLegacyLayoutStillRead: revocations written by earlier
// versions (keys without the hash tag) keep applying on one server.
func TestRevocationRedisLegacyLayoutStillRead(t *testing.T) {
	r := startRedis(t)
	c := redisClient(t, r.Addr)
	ctx := context.Background()
	now := time.Now()
	exp := now.Unix() + 600
	if err := c.ZAdd(ctx, "sechard:revoked:index", redis.Z{Score: float64(exp), Member: "jti:old-jti"},
		redis.Z{Score: float64(exp), Member: "sub:old-sub"}).Err(); err != nil {
		t.Fatal(err)
	}
	c.Set(ctx, "sechard:revoked:jti:old-jti", exp-30, 0)
	c.Set(ctx, "sechard:revoked:sub:old-sub", now.Unix(), 0)
	env, _ := newTestEnv(t)
	rv := provisionRevocation(t, env, &Revocation{Redis: r.URL})
	if !rv.revoked("old-jti", "", now) || !rv.revoked("", "old-sub", now.Add(-time.Minute)) || rv.revoked("", "old-sub", now.Add(time.Minute)) {
		t.Fatalf("legacy entries not applied: %+v", rv.entries())
	}
}

// slotOwner returns the address of the master serving slot.
func slotOwner(t *testing.T, c *redis.Client, slot int64) string {
	t.Helper()
	slots, err := c.ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) {
			return s.Nodes[0].Addr
		}
	}
	return ""
}

// requireNoPasswordInConfig: neither `caddy adapt` nor the admin API's
// config shows the password; both name the secret.
func requireNoPasswordInConfig(t *testing.T, s *caddyServer, site, pw string) {
	t.Helper()
	cfg, err := http.Get("http://" + s.AdminAddr + "/config/")
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(cfg)
	cfg.Body.Close()
	if strings.Contains(body, pw) || !strings.Contains(body, `"redis_password_secret":"`) {
		t.Fatalf("admin API config: %s", body)
	}
	file := filepath.Join(t.TempDir(), "Caddyfile")
	writeTestFile(t, file, s.caddyfile(site))
	out, err := runCaddy(t, nil, "adapt", "--config", file, "--adapter", "caddyfile")
	if err != nil {
		t.Fatalf("caddy adapt: %v\n%s", err, out)
	}
	if strings.Contains(out, pw) || !strings.Contains(out, `"redis_password_secret":"`) {
		t.Fatalf("caddy adapt output: %s", out)
	}
}

// TestRedisSentinelFailover: under steady load through two instances, the
// primary dies; decisions fall back locally (never a 5xx), and once
// Sentinel has promoted the replica the instances share limits again
// within 10 s, each logging exactly one outage and one recovery line.
func TestRedisSentinelFailover(t *testing.T) {
	dir := t.TempDir()
	pport, rport, sport := freePort(t), freePort(t), freePort(t)
	primary := startRedis(t, redisOptions{Port: pport, Args: redisBaseArgs(pport, t.TempDir())})
	startRedis(t, redisOptions{Port: rport, Args: append(redisBaseArgs(rport, t.TempDir()), "--replicaof", "127.0.0.1", fmt.Sprint(pport))})
	conf := filepath.Join(dir, "sentinel.conf")
	writeTestFile(t, conf, fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
sentinel monitor m 127.0.0.1 %d 1
sentinel down-after-milliseconds m 1000
sentinel failover-timeout m 2000
`, sport, dir, pport))
	startRedis(t, redisOptions{Port: sport, Args: []string{conf, "--sentinel"}})
	sc := redis.NewSentinelClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", sport)})
	defer sc.Close()

	waitFor(t, 15*time.Second, "sentinel sees the replica", func() bool {
		reps, err := sc.Replicas(context.Background(), "m").Result()
		return err == nil && len(reps) == 1 && reps[0]["master-link-status"] == "ok"
	})

	url := fmt.Sprintf("redis://127.0.0.1:%d?master_name=m", sport)
	site := `http://127.0.0.1:{PORT} {
	sechard {
		rate_limit {
			key {http.request.header.X-Client}
			rate 3/1m
			store redis sentinel ` + url + `
		}
	}
	respond "ok"
}`
	a := startCaddy(t, site)
	b := startCaddy(t, site)
	if got, want := alternateClient("before", "/x", 4, a, b), []int{200, 200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("before the failover: got %v, want %v", got, want)
	}

	stopLoad := steadyLoad(a, b)
	time.Sleep(300 * time.Millisecond)
	killed := time.Now()
	primary.Stop()

	// Shared again: a fresh client alternating between a and b is limited
	// once, at the configured count.
	var took time.Duration
	for i := 0; ; i++ {
		got := alternateClient(fmt.Sprintf("after-%d", i), "/x", 4, a, b)
		if equalInts(got, []int{200, 200, 200, 429}) && countMsg(a, "rate-limit store available again") == 1 &&
			countMsg(b, "rate-limit store available again") == 1 {
			took = time.Since(killed)
			break
		}
		if time.Since(killed) > 10*time.Second {
			stopLoad()
			t.Fatalf("limits not shared again 10s after the primary died (last %v); logs:\n%s", got, a.Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("limits shared again %v after the primary died", took.Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond) // more load on the new primary
	if sent, bad := stopLoad(); bad != 0 || sent < 100 {
		t.Fatalf("%d 5xx or failed requests out of %d", bad, sent)
	}
	requireOneOutageEach(t, a, b)
}

// steadyLoad sends requests from many clients to each server, one every
// 10ms per server, until the returned stop is called; stop reports how
// many were answered and how many failed or got a 5xx.
func steadyLoad(servers ...*caddyServer) (stop func() (sent, bad int64)) {
	var done atomic.Bool
	var wg sync.WaitGroup
	var n, fail atomic.Int64
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !done.Load() && i < 5000; i++ {
				req, _ := http.NewRequest(http.MethodGet, s.URL+"/load", nil)
				req.Header.Set("X-Client", fmt.Sprintf("load-%d", i%64))
				resp, err := noRedirectClient.Do(req)
				if err != nil {
					fail.Add(1)
					continue
				}
				resp.Body.Close()
				n.Add(1)
				if resp.StatusCode >= 500 {
					fail.Add(1)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	return func() (int64, int64) {
		done.Store(true)
		wg.Wait()
		return n.Load(), fail.Load()
	}
}

// requireOneOutageEach: each server logged exactly one outage and one
// recovery of the rate-limit store.
func requireOneOutageEach(t *testing.T, servers ...*caddyServer) {
	t.Helper()
	for name, s := range servers {
		out, back := countMsg(s, "rate-limit store unavailable"), countMsg(s, "rate-limit store available again")
		if out != 1 || back != 1 {
			t.Fatalf("instance %d: %d outage and %d recovery lines, want 1 and 1; logs:\n%s", name, out, back, s.Logs())
		}
	}
}

// TestRedisClusterMasterLoss: a Cluster master dies under steady load
// through two instances; its replica takes over; no 5xx at any point, one
// outage and one recovery line per instance, and limits are shared again
// for clients on every master.
func TestRedisClusterMasterLoss(t *testing.T) {
	tc := startRedisCluster(t, true)
	site := `http://127.0.0.1:{PORT} {
	sechard {
		rate_limit {
			key {http.request.header.X-Client}
			rate 3/1m
			store redis cluster ` + tc.URL + `
		}
	}
	respond "ok"
}`
	a := startCaddy(t, site)
	b := startCaddy(t, site)
	if got, want := alternateClient("before", "/x", 4, a, b), []int{200, 200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("before: got %v, want %v", got, want)
	}
	var victim *redisServer
	tc.eachNode(t, func(addr string, c *redis.Client) {
		if victim == nil {
			if role, _ := c.Do(context.Background(), "role").Slice(); len(role) > 0 && role[0] == "master" {
				for _, n := range tc.nodes {
					if n.Addr == addr {
						victim = n
					}
				}
			}
		}
	})
	stopLoad := steadyLoad(a, b)
	time.Sleep(300 * time.Millisecond)
	killed := time.Now()
	victim.Stop()
	for countMsg(a, "rate-limit store available again") == 0 || countMsg(b, "rate-limit store available again") == 0 {
		if time.Since(killed) > 15*time.Second {
			stopLoad()
			var nodes string
			tc.eachNode(t, func(addr string, c *redis.Client) {
				if addr != victim.Addr && nodes == "" {
					nodes, _ = c.ClusterNodes(context.Background()).Result()
				}
			})
			t.Fatalf("no recovery 15s after master %s died; cluster nodes:\n%s\nlogs:\n%s", victim.Addr, nodes, a.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("recovered %v after master %s died", time.Since(killed).Round(time.Millisecond), victim.Addr)
	for i := range 16 {
		client := fmt.Sprintf("after-%d", i)
		if got, want := alternateClient(client, "/x", 4, a, b), []int{200, 200, 200, 429}; !equalInts(got, want) {
			stopLoad()
			t.Fatalf("%s after recovery: got %v, want %v", client, got, want)
		}
	}
	if sent, bad := stopLoad(); bad != 0 || sent < 100 {
		t.Fatalf("%d 5xx or failed requests out of %d", bad, sent)
	}
	requireOneOutageEach(t, a, b)
}

// TestRedisTLSWithCA: rediss:// with tls_ca works at the default 50ms
// store_timeout (shared by two instances, no store error); a wrong CA, or
// none, fails the config load with a clear error.
func TestRedisTLSWithCA(t *testing.T) {
	dir := t.TempDir()
	redisCA := newMTLSCA(t, dir, "redis-ca")
	ca, wrongCA := redisCA.path, newMTLSCA(t, dir, "wrong-ca").path
	_, _, cert, key := redisCA.issue(t, dir, "redis", mtlsCertSpec{cn: "redis", ips: []net.IP{net.ParseIP("127.0.0.1")}, server: true})
	port := freePort(t)
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(ca)
	pool.AppendCertsFromPEM(caPEM)
	startRedis(t, redisOptions{
		Port: port,
		Args: []string{"--port", "0", "--tls-port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", t.TempDir(), "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca,
			"--tls-auth-clients", "no"},
		Ready: redisPingsWith(&redis.Options{TLSConfig: tlsConfigFor(pool), Protocol: 2}),
	})
	url := fmt.Sprintf("rediss://127.0.0.1:%d/0", port)
	site := func(extra string) string {
		return `http://127.0.0.1:{PORT} {
	sechard {
		rate_limit {
			key {http.request.header.X-Client}
			rate 3/1m
			store redis ` + url + extra + `
		}
	}
	respond "ok"
}`
	}
	a := startCaddy(t, site(" tls_ca "+ca))
	b := startCaddy(t, site(" tls_ca "+ca))
	// Many decisions over reused TLS connections, each within 50ms.
	for i := range 30 {
		client := fmt.Sprintf("tls-%d", i)
		if got, want := alternateClient(client, "/x", 4, a, b), []int{200, 200, 200, 429}; !equalInts(got, want) {
			t.Fatalf("%s: got %v, want %v; logs:\n%s", client, got, want, a.Logs())
		}
	}
	for _, s := range []*caddyServer{a, b} {
		if tr := storeTrouble(s); len(tr) != 0 {
			t.Fatalf("store errors over TLS at the default store_timeout: %v", tr)
		}
	}

	for _, tc := range []struct{ extra, want string }{
		{" tls_ca " + wrongCA, "certificate signed by unknown authority"},
		{"", "name the CA that signed the server's certificate with tls_ca"},
	} {
		s := startCaddy(t, site(tc.extra), caddyOptions{ExpectFail: true})
		if code, _ := s.ExitCode(); code == 0 || !strings.Contains(s.Logs(), tc.want) || !strings.Contains(s.Logs(), url) {
			t.Fatalf("load with%s: exit %d, want a failure saying %q and naming %s; logs:\n%s", tc.extra, code, tc.want, url, s.Logs())
		}
		found := false
		for _, line := range strings.Split(s.Logs(), "\n") {
			if strings.Contains(line, "store redis "+url+": ") && strings.Contains(line, tc.want) {
				t.Logf("load with%s: %s", tc.extra, line[strings.Index(line, "store redis"):])
				found = true
				break
			}
		}
		if !found {
			t.Fatalf("load with%s: no error naming the store and saying %q; logs:\n%s", tc.extra, tc.want, s.Logs())
		}
	}
}

// TestRedisACLUserPasswordSecret: a Redis user allowed only the commands
// the README lists works for rate limits and revocations; its password
// comes from a secret and is nowhere in adapt output, admin API or logs.
func TestRedisACLUserPasswordSecret(t *testing.T) {
	r := startRedis(t)
	const pw = "acl-user-pw-Zk81"
	admin := redisClient(t, r.Addr)
	if err := aclSetUser(context.Background(), admin, "sechard", pw); err != nil {
		t.Fatal(err)
	}
	priv, pub, _ := keygen(t, "EdDSA")
	site := topologySite(pub, "redis "+r.URL+" username sechard password_secret SECHARD_T_ACL_PW", "")
	env := caddyOptions{Env: []string{"SECHARD_T_ACL_PW=" + pw}}
	a := startCaddy(t, site, env)
	b := startCaddy(t, site, env)
	if got, want := alternateClient("acl", "/rl/x", 4, a, b), []int{200, 200, 200, 429}; !equalInts(got, want) {
		t.Fatalf("got %v, want %v; logs:\n%s", got, want, a.Logs())
	}
	tok, _ := mintToken(t, priv, "service-bi")
	requireStatus(t, b, tok, http.StatusOK)
	for _, body := range []string{`{"sub":"other-service"}`, fmt.Sprintf(`{"sub":"service-bi","before":%d}`, time.Now().Unix()+1)} {
		resp, err := http.Post("http://"+a.AdminAddr+"/sechard/revocations", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /sechard/revocations %s: %d %s", body, resp.StatusCode, readBody(resp))
		}
		resp.Body.Close()
	}
	waitFor(t, time.Second, "subject revocation reaches b", func() bool {
		return b.Get("/data", "Authorization", "Bearer "+tok).StatusCode == http.StatusUnauthorized
	})
	for _, s := range []*caddyServer{a, b} {
		if tr := storeTrouble(s); len(tr) != 0 {
			t.Fatalf("store errors with the ACL user: %v", tr)
		}
		if strings.Contains(s.Logs(), pw) {
			t.Fatal("password in Caddy's logs")
		}
	}
	requireNoPasswordInConfig(t, a, site, pw)
	// sechard's connections are the ACL user's.
	list, _ := admin.ClientList(context.Background()).Result()
	if !strings.Contains(list, "user=sechard") {
		t.Fatalf("no connection as user sechard: %s", list)
	}
	// No command was refused (NOPERM) along the way.
	if n, _ := admin.Do(context.Background(), "acl", "log").Slice(); len(n) != 0 {
		log, _ := admin.Do(context.Background(), "acl", "log").Result()
		t.Fatalf("ACL refusals: %v", log)
	}
}

// tlsConfigFor trusts pool.
func tlsConfigFor(pool *x509.CertPool) *tls.Config { return &tls.Config{RootCAs: pool} }

// BenchmarkRateLimitRedisCluster measures decisions through a Cluster store
// at 64 concurrent callers (clients spread over the three masters), next to
// redis-benchmark running the same script with EVALSHA in cluster mode
// against the same cluster at 64 connections.
func BenchmarkRateLimitRedisCluster(b *testing.B) {
	tc := startRedisCluster(b, false)
	c, _ := newRedisRateLimit(b, "rate 1000000000/1s\nstore redis cluster "+tc.URL+"\nstore_timeout 1s", nil)
	bud := benchBudget(b)
	interval, tolerance := bud.Rate.ScriptArgs()
	clients := benchClients(1024)
	b.Run("callers=64", func(b *testing.B) {
		b.SetParallelism((64 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		var seq atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			bs := []ratelimit.Budget{bud}
			i := int(seq.Add(1)) * 7
			for pb.Next() {
				if ok, err := c.redis.Take(time.Now(), clients[i&1023], bs); !ok || err != nil {
					b.Error("refused or store failed")
					return
				}
				i++
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	})
	// The same script through a bare go-redis ClusterClient (no sechard):
	// what the client library alone costs.
	b.Run("go-redis-evalsha/callers=64", func(b *testing.B) {
		cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{tc.nodes[0].Addr}, Protocol: 2, PoolSize: 64})
		defer cc.Close()
		b.SetParallelism((64 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		var seq atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(seq.Add(1)) * 7
			for pb.Next() {
				key := fmt.Sprintf("sechard:rl:bench:{%d}:p", i&1023)
				if err := ratelimit.GCRAScript.Run(context.Background(), cc, []string{key}, interval, tolerance).Err(); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	})
	b.Run("redis-benchmark/callers=64", func(b *testing.B) {
		var sha string
		var err error
		tc.eachNode(b, func(addr string, cl *redis.Client) {
			if sha, err = ratelimit.GCRAScript.Load(context.Background(), cl).Result(); err != nil {
				b.Fatal(err)
			}
		})
		redistest.EvalSHABenchmark(b, tc.nodes[0].Addr, true, sha, "sechard:rl:bench:{tag}:__rand_int__:p", interval, tolerance)
	})
}
