package ratelimit

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
	"time"
)

// shardCount is the number of independently locked shards of the memory
// store. 256 keeps lock contention negligible on many cores while each
// shard's map stays large enough for sampled eviction to work.
const shardCount = 256

// evictSample is how many entries an insert into a full shard looks at
// to choose a victim (as Redis's approximated LRU does with
// maxmemory-samples).
const evictSample = 8

// MemoryStore holds GCRA state in process memory: one int64 TAT per
// (client, budget) key, in 256 shards of map[uint64]int64 each behind its
// own mutex.
//
// Keys are 64-bit maphash digests of the client key and the budget,
// seeded randomly per store, so any client key (a 10 KB header value
// included) costs the same 16 bytes plus map overhead, and clients cannot
// aim collisions at each other. Two different (client, budget) pairs
// colliding in 64 bits would share one budget; with a million keys the odds
// are about 1 in 4·10⁷.
//
// Size is bounded by maxKeys: a shard that is full makes room for a new key
// by evicting, among a few sampled entries, the one with the earliest TAT
// (a key whose TAT has passed has its full budget back and is simply
// forgotten). A key's TAT is never earlier than its last admitted request,
// so this approximates least-recently-used while keeping the keys that
// still owe the most. A sweeper goroutine forgets idle keys (TAT passed)
// periodically; it stops when the store is destructed.
type MemoryStore struct {
	shards [shardCount]shard // first, so the 32 KiB array starts page-aligned
	seed   maphash.Seed

	now  func() time.Time
	stop chan struct{}
	done chan struct{}
}

type shard struct {
	mu   sync.Mutex
	m    map[uint64]int64 // key digest → TAT in Unix nanoseconds
	peak int              // largest len(m) since the map was last rebuilt
	max  int              // capacity: this shard's share of max_keys
	_    [96]byte         // keep shards on separate cache-line pairs (no false sharing)
}

// NewMemoryStore makes a store holding at most max(maxKeys, 256) keys. With
// sweep > 0, a goroutine removes the keys idle at now() every sweep, until
// Destruct.
func NewMemoryStore(maxKeys int, now func() time.Time, sweep time.Duration) *MemoryStore {
	s := &MemoryStore{seed: maphash.MakeSeed(), now: now}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.m = make(map[uint64]int64)
		sh.max = maxKeys / shardCount
		if i < maxKeys%shardCount {
			sh.max++
		}
		sh.max = max(sh.max, 1)
	}
	if sweep > 0 {
		s.stop = make(chan struct{})
		s.done = make(chan struct{})
		go s.sweeper(sweep)
	}
	return s
}

// Destruct stops the sweeper, and returns once it has stopped. Its
// signature is caddy.Destructor's, so that a caddy.UsagePool can hold the
// store for as long as any config uses it.
func (s *MemoryStore) Destruct() error {
	if s.stop != nil {
		close(s.stop)
		<-s.done
	}
	return nil
}

// digest returns the key for one client's budget. The client's length goes
// first so that no two (client, budget) pairs write the same bytes.
func (s *MemoryStore) digest(client string, b *Budget) uint64 {
	var h maphash.Hash
	h.SetSeed(s.seed)
	var n [9]byte
	binary.LittleEndian.PutUint64(n[:8], uint64(len(client)))
	n[8] = byte(b.Kind)
	h.Write(n[:])
	h.WriteString(client)
	h.WriteString(b.Tag)
	return h.Sum64()
}

// Take spends one request from every budget in budgets (one or two) if
// all of them admit it, and from none otherwise; each budget's Result says
// how it stands afterwards. Both shards are locked (in index order) for the
// check and the commit, so concurrent requests of one client cannot
// overspend. It never returns an error, and never allocates.
func (s *MemoryStore) Take(now time.Time, client string, budgets []Budget) (bool, error) {
	return s.take(now.UnixNano(), client, budgets), nil
}

func (s *MemoryStore) take(now int64, client string, bs []Budget) bool {
	switch len(bs) {
	case 1:
		k := s.digest(client, &bs[0])
		sh := &s.shards[k%shardCount]
		sh.mu.Lock()
		tat, exists := sh.m[k]
		o := bs[0].Rate.memory.check(tat, now)
		if o.allowed {
			sh.store(k, o.tat, exists, now)
		}
		sh.mu.Unlock()
		bs[0].Result = o.result(time.Nanosecond)
		return o.allowed
	case 2:
		k0, k1 := s.digest(client, &bs[0]), s.digest(client, &bs[1])
		a, b := &s.shards[k0%shardCount], &s.shards[k1%shardCount]
		if k0%shardCount > k1%shardCount {
			a, b = b, a
		}
		a.mu.Lock()
		if b != a {
			b.mu.Lock()
		}
		s0, s1 := &s.shards[k0%shardCount], &s.shards[k1%shardCount]
		t0, e0 := s0.m[k0]
		t1, e1 := s1.m[k1]
		ok, next := evaluate(bs, []int64{t0, t1}, now, false)
		if ok {
			s0.store(k0, next[0], e0, now)
			if s1 == s0 { // storing k0 may have evicted k1, or be k1
				_, e1 = s1.m[k1]
			}
			s1.store(k1, next[1], e1, now)
		}
		if b != a {
			b.mu.Unlock()
		}
		a.mu.Unlock()
		return ok
	}
	return true
}

// store sets k's TAT, evicting another key first if k is new (not exists)
// and the shard is full. The caller holds sh.mu.
func (sh *shard) store(k uint64, tat int64, exists bool, now int64) {
	if !exists && len(sh.m) >= sh.max {
		sh.evictOne(now)
	}
	sh.m[k] = tat
	if len(sh.m) > sh.peak {
		sh.peak = len(sh.m)
	}
}

// evictOne removes the entry with the earliest TAT among a few sampled ones
// (map iteration starts at a random position), or the first idle one seen.
func (sh *shard) evictOne(now int64) {
	var victim uint64
	oldest, seen := int64(0), 0
	for k, tat := range sh.m {
		if tat <= now {
			victim = k
			break
		}
		if seen == 0 || tat < oldest {
			victim, oldest = k, tat
		}
		if seen++; seen >= evictSample {
			break
		}
	}
	delete(sh.m, victim)
}

// sweep forgets every key whose budget is full again at now, and rebuilds
// maps that shrank a lot (Go maps never give memory back by themselves).
func (s *MemoryStore) sweep(now int64) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, tat := range sh.m {
			if tat <= now {
				delete(sh.m, k)
			}
		}
		if sh.peak > 1024 && len(sh.m) < sh.peak/4 {
			m := make(map[uint64]int64, len(sh.m))
			for k, v := range sh.m {
				m[k] = v
			}
			sh.m, sh.peak = m, len(m)
		}
		sh.mu.Unlock()
	}
}

func (s *MemoryStore) sweeper(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep(s.now().UnixNano())
		}
	}
}

// Len returns the number of keys held.
func (s *MemoryStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
