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

// skippedKey is a JWK parseJWKS left out, and why; callers log it.
type skippedKey struct {
	kid    string
	index  int
	reason string
}

// parseJWKS turns a JWK Set document into verification keys. A key sechard
// cannot use (other `use`, symmetric, unsupported type, curve or size,
// malformed) is skipped and reported in skipped, so one odd key does not
// take the others down; only a set with no usable key is an error. x5u/x5c
// members are ignored (never fetched).
func parseJWKS(data []byte) (keys []*verifyKey, skipped []skippedKey, err error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, nil, fmt.Errorf("decoding JWK Set: %v", err)
	}
	for i, raw := range set.Keys {
		key, kid, err := parseJWK(raw)
		if err != nil {
			skipped = append(skipped, skippedKey{kid: kid, index: i, reason: err.Error()})
			continue
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, skipped, errors.New("JWK Set has no usable signing keys")
	}
	return keys, skipped, nil
}

// parseJWK checks one JWK; kid is returned even when the key is refused, for
// the warning.
func parseJWK(raw json.RawMessage) (key *verifyKey, kid string, err error) {
	var m jwkset.JWKMarshal
	if err := json.Unmarshal(raw, &m); err != nil {
		var k struct {
			KID string `json:"kid"`
		}
		json.Unmarshal(raw, &k) // best effort, for the warning
		return nil, k.KID, fmt.Errorf("malformed key: %v", err)
	}
	switch {
	case m.USE != "" && m.USE != jwkset.UseSig:
		return nil, m.KID, fmt.Errorf("use %q, not sig", m.USE)
	case m.KTY == jwkset.KtyOct:
		return nil, m.KID, errors.New("symmetric key")
	case m.ALG != "" && !slices.Contains(supportedAlgorithms, string(m.ALG)):
		return nil, m.KID, fmt.Errorf("alg %q not supported", m.ALG)
	}
	m.X5U, m.X5C, m.X5T, m.X5TS256 = "", nil, "", ""
	m.D, m.P, m.Q, m.DP, m.DQ, m.QI, m.OTH = "", "", "", "", "", "", nil
	jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
	if err != nil {
		return nil, m.KID, err
	}
	pub, err := checkKey(jwk.Key())
	if err != nil {
		return nil, m.KID, err
	}
	kid = m.KID
	if kid == "" {
		kid = thumbprint(pub)
	}
	return &verifyKey{kid: kid, key: pub, alg: string(m.ALG)}, kid, nil
}

// warnSkipped logs one warning per key parseJWKS left out.
func warnSkipped(logger *zap.Logger, source string, skipped []skippedKey) {
	for _, s := range skipped {
		logger.Warn("JWKS key skipped: sechard cannot use it",
			zap.String("source", source), zap.String("kid", s.kid),
			zap.Int("index", s.index), zap.String("reason", s.reason))
	}
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

	mu          sync.Mutex
	lastKick    time.Time     // last unknown-kid refetch started
	inflight    chan struct{} // closed when the running unknown-kid refetch ends
	fetchLock   sync.Mutex    // one fetch at a time
	lastSkipped string        // the last fetch's skipped keys, under fetchLock

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
	keys, skipped, err := parseJWKS(data)
	// Warn about skipped keys once per change of the set, not every refresh.
	if sum := fmt.Sprint(skipped); sum != j.lastSkipped {
		j.lastSkipped = sum
		warnSkipped(j.logger, j.url, skipped)
	}
	if err != nil {
		return err
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
