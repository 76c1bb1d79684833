package sechard

import (
	"context"
	"sync/atomic"
	"time"
)

// jwksRemote is what the metrics know of a JWKS URL in use: its fetches
// count in sechard_jwks_refresh_total, and the last good one is reported
// by sechard_jwks_last_success_timestamp_seconds while the config that
// fetches it is loaded.
type jwksRemote struct {
	now         func() time.Time
	metrics     jwksMetrics  // sechard_jwks_refresh_total
	lastSuccess atomic.Int64 // Unix ns of the last good fetch, 0 before one
}

func newJWKSRemote(now func() time.Time) *jwksRemote {
	return &jwksRemote{now: now, metrics: newJWKSMetrics()}
}

// fetched is jwtverify.RemoteConfig.Fetched: called after every fetch.
func (j *jwksRemote) fetched(err error) {
	if err != nil {
		j.metrics.failure.Inc()
		return
	}
	j.lastSuccess.Store(j.now().UnixNano())
	j.metrics.success.Inc()
}

// watch reports the URL's age until ctx (the config's) is done.
func (j *jwksRemote) watch(ctx context.Context) {
	ages := sechardMetrics().jwksAge
	ages.add(j)
	context.AfterFunc(ctx, func() { ages.remove(j) })
}
