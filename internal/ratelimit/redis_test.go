package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/sechard/sechard/internal/redistest"
)

// startRedis starts a throw-away redis-server (internal/redistest: under
// -short the test skips; the full run fails without redis-server) and
// returns a client of it and its address.
func startRedis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	srv := redistest.Start(t, redistest.Options{})
	// As the root package builds clients for the request path.
	cl := redis.NewClient(&redis.Options{Addr: srv.Addr, Protocol: 2,
		ContextTimeoutEnabled: true, MaxRetries: -1, DialTimeout: time.Second, DialerRetries: 1,
		ReadTimeout: time.Second, WriteTimeout: time.Second, PoolTimeout: time.Second,
		PoolSize: 64, MinIdleConns: 2, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	t.Cleanup(func() { cl.Close() })
	return cl, srv.Addr
}

// TestRedisStoreKeyLayout: the keys are exactly those earlier releases
// wrote, so budgets kept in Redis survive an upgrade.
func TestRedisStoreKeyLayout(t *testing.T) {
	cl, _ := startRedis(t)
	s := NewRedisStore(cl, RedisOptions{Namespace: "0123456789ab", Timeout: time.Second})
	r := mustRate(t, 10, time.Minute, 10)
	now := time.Now()
	for _, bs := range [][]Budget{
		{{Kind: KindRoute, Tag: "3", Rate: r}, {Kind: KindTotal, Rate: r}},
		{{Kind: KindPath, Tag: "/a/b", Rate: r}},
		{{Kind: KindIdentity, Tag: "5f2d1c0b9a88", Rate: r}},
	} {
		if ok, err := s.Take(now, "10.0.0.1", bs); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	got, err := cl.Keys(context.Background(), "sechard:rl:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	// f5047344122f0dee9974ba67: the first 12 bytes of SHA-256("10.0.0.1");
	// 662b7b62a798bb2d53e67cad: of SHA-256("/a/b"), in hex.
	want := []string{
		"sechard:rl:0123456789ab:{f5047344122f0dee9974ba67}:p662b7b62a798bb2d53e67cad",
		"sechard:rl:0123456789ab:{f5047344122f0dee9974ba67}:r3",
		"sechard:rl:0123456789ab:{f5047344122f0dee9974ba67}:t",
		"sechard:rl:id:{f5047344122f0dee9974ba67}:i5f2d1c0b9a88",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("keys\n%q\nwant\n%q", got, want)
	}
}

// TestRedisStoreMatchesMemory: the same requests get the same answers from
// either store (each on its own clock, far from any refill).
func TestRedisStoreMatchesMemory(t *testing.T) {
	cl, _ := startRedis(t)
	stores := []Store{NewMemoryStore(1000, time.Now, 0), NewRedisStore(cl, RedisOptions{Namespace: "m", Timeout: time.Second})}
	route := mustRate(t, 10, time.Hour, 2)
	total := mustRate(t, 8, time.Hour, 4)
	paths := mustRate(t, 5, time.Hour, 3)
	type request struct {
		client string
		bs     []Budget
	}
	var seq []request
	for i := range 12 {
		client := "c" + strconv.Itoa(i%3/2)
		if i%4 < 2 {
			seq = append(seq, request{client, []Budget{{Kind: KindRoute, Tag: "0", Rate: route}, {Kind: KindTotal, Rate: total}}})
		} else {
			seq = append(seq, request{client, []Budget{{Kind: KindPath, Tag: "/p" + strconv.Itoa(i%2), Rate: paths}, {Kind: KindTotal, Rate: total}}})
		}
	}
	refused := 0
	for i, q := range seq {
		var answers [2]string
		for j, s := range stores {
			bs := slices.Clone(q.bs)
			ok, err := s.Take(time.Now(), q.client, bs)
			if err != nil {
				t.Fatal(err)
			}
			answers[j] = fmt.Sprint(ok)
			for _, b := range bs {
				answers[j] += fmt.Sprintf(" %v/%d/%ds", b.Result.Allowed, b.Result.Remaining,
					(b.Result.RetryAfter+time.Second-1)/time.Second)
			}
			if !ok && j == 0 {
				refused++
			}
		}
		if answers[0] != answers[1] {
			t.Errorf("request %d: memory %s, redis %s", i, answers[0], answers[1])
		}
	}
	if refused == 0 {
		t.Fatal("the sequence should hit the limits")
	}
}

// TestRedisStoreFailsAndOpensTheBreaker: an unreachable Redis is an error
// reported once as the start of an outage; while the breaker is open,
// Take returns ErrBreakerOpen without asking Redis (nor reporting).
func TestRedisStoreFailsAndOpensTheBreaker(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	cl := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer cl.Close()
	var failures, began int
	s := NewRedisStore(cl, RedisOptions{Timeout: 100 * time.Millisecond,
		OnFailure: func(err error, outageBegan bool) {
			failures++
			if outageBegan {
				began++
			}
		},
		OnRecovery: func() { t.Error("recovered without an answer") }})
	r := mustRate(t, 1, time.Minute, 1)
	now := time.Now()
	ok, err := s.Take(now, "c", []Budget{{Kind: KindTotal, Rate: r}})
	if ok || err == nil || errors.Is(err, ErrBreakerOpen) || failures != 1 || began != 1 {
		t.Fatalf("first decision: %v %v (%d failures, %d began)", ok, err, failures, began)
	}
	for _, at := range []time.Duration{0, time.Millisecond, redisBackoff - 1} {
		if ok, err := s.Take(now.Add(at), "c", []Budget{{Kind: KindTotal, Rate: r}}); ok || !errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("%v later: %v %v, want ErrBreakerOpen", at, ok, err)
		}
	}
	// After the back-off, one probe asks Redis again: it fails, and the
	// outage is not reported a second time.
	if _, err := s.Take(now.Add(redisBackoff), "c", []Budget{{Kind: KindTotal, Rate: r}}); err == nil || errors.Is(err, ErrBreakerOpen) {
		t.Fatalf("probe: %v", err)
	}
	if failures != 2 || began != 1 {
		t.Fatalf("%d failures, %d began; want 2, 1", failures, began)
	}
}

// TestRedisStoreReportsRecoveryOnce: once Redis has answered for
// redisSettle after an outage, OnRecovery is called, once.
func TestRedisStoreReportsRecoveryOnce(t *testing.T) {
	cl, _ := startRedis(t)
	recovered := 0
	s := NewRedisStore(cl, RedisOptions{Timeout: time.Second, OnRecovery: func() { recovered++ }})
	r := mustRate(t, 1000, time.Minute, 1000)
	// An outage that began long enough ago for its back-off to be over.
	past := time.Now().Add(-10 * redisSettle).UnixNano()
	s.breaker.failure(past, redisBackoff)
	take := func() {
		t.Helper()
		if ok, err := s.Take(time.Now(), "c", []Budget{{Kind: KindTotal, Rate: r}}); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	take() // the probe: answered, the outage is settling
	if recovered != 0 {
		t.Fatal("recovery reported before settling")
	}
	s.breaker.upSince.Store(past) // answered since long enough
	take()
	take()
	if recovered != 1 {
		t.Fatalf("recovery reported %d times, want 1", recovered)
	}
}

// TestBreaker: closed until a failure; open for the back-off; then one
// probe at a time; an outage ends only after redisSettle without a failure,
// and each outage begins and ends once.
func TestBreaker(t *testing.T) {
	var b breaker
	now := int64(1_000_000_000_000)
	if !b.allow(now) {
		t.Fatal("closed breaker refuses")
	}
	if !b.failure(now, time.Second) {
		t.Fatal("first failure must start an outage")
	}
	if b.failure(now+1, time.Second) {
		t.Fatal("second failure must not start another outage")
	}
	if b.allow(now + int64(500*time.Millisecond)) {
		t.Fatal("open breaker allows during back-off")
	}
	probeAt := now + 1 + int64(time.Second)
	if !b.allow(probeAt) {
		t.Fatal("no probe after back-off")
	}
	if b.allow(probeAt) {
		t.Fatal("two probes at once")
	}
	if b.failure(probeAt, time.Second) {
		t.Fatal("failed probe logged as a new outage")
	}
	t1 := probeAt + int64(time.Second)
	if !b.allow(t1) || b.success(t1) {
		t.Fatal("a first successful probe closes the breaker but does not end the outage yet")
	}
	if !b.allow(t1+1) || b.success(t1+int64(redisSettle)/2) {
		t.Fatal("outage ended before the store answered for redisSettle")
	}
	// A failure meanwhile (another Cluster master still down): no new
	// outage, and the settling starts over.
	if b.failure(t1+int64(redisSettle)/2, time.Second) {
		t.Fatal("a failure while settling logged as a new outage")
	}
	t2 := t1 + int64(redisSettle)/2 + int64(time.Second)
	if !b.allow(t2) || b.success(t2) || b.success(t2+int64(redisSettle)-1) {
		t.Fatal("outage ended without settling again")
	}
	if !b.success(t2 + int64(redisSettle)) {
		t.Fatal("answering for redisSettle must end the outage")
	}
	if b.success(t2+int64(redisSettle)+1) || !b.allow(t2+int64(redisSettle)+1) {
		t.Fatal("closed breaker after recovery")
	}
}

// BenchmarkRateLimitRedis measures decisions through the Redis store (one
// EVALSHA round trip each) at 1 and 64 concurrent callers, next to
// redis-benchmark running the same script with EVALSHA against the same
// server at 64 connections.
func BenchmarkRateLimitRedis(b *testing.B) {
	cl, addr := startRedis(b)
	s := NewRedisStore(cl, RedisOptions{Namespace: "bench", Timeout: time.Second})
	bud := benchBudget(b)
	clients := benchClients(1024)
	decide := func(i int, bs []Budget) {
		if ok, err := s.Take(time.Now(), clients[i&1023], bs); !ok || err != nil {
			b.Fatal("refused or store failed")
		}
	}
	b.Run("callers=1", func(b *testing.B) {
		bs := []Budget{bud}
		i := 0
		for b.Loop() {
			decide(i, bs)
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	})
	b.Run("callers=64", func(b *testing.B) {
		b.SetParallelism((64 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		var seq atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			bs := []Budget{bud}
			i := int(seq.Add(1)) * 7
			for pb.Next() {
				decide(i, bs)
				i++
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	})
	b.Run("latency/callers=1", func(b *testing.B) {
		bs := []Budget{bud}
		lat := make([]time.Duration, 0, b.N)
		i := 0
		for b.Loop() {
			start := time.Now()
			decide(i, bs)
			lat = append(lat, time.Since(start))
			i++
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	})
	b.Run("redis-benchmark/callers=64", func(b *testing.B) {
		sha, err := GCRAScript.Load(context.Background(), cl).Result()
		if err != nil {
			b.Fatal(err)
		}
		interval, tolerance := bud.Rate.ScriptArgs()
		redistest.EvalSHABenchmark(b, addr, false, sha, "sechard:rl:bench:{__rand_int__}:p", interval, tolerance)
	})
}
