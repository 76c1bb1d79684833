package ratelimit

import (
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// benchBudget admits everything, so the benchmarks measure the store, not
// refusals.
func benchBudget(tb testing.TB) Budget {
	r, err := NewRate(1<<30, 1<<30, 1<<30)
	if err != nil {
		tb.Fatal(err)
	}
	return Budget{Kind: KindPath, Tag: "/nl-query/run", Rate: r}
}

func benchClients(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "10." + strconv.Itoa(i>>16&255) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255)
	}
	return out
}

// BenchmarkRateLimitMemory is one decision on an existing key: hash the
// (client, route) key, lock its shard, GCRA check, commit.
func BenchmarkRateLimitMemory(b *testing.B) {
	s := NewMemoryStore(1_000_000, time.Now, 0)
	bud := benchBudget(b)
	clients := benchClients(1024)
	now := time.Now().UnixNano()
	for _, c := range clients {
		bs := []Budget{bud}
		s.take(now, c, bs)
	}
	b.Run("serial", func(b *testing.B) {
		bs := []Budget{bud}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			s.take(now, clients[i&1023], bs)
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var seq atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			bs := []Budget{bud}
			// Each goroutine walks its own part of the clients: starting
			// close together, they would walk in lockstep onto the same
			// shards, which no real traffic does.
			i := int(seq.Add(1)) * 337
			for pb.Next() {
				s.take(now, clients[i&1023], bs)
				i++
			}
		})
	})
}

// BenchmarkRateLimitPeerXTimeRate is the usual hand-rolled limiter: a map of
// golang.org/x/time/rate limiters, keyed by client and route, behind one
// mutex.
func BenchmarkRateLimitPeerXTimeRate(b *testing.B) {
	var mu sync.Mutex
	limiters := map[string]*rate.Limiter{}
	clients := benchClients(1024)
	allow := func(client, route string) bool {
		key := client + "|" + route
		mu.Lock()
		l, ok := limiters[key]
		if !ok {
			l = rate.NewLimiter(rate.Limit(1<<30), 1<<30)
			limiters[key] = l
		}
		mu.Unlock()
		return l.Allow()
	}
	for _, c := range clients {
		allow(c, "/nl-query/run")
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			allow(clients[i&1023], "/nl-query/run")
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var seq atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			// Each goroutine walks its own part of the clients: starting
			// close together, they would walk in lockstep onto the same
			// shards, which no real traffic does.
			i := int(seq.Add(1)) * 337
			for pb.Next() {
				allow(clients[i&1023], "/nl-query/run")
				i++
			}
		})
	})
}

// BenchmarkRateLimitMemoryMillionKeys inserts 1,000,000 distinct keys and
// reports the heap they take per key; then floods a store bounded at
// max_keys 1,000,000 with 2,000,000 keys and checks the bound.
func BenchmarkRateLimitMemoryMillionKeys(b *testing.B) {
	const n = 1_000_000
	bud := benchBudget(b)
	clients := benchClients(2 * n)
	now := time.Now().UnixNano()
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := NewMemoryStore(2*n, time.Now, 0)
		bs := []Budget{bud}
		for _, c := range clients[:n] {
			s.take(now, c, bs)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := s.Len(); got != n {
			b.Fatalf("holds %d keys, want %d", got, n)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/key")
		runtime.KeepAlive(s)

		bounded := NewMemoryStore(n, time.Now, 0)
		for _, c := range clients {
			bounded.take(now, c, bs)
		}
		if got := bounded.Len(); got > n {
			b.Fatalf("max_keys %d: holds %d keys", n, got)
		} else {
			b.ReportMetric(float64(got), "keys_held_at_max")
		}
	}
}
