package ratelimit

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

func mustRate(t testing.TB, events int, window time.Duration, burst int) *Rate {
	t.Helper()
	r, err := NewRate(events, window, burst)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestMemoryStoreFullShardEvictsEarliestTAT: a new key in a full shard
// replaces, among the sampled entries, the one with the earliest TAT (the
// client closest to a full budget), never one that owes more.
func TestMemoryStoreFullShardEvictsEarliestTAT(t *testing.T) {
	const now = int64(1_000_000)
	sh := &shard{m: make(map[uint64]int64), max: evictSample}
	// A shard no larger than the sample: every entry is sampled.
	for k := range uint64(evictSample) {
		sh.store(k, now+100+int64(k)*10, false, now)
	}
	sh.store(99, now+500, false, now)
	if len(sh.m) != evictSample {
		t.Fatalf("%d entries, want %d", len(sh.m), evictSample)
	}
	if _, ok := sh.m[0]; ok {
		t.Fatal("the earliest TAT was kept")
	}
	for k := uint64(1); k < evictSample; k++ {
		if _, ok := sh.m[k]; !ok {
			t.Fatalf("key %d (TAT later than the earliest) was evicted", k)
		}
	}
	// Updating a key already held evicts nothing.
	sh.store(99, now+600, true, now)
	if len(sh.m) != evictSample || sh.m[99] != now+600 {
		t.Fatalf("update: %v", sh.m)
	}
}

// TestMemoryStoreEvictsIdleKeyFirst: a key whose TAT has passed has its
// full budget back; it is the one evicted, whatever the others' TATs.
func TestMemoryStoreEvictsIdleKeyFirst(t *testing.T) {
	const now = int64(1_000_000)
	sh := &shard{m: make(map[uint64]int64), max: 4}
	sh.store(1, now+10, false, now)
	sh.store(2, now-1, false, now) // idle
	sh.store(3, now+20, false, now)
	sh.store(4, now+5, false, now)
	sh.store(5, now+30, false, now)
	if _, ok := sh.m[2]; ok || len(sh.m) != 4 {
		t.Fatalf("idle key kept: %v", sh.m)
	}
}

// TestMemoryStoreForgetsIdleKeys: sweep forgets exactly the keys whose
// budget is full again, so a client back after its refill starts afresh.
func TestMemoryStoreForgetsIdleKeys(t *testing.T) {
	// Room for far more keys than the test makes: with 1000 (about 4 per
	// shard), 100 random keys fill some shard past its share about once in
	// 80 runs, and the eviction under test elsewhere kicks in.
	s := NewMemoryStore(100_000, time.Now, 0)
	r := mustRate(t, 10, time.Second, 10) // T = 100ms
	now := time.Unix(1_800_000_000, 0)
	take := func(client string, at time.Time) bool {
		ok, err := s.Take(at, client, []Budget{{Kind: KindPath, Tag: "/x", Rate: r}})
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for i := range 100 {
		take("10.0.0."+strconv.Itoa(i), now)
	}
	take("10.0.0.0", now) // two requests: full again 200ms later
	s.sweep(now.UnixNano())
	if n := s.Len(); n != 100 {
		t.Fatalf("sweep before anything is idle: %d keys, want 100", n)
	}
	s.sweep(now.Add(100 * time.Millisecond).UnixNano())
	if n := s.Len(); n != 1 {
		t.Fatalf("after 100ms: %d keys, want 1", n)
	}
	s.sweep(now.Add(200 * time.Millisecond).UnixNano())
	if n := s.Len(); n != 0 {
		t.Fatalf("after 200ms: %d keys, want 0", n)
	}
}

// TestMemoryStoreMaxKeysBound: however many clients arrive, at most
// max(maxKeys, 256) keys are held, and a client that owes most of its
// budget survives the flood.
func TestMemoryStoreMaxKeysBound(t *testing.T) {
	for _, maxKeys := range []int{1, 256, 1000, 4099} {
		s := NewMemoryStore(maxKeys, time.Now, 0)
		r := mustRate(t, 5, time.Minute, 5)
		now := time.Unix(1_800_000_000, 0)
		b := []Budget{{Kind: KindRoute, Tag: "0", Rate: r}}
		for range 5 {
			s.Take(now, "10.9.9.9", b)
		}
		for i := range 20 * max(maxKeys, 256) {
			s.Take(now, "c"+strconv.Itoa(i), b)
			if n := s.Len(); n > max(maxKeys, shardCount) {
				t.Fatalf("max_keys %d: %d keys after %d clients", maxKeys, n, i+1)
			}
		}
		if maxKeys >= 1000 {
			if ok, _ := s.Take(now, "10.9.9.9", b); ok {
				t.Fatalf("max_keys %d: the client that spent its budget was forgotten", maxKeys)
			}
		}
	}
}

// TestMemoryStoreTwoBudgetsAllOrNothing: a request spends both of its
// budgets or neither, including when both keys fall in one shard.
func TestMemoryStoreTwoBudgetsAllOrNothing(t *testing.T) {
	for _, maxKeys := range []int{256, 1_000_000} { // 256: one key per shard
		s := NewMemoryStore(maxKeys, time.Now, 0)
		route := mustRate(t, 1, time.Minute, 1)
		total := mustRate(t, 3, time.Minute, 3)
		now := time.Unix(1_800_000_000, 0)
		bs := func(tag string) []Budget {
			return []Budget{{Kind: KindRoute, Tag: tag, Rate: route}, {Kind: KindTotal, Rate: total}}
		}
		if ok, _ := s.Take(now, "c", bs("0")); !ok {
			t.Fatal("first request refused")
		}
		b := bs("0")
		if ok, _ := s.Take(now, "c", b); ok || b[0].Result.Allowed || b[1].Result.Allowed || b[1].Result.Remaining != 2 {
			t.Fatalf("route refused: %+v", b)
		}
		for _, tag := range []string{"1", "2"} {
			if ok, _ := s.Take(now, "c", bs(tag)); !ok {
				t.Fatalf("route %s refused", tag)
			}
		}
		b = bs("3")
		if ok, _ := s.Take(now, "c", b); ok || b[1].Result.Allowed || b[0].Result.Allowed || b[0].Result.Remaining != 1 {
			t.Fatalf("total refused: %+v", b)
		}
		if b[1].Result.RetryAfter != 20*time.Second {
			t.Fatalf("total retry after %v, want 20s", b[1].Result.RetryAfter)
		}
	}
}

// TestMemoryStoreConcurrentClientNeverOverspends: many goroutines spending
// one client's budgets at one instant admit exactly the burst.
func TestMemoryStoreConcurrentClientNeverOverspends(t *testing.T) {
	s := NewMemoryStore(1000, time.Now, 0)
	route := mustRate(t, 50, time.Minute, 50)
	total := mustRate(t, 1000, time.Minute, 1000)
	now := time.Unix(1_800_000_000, 0)
	var mu sync.Mutex
	admitted := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if ok, _ := s.Take(now, "c", []Budget{{Kind: KindRoute, Tag: "0", Rate: route}, {Kind: KindTotal, Rate: total}}); ok {
					mu.Lock()
					admitted++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if admitted != 50 {
		t.Fatalf("%d admitted, want 50", admitted)
	}
}

// TestMemoryStoreSweeperRunsAndStopsOnDestruct: the sweeper forgets idle
// keys on its own, and Destruct stops it (and returns only once it has).
func TestMemoryStoreSweeperRunsAndStopsOnDestruct(t *testing.T) {
	var mu sync.Mutex
	clock := time.Unix(1_800_000_000, 0)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	s := NewMemoryStore(1000, now, time.Millisecond)
	r := mustRate(t, 10, time.Second, 10)
	s.Take(now(), "c", []Budget{{Kind: KindPath, Tag: "/", Rate: r}})
	if s.Len() != 1 {
		t.Fatal("key not held")
	}
	mu.Lock()
	clock = clock.Add(time.Second)
	mu.Unlock()
	for deadline := time.Now().Add(5 * time.Second); s.Len() != 0; {
		if time.Now().After(deadline) {
			t.Fatal("the sweeper did not forget the idle key")
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Destruct(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	default:
		t.Fatal("Destruct returned with the sweeper running")
	}
	// A store without a sweeper destructs too.
	if err := NewMemoryStore(1, time.Now, 0).Destruct(); err != nil {
		t.Fatal(err)
	}
}
