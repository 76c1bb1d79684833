package sechard

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/sechard/sechard/internal/redisconn"
	"github.com/sechard/sechard/internal/revocation"
)

// localRevocations holds revocations posted to the admin API when no Redis
// is configured. It is process-wide, so they survive config reloads (not
// restarts: use a file or Redis for that).
var localRevocations = revocation.NewMemory()

// The registry of active Revocation instances (one per loaded auth config),
// which the admin API reaches.
var revocationRegistry = struct {
	sync.Mutex
	m map[*Revocation]struct{}
}{m: make(map[*Revocation]struct{})}

func registerRevocation(rv *Revocation) {
	revocationRegistry.Lock()
	revocationRegistry.m[rv] = struct{}{}
	revocationRegistry.Unlock()
}

func unregisterRevocation(rv *Revocation) {
	revocationRegistry.Lock()
	delete(revocationRegistry.m, rv)
	revocationRegistry.Unlock()
}

// activeRevocations returns the registered instances.
func activeRevocations() []*Revocation {
	revocationRegistry.Lock()
	defer revocationRegistry.Unlock()
	return slices.Collect(maps.Keys(revocationRegistry.m))
}

// entries returns the instance's current local view.
func (rv *Revocation) entries() []revocation.Entry {
	if s := rv.snap.Load(); s != nil {
		return s.Entries()
	}
	return nil
}

// errNoRevocationList: nothing could apply a revocation.
var errNoRevocationList = errors.New("no revocation list is configured in the running config (auth > revocation)")

// revocationStoreError is a revocation that a valid request asked for but
// that could not be stored.
type revocationStoreError struct{ err error }

func (e revocationStoreError) Error() string { return e.err.Error() }
func (e revocationStoreError) Unwrap() error { return e.err }

// revoke turns req into one entry for every active list (it must outlive
// the longest-lived tokens any of them accepts), writes it once to each
// distinct Redis and to memory if any active list has no Redis, then makes
// every list on this node see it at once. It returns the entry and where it
// was stored; errors are errNoRevocationList, a revocationStoreError, or
// the request's own problem.
func revoke(ctx context.Context, req revocation.Request, now time.Time) (revocation.Entry, []string, error) {
	active := activeRevocations()
	if len(active) == 0 {
		return revocation.Entry{}, nil, errNoRevocationList
	}
	var bounds revocation.Bounds
	for _, rv := range active {
		bounds = bounds.Widen(rv.bounds)
	}
	e, err := req.Entry(now, bounds)
	if err != nil {
		return revocation.Entry{}, nil, err
	}
	var stored, done []string
	for _, rv := range active {
		if slices.Contains(done, rv.Redis) {
			continue
		}
		done = append(done, rv.Redis)
		target, err := rv.store(ctx, e, now)
		if err != nil {
			return revocation.Entry{}, nil, revocationStoreError{fmt.Errorf("storing revocation in %s: %v", target, err)}
		}
		stored = append(stored, target)
	}
	for _, rv := range active {
		rv.refreshNow(ctx)
	}
	return e, stored, nil
}

// store writes e where this instance reads revocations from: its Redis, or
// the process's memory; it returns that place's name for the operator.
func (rv *Revocation) store(ctx context.Context, e revocation.Entry, now time.Time) (string, error) {
	if rv.client == nil {
		e.Source = "admin"
		localRevocations.Add(e, now.Unix())
		return "memory", nil
	}
	e.Source = "redis"
	return redisconn.RedactURL(rv.Redis), revocation.AddRedis(ctx, rv.client, e)
}
