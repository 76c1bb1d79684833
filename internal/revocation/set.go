package revocation

import (
	"maps"
	"math"
	"slices"
	"sync"
	"time"
)

// Set is an immutable snapshot of every source's revocations; the request
// path only reads it.
type Set struct {
	jti     map[string]struct{}
	sub     map[string]int64 // subject -> tokens with iat (unix) below this are revoked
	entries []Entry
}

// NewSet merges lists into a snapshot, leaving out the entries that expired
// before now (unix seconds). A subject listed twice keeps its latest time.
func NewSet(now int64, lists ...[]Entry) *Set {
	s := &Set{jti: make(map[string]struct{}), sub: make(map[string]int64)}
	for _, list := range lists {
		for _, e := range list {
			if e.Expires != 0 && e.Expires < now {
				continue
			}
			if e.JTI != "" {
				s.jti[e.JTI] = struct{}{}
			} else {
				before := int64(math.MaxInt64)
				if e.Before != nil {
					before = *e.Before
				}
				if cur, ok := s.sub[e.Sub]; !ok || before > cur {
					s.sub[e.Sub] = before
				}
			}
			s.entries = append(s.entries, e)
		}
	}
	return s
}

// Revoked reports whether a token with this jti, subject and issue time is
// revoked. An empty jti or subject matches nothing.
func (s *Set) Revoked(jti, sub string, iat time.Time) bool {
	if jti != "" {
		if _, ok := s.jti[jti]; ok {
			return true
		}
	}
	if sub != "" {
		if before, ok := s.sub[sub]; ok && iat.Unix() < before {
			return true
		}
	}
	return false
}

// Entries returns the snapshot's entries, in the order of its lists. The
// caller must not modify them.
func (s *Set) Entries() []Entry { return s.entries }

// Memory holds revocations in this process (for nodes without Redis).
type Memory struct {
	mu      sync.Mutex
	entries map[string]Entry // by "jti:<jti>" or "sub:<sub>"
}

// NewMemory returns an empty list.
func NewMemory() *Memory { return &Memory{entries: make(map[string]Entry)} }

// Add adds e, forgetting the entries that expired before now (unix
// seconds). Added again, a revocation keeps the later of its expiries and,
// for a subject, the later of its times.
func (m *Memory) Add(e Entry, now int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, old := range m.entries {
		if old.Expires < now {
			delete(m.entries, k)
		}
	}
	key := "jti:" + e.JTI
	if e.JTI == "" {
		key = "sub:" + e.Sub
	}
	if old, ok := m.entries[key]; ok {
		// The stronger revocation and the longer lifetime stay.
		e.Expires = max(e.Expires, old.Expires)
		if e.JTI == "" && *old.Before > *e.Before {
			e.Before = old.Before
		}
	}
	m.entries[key] = e
}

// List returns the entries, in no particular order.
func (m *Memory) List() []Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Collect(maps.Values(m.entries))
}
