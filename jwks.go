package sechard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// JWKS timings. keyfunc's own defaults (hourly refresh, a request waiting up
// to a minute, one-minute HTTP timeout) are wrong for an edge, so sechard
// runs its own small fetcher and uses jwkset only to turn JWKs into keys.
const (
	jwksHTTPTimeout   = 5 * time.Second
	jwksUnknownKIDGap = 30 * time.Second // at most one unknown-kid refetch per this
	jwksRequestWait   = 2 * time.Second  // longest a request waits for that refetch
	jwksMaxBody       = 1 << 20
)

// parseJWKS turns a JWK Set document into verification keys. Keys for other
// uses (`"use":"enc"`), private or symmetric keys, and unsupported key types
// are skipped; x5u/x5c members are ignored (never fetched).
func parseJWKS(data []byte) ([]*verifyKey, error) {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("decoding JWK Set: %v", err)
	}
	var keys []*verifyKey
	for i, m := range set.Keys {
		if m.USE != "" && m.USE != jwkset.UseSig {
			continue
		}
		if m.KTY == jwkset.KtyOct {
			continue // symmetric: never
		}
		if m.ALG != "" && !slices.Contains(supportedAlgorithms, string(m.ALG)) {
			continue
		}
		m.X5U, m.X5C, m.X5T, m.X5TS256 = "", nil, "", ""
		m.D, m.P, m.Q, m.DP, m.DQ, m.QI, m.OTH = "", "", "", "", "", "", nil
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			if errors.Is(err, jwkset.ErrUnsupportedKey) {
				continue
			}
			return nil, fmt.Errorf("key %d: %v", i, err)
		}
		key, err := checkKey(jwk.Key())
		if err != nil {
			return nil, fmt.Errorf("key %d: %v", i, err)
		}
		kid := m.KID
		if kid == "" {
			kid = thumbprint(key)
		}
		keys = append(keys, &verifyKey{kid: kid, key: key, alg: string(m.ALG)})
	}
	return keys, nil
}

// jwksRemote keeps the keys of a JWKS URL fresh.
type jwksRemote struct {
	ctx     context.Context // Caddy's: cancelled when the config is unloaded
	url     string
	refresh time.Duration
	client  *http.Client
	logger  *zap.Logger
	now     func() time.Time
	update  func([]*verifyKey)

	mu        sync.Mutex
	lastKick  time.Time     // last unknown-kid refetch started
	inflight  chan struct{} // closed when the running unknown-kid refetch ends
	fetchLock sync.Mutex    // one fetch at a time

	metrics     jwksMetrics  // sechard_jwks_refresh_total
	lastSuccess atomic.Int64 // Unix ns of the last good fetch, 0 before one
}

func newJWKSRemote(env *provisionEnv, url string, refresh time.Duration, update func([]*verifyKey)) *jwksRemote {
	return &jwksRemote{
		ctx:     env.Context,
		url:     url,
		refresh: refresh,
		client:  &http.Client{Timeout: jwksHTTPTimeout},
		logger:  env.logger.Named("auth"),
		now:     env.now,
		update:  update,
		metrics: newJWKSMetrics(),
	}
}

// start does the first fetch and launches the refresher. When the first
// fetch fails it is an error, unless other keys are configured (then it is
// logged and retried on schedule).
func (j *jwksRemote) start(haveOtherKeys bool) error {
	if err := j.fetch(); err != nil {
		if !haveOtherKeys {
			return fmt.Errorf("jwks_url %s: first fetch failed: %v", j.url, err)
		}
		j.logger.Warn("JWKS first fetch failed; serving with the other configured keys",
			zap.String("url", j.url), zap.Error(err))
	}
	sechardMetrics().jwksAge.add(j)
	go j.run()
	return nil
}

// run refreshes every j.refresh until Caddy unloads this config.
func (j *jwksRemote) run() {
	defer sechardMetrics().jwksAge.remove(j)
	t := time.NewTicker(j.refresh)
	defer t.Stop()
	for {
		select {
		case <-j.ctx.Done():
			return
		case <-t.C:
			if err := j.fetch(); err != nil {
				j.logger.Warn("JWKS refresh failed; keeping the last good key set",
					zap.String("url", j.url), zap.Error(err))
			}
		}
	}
}

// fetch gets the key set and, if it parses, installs it; each fetch counts
// in sechard_jwks_refresh_total.
func (j *jwksRemote) fetch() error {
	j.fetchLock.Lock()
	defer j.fetchLock.Unlock()
	err := j.fetchLocked()
	if err != nil {
		j.metrics.failure.Inc()
		return err
	}
	j.lastSuccess.Store(j.now().UnixNano())
	j.metrics.success.Inc()
	return nil
}

func (j *jwksRemote) fetchLocked() error {
	ctx, cancel := context.WithTimeout(j.ctx, jwksHTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := j.client.Do(req)
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
	keys, err := parseJWKS(data)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return errors.New("JWK Set has no usable signing keys")
	}
	j.update(keys)
	if c := j.logger.Check(zapcore.DebugLevel, "JWKS fetched"); c != nil {
		c.Write(zap.String("url", j.url), zap.Int("keys", len(keys)))
	}
	return nil
}

// refetchUnknown is called on the request path when a token names a kid
// nobody knows: a new key may have been published. At most one refetch
// starts per jwksUnknownKIDGap; the request waits at most jwksRequestWait
// for it (the fetch itself may go on and still install the keys). It
// reports whether a refetch finished in time, so the caller looks again.
func (j *jwksRemote) refetchUnknown() bool {
	j.mu.Lock()
	done := j.inflight
	if done == nil && j.now().Sub(j.lastKick) >= jwksUnknownKIDGap {
		j.lastKick = j.now()
		done = make(chan struct{})
		j.inflight = done
		go func() {
			if err := j.fetch(); err != nil {
				j.logger.Warn("JWKS refetch for an unknown kid failed", zap.String("url", j.url), zap.Error(err))
			}
			j.mu.Lock()
			j.inflight = nil
			j.mu.Unlock()
			close(done)
		}()
	}
	j.mu.Unlock()
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
