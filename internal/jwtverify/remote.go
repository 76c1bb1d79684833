package jwtverify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// JWKS timings. keyfunc's own defaults (hourly refresh, a request waiting up
// to a minute, one-minute HTTP timeout) are wrong for an edge, so this
// package runs its own small fetcher and uses jwkset only to turn JWKs into
// keys.
const (
	jwksHTTPTimeout   = 5 * time.Second
	jwksUnknownKIDGap = 30 * time.Second // at most one unknown-kid refetch per this
	jwksRequestWait   = 2 * time.Second  // longest a request waits for that refetch
	jwksMaxBody       = 1 << 20
)

// RemoteConfig says where a Verifier fetches more keys.
type RemoteConfig struct {
	// URL of the JWK Set.
	URL string
	// Refresh is the period of the background refresh.
	Refresh time.Duration
	// Logger gets the fetch failures and the skipped keys (once per change
	// of the set, not every refresh).
	Logger *zap.Logger
	// Fetched, when set, is called after every fetch with its error (nil:
	// the set was installed). It must not block.
	Fetched func(error)
}

// Remote keeps the keys of a JWKS URL fresh: fetched when the Verifier is
// built, refreshed in the background until the Verifier's context is done,
// and refetched (at most once per 30 s, a request waiting at most 2 s) when
// a token names an unknown kid. Each fetch times out after 5 s and reads at
// most 1 MiB; a failed fetch keeps the last good key set.
type Remote struct {
	ctx     context.Context
	config  RemoteConfig
	client  *http.Client
	now     func() time.Time
	install func([]*Key)

	mu          sync.Mutex
	lastKick    time.Time     // last unknown-kid refetch started
	inflight    chan struct{} // closed when the running unknown-kid refetch ends
	fetchLock   sync.Mutex    // one fetch at a time
	lastSkipped string        // the last fetch's skipped keys, under fetchLock
}

// start does the first fetch and launches the refresher. When the first
// fetch fails it is an error, unless other keys are configured (then it is
// logged and retried on schedule).
func (r *Remote) start(haveOtherKeys bool) error {
	if err := r.Fetch(); err != nil {
		if !haveOtherKeys {
			return fmt.Errorf("jwks_url %s: first fetch failed: %v", r.config.URL, err)
		}
		r.config.Logger.Warn("JWKS first fetch failed; serving with the other configured keys",
			zap.String("url", r.config.URL), zap.Error(err))
	}
	go r.run()
	return nil
}

// run refreshes every Refresh until the context is done.
func (r *Remote) run() {
	t := time.NewTicker(r.config.Refresh)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			if err := r.Fetch(); err != nil {
				r.config.Logger.Warn("JWKS refresh failed; keeping the last good key set",
					zap.String("url", r.config.URL), zap.Error(err))
			}
		}
	}
}

// Fetch gets the key set now and, if it parses, installs it. Concurrent
// fetches run one after the other.
func (r *Remote) Fetch() error {
	r.fetchLock.Lock()
	defer r.fetchLock.Unlock()
	err := r.fetchLocked()
	if r.config.Fetched != nil {
		r.config.Fetched(err)
	}
	return err
}

func (r *Remote) fetchLocked() error {
	ctx, cancel := context.WithTimeout(r.ctx, jwksHTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.config.URL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBody+1))
	if err != nil {
		return err
	}
	if len(data) > jwksMaxBody {
		return errors.New("JWK Set larger than 1 MiB")
	}
	keys, skipped, err := ParseJWKS(data)
	// Warn about skipped keys once per change of the set, not every refresh.
	if sum := fmt.Sprint(skipped); sum != r.lastSkipped {
		r.lastSkipped = sum
		LogSkipped(r.config.Logger, r.config.URL, skipped)
	}
	if err != nil {
		return err
	}
	r.install(keys)
	if c := r.config.Logger.Check(zapcore.DebugLevel, "JWKS fetched"); c != nil {
		c.Write(zap.String("url", r.config.URL), zap.Int("keys", len(keys)))
	}
	return nil
}

// refetchUnknown is called on the request path when a token names a kid
// nobody knows: a new key may have been published. At most one refetch
// starts per jwksUnknownKIDGap; the request waits at most jwksRequestWait
// for it (the fetch itself may go on and still install the keys). It
// reports whether a refetch finished in time, so the caller looks again.
func (r *Remote) refetchUnknown() bool {
	r.mu.Lock()
	done := r.inflight
	if done == nil && r.now().Sub(r.lastKick) >= jwksUnknownKIDGap {
		r.lastKick = r.now()
		done = make(chan struct{})
		r.inflight = done
		go func() {
			if err := r.Fetch(); err != nil {
				r.config.Logger.Warn("JWKS refetch for an unknown kid failed", zap.String("url", r.config.URL), zap.Error(err))
			}
			r.mu.Lock()
			r.inflight = nil
			r.mu.Unlock()
			close(done)
		}()
	}
	r.mu.Unlock()
	if done == nil {
		return false
	}
	t := time.NewTimer(jwksRequestWait)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
