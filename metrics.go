package sechard

import (
	"context"
	"errors"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sechard/sechard/internal/ratelimit"
)

// Prometheus collectors, created once per process. Caddy gives every config
// load a fresh registry (ctx.GetMetricsRegistry()), so the same collectors
// are registered on each new one: series keep counting across reloads and
// nothing is registered twice on one registry.
//
// Labels never hold a client address, path or credential: only the server
// name, a fixed reason, a mode, a credential method and the configured
// API-key holder name (a secret's name, never its value).
type collectors struct {
	rejected    *prometheus.CounterVec // server, reason, mode
	authSuccess *prometheus.CounterVec // server, method, key
	idReplaced  *prometheus.CounterVec // server, reason
	storeErrors *prometheus.CounterVec // server, store
	jwksRefresh *prometheus.CounterVec // result
	tokens      *prometheus.CounterVec // server, client
	memKeys     *memKeysCollector      // sechard_ratelimit_memory_keys{server}
	jwksAge     *jwksAgeCollector      // sechard_jwks_last_success_timestamp_seconds
}

// Metric label values.
const (
	idReplacedMissing   = "missing"
	idReplacedMalformed = "malformed"
	jwksResultSuccess   = "success"
	jwksResultError     = "error"
	authMethodAPIKey    = "api_key"
	authMethodJWT       = "jwt"
	authMethodMTLS      = "mtls"
)

var sechardMetrics = sync.OnceValue(func() *collectors {
	const ns = "sechard"
	return &collectors{
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "requests_rejected_total",
			Help: "Requests refused by sechard (mode=enforce) or that would have been (mode=report), by reason.",
		}, []string{"server", "reason", "mode"}),
		authSuccess: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "auth_success_total",
			Help: "Authenticated requests by credential method and key (the API-key holder name, or jwt/mtls).",
		}, []string{"server", "method", "key"}),
		idReplaced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "request_id_replaced_total",
			Help: "Requests whose inbound request ID was missing or malformed and was replaced by a new one.",
		}, []string{"server", "reason"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "ratelimit_store_errors_total",
			Help: "Rate-limit decisions the configured store could not answer (failed, timed out, or skipped while its circuit breaker was open).",
		}, []string{"server", "store"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "tokens_issued_total",
			Help: "Access tokens issued by the token service, by client (API key name or client_cert identity).",
		}, []string{"server", "client"}),
		jwksRefresh: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "jwks_refresh_total",
			Help: "JWKS fetches by result (success, error).",
		}, []string{"result"}),
		memKeys: &memKeysCollector{
			desc: prometheus.NewDesc(ns+"_ratelimit_memory_keys",
				"Live keys in the in-memory rate-limit stores used by this server.", []string{"server"}, nil),
			users: make(map[memStoreUse]int),
		},
		jwksAge: &jwksAgeCollector{
			desc: prometheus.NewDesc(ns+"_jwks_last_success_timestamp_seconds",
				"Unix time of the last successful fetch of the stalest configured JWKS URL (0: never); time() minus this is the age of the oldest key set in use.",
				nil, nil),
			remotes: make(map[*jwksRemote]struct{}),
		},
	}
})

// register puts the collectors on the config's registry. Caddy's registry
// is pedantic and new per config load; registering on one that already
// holds them (a second sechard handler in the same config) is not an error.
func (c *collectors) register(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, col := range []prometheus.Collector{c.rejected, c.authSuccess, c.idReplaced, c.storeErrors, c.jwksRefresh, c.tokens, c.memKeys, c.jwksAge} {
		var are prometheus.AlreadyRegisteredError
		if err := reg.Register(col); err != nil && !errors.As(err, &are) {
			return err
		}
	}
	return nil
}

// serverName is the name of the Caddy server being provisioned, the
// `server` label of Caddy's own HTTP metrics.
func serverName(ctx caddy.Context) string {
	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv != nil && srv.Name() != "" {
		return srv.Name()
	}
	return "UNKNOWN"
}

// handlerMetrics is one handler's view of the collectors, with every label
// set it can record resolved at provision time: recording on the request
// path is at most a map lookup and an atomic add, with no allocation. It
// also emits sechard's Caddy events. A nil *handlerMetrics records nothing.
type handlerMetrics struct {
	server string
	c      *collectors

	enforced map[string]prometheus.Counter // rejections by reason, mode enforce
	reported map[string]prometheus.Counter // rejections by reason, mode report

	idMissing, idMalformed prometheus.Counter

	authJWT, authMTLS prometheus.Counter
	authKeys          map[string]prometheus.Counter // by API-key holder (secret) name

	ctx    caddy.Context    // the provisioning context: events originate from this handler
	events *caddyevents.App // nil when there is no events app (unit tests)
}

func newHandlerMetrics(ctx caddy.Context) (*handlerMetrics, error) {
	c := sechardMetrics()
	if err := c.register(ctx.GetMetricsRegistry()); err != nil {
		return nil, err
	}
	m := &handlerMetrics{
		server:   serverName(ctx),
		c:        c,
		ctx:      ctx,
		enforced: make(map[string]prometheus.Counter, len(rejectionReasons)),
		reported: make(map[string]prometheus.Counter, len(rejectionReasons)),
	}
	// Every reason is resolved now, in both modes, so it is exported as 0
	// before the first refusal (rate() and absent-series alerts need that).
	for _, reason := range rejectionReasons {
		m.enforced[reason] = c.rejected.WithLabelValues(m.server, reason, modeEnforce)
		m.reported[reason] = c.rejected.WithLabelValues(m.server, reason, modeReport)
	}
	m.idMissing = c.idReplaced.WithLabelValues(m.server, idReplacedMissing)
	m.idMalformed = c.idReplaced.WithLabelValues(m.server, idReplacedMalformed)

	// The events app is loaded by the http app before it provisions its
	// routes; AppIfConfigured never instantiates one (and is safe on the
	// bare contexts of unit tests).
	if app, err := ctx.AppIfConfigured("events"); err == nil {
		m.events, _ = app.(*caddyevents.App)
	} else if !errors.Is(err, caddy.ErrNotConfigured) {
		return nil, err
	}
	return m, nil
}

// reject counts a refusal or would-be refusal with this reason.
func (m *handlerMetrics) reject(mode, reason string) {
	if m == nil {
		return
	}
	counters := m.enforced
	if mode == modeReport {
		counters = m.reported
	} else {
		mode = modeEnforce
	}
	if c, ok := counters[reason]; ok {
		c.Inc()
		return
	}
	m.c.rejected.WithLabelValues(m.server, reason, mode).Inc() // a reason no gate listed
}

// requestIDReplaced counts an inbound request ID that was missing (absent
// or empty) or malformed (invalid, too long, or sent more than once).
func (m *handlerMetrics) requestIDReplaced(malformed bool) {
	if m == nil {
		return
	}
	if malformed {
		m.idMalformed.Inc()
	} else {
		m.idMissing.Inc()
	}
}

// provisionAuth resolves the auth-success counters: one per API-key holder,
// one for JWTs and one for mTLS identities.
func (m *handlerMetrics) provisionAuth(keyNames []string) {
	if m == nil {
		return
	}
	m.authJWT = m.c.authSuccess.WithLabelValues(m.server, authMethodJWT, authMethodJWT)
	m.authMTLS = m.c.authSuccess.WithLabelValues(m.server, authMethodMTLS, authMethodMTLS)
	m.authKeys = make(map[string]prometheus.Counter, len(keyNames))
	for _, name := range keyNames {
		m.authKeys[name] = m.c.authSuccess.WithLabelValues(m.server, authMethodAPIKey, name)
	}
}

// provisionTokens resolves sechard_tokens_issued_total for every client
// that may ask for a token, so an idle client shows 0.
func (m *handlerMetrics) provisionTokens(clients []string) map[string]prometheus.Counter {
	if m == nil {
		return nil
	}
	issued := make(map[string]prometheus.Counter, len(clients))
	for _, c := range clients {
		issued[c] = m.c.tokens.WithLabelValues(m.server, c)
	}
	return issued
}

// authSuccessCounter is the sechard_auth_success_total series of id (nil
// for none; key is the API-key holder name for api_key, and the method
// itself for jwt and mtls): resolved at provision, so finding it allocates nothing.
func (m *handlerMetrics) authSuccessCounter(id *identity) prometheus.Counter {
	if m == nil || id == nil {
		return nil
	}
	switch id.method {
	case authMethodJWT:
		return m.authJWT
	case authMethodMTLS:
		return m.authMTLS
	case authMethodAPIKey:
		if c, ok := m.authKeys[id.subject]; ok {
			return c
		}
	}
	return nil
}

// storeErrors returns the store-error counter of a rate-limit store, or nil.
func (m *handlerMetrics) storeErrors(store string) prometheus.Counter {
	if m == nil {
		return nil
	}
	return m.c.storeErrors.WithLabelValues(m.server, store)
}

// trackMemoryStore counts s's keys in this server's
// sechard_ratelimit_memory_keys until the returned func is called.
func (m *handlerMetrics) trackMemoryStore(s *ratelimit.MemoryStore) (untrack func()) {
	if m == nil || s == nil {
		return func() {}
	}
	return m.c.memKeys.track(m.server, s)
}

// emit sends a Caddy event from this handler, with data built only when
// something (a subscriber, or the events app's debug log) would see it.
// Events are for refusals only, which are off the fast path.
func (m *handlerMetrics) emit(name string, data func() map[string]any) {
	if m == nil || m.events == nil || !m.events.ShouldEmit(name) {
		return
	}
	// A replacer of our own: Emit adds the event's placeholders to the
	// context's replacer, and concurrent requests must not share one.
	ctx := m.ctx
	ctx.Context = context.WithValue(m.ctx.Context, caddy.ReplacerCtxKey, caddy.NewReplacer())
	m.events.Emit(ctx, name, data())
}

// The Caddy events of refusals (see the README's "Metrics and events").
// rate_limit's field is the configured name of the limit that refused (a
// route's path pattern, "default", "total" or "identity"), never the
// request's path; auth's is the kind of credential presented (jwt,
// api_key, mtls), or "" when none was.
var (
	eventRateLimited = &eventKind{name: "sechard_rate_limited", key: "route"}
	eventAuthDenied  = &eventKind{name: "sechard_auth_denied", key: "method"}
)

// refused emits a refusal's (or would-be refusal's) event.
func (m *handlerMetrics) refused(ex *exchange, ev *eventKind, mode, reason, value string) {
	m.emit(ev.name, func() map[string]any {
		return m.eventData(ex, mode, reason, ev.key, value)
	})
}

func (m *handlerMetrics) eventData(ex *exchange, mode, reason, k, v string) map[string]any {
	if mode != modeReport {
		mode = modeEnforce
	}
	return map[string]any{
		"server":     m.server,
		"reason":     reason,
		"mode":       mode,
		"request_id": ex.requestID,
		"client_ip":  clientIP(ex.r),
		k:            v,
	}
}

// memKeysCollector reports, per server, the live keys of the distinct memory
// stores its handlers use, counted when scraped (so the request path pays
// nothing). Stores are shared across reloads; while the old and new config
// overlap, a store used by both is counted once.
type memKeysCollector struct {
	desc  *prometheus.Desc
	mu    sync.Mutex
	users map[memStoreUse]int // reference counts
}

type memStoreUse struct {
	server string
	store  *ratelimit.MemoryStore
}

func (c *memKeysCollector) track(server string, s *ratelimit.MemoryStore) func() {
	u := memStoreUse{server, s}
	c.mu.Lock()
	c.users[u]++
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			if c.users[u]--; c.users[u] <= 0 {
				delete(c.users, u)
			}
			c.mu.Unlock()
		})
	}
}

func (c *memKeysCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *memKeysCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	perServer := make(map[string][]*ratelimit.MemoryStore)
	for u := range c.users {
		perServer[u.server] = append(perServer[u.server], u.store)
	}
	c.mu.Unlock()
	for server, stores := range perServer {
		n := 0
		for _, s := range stores {
			n += s.Len()
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), server)
	}
}

// jwksAgeCollector reports the last successful fetch of the stalest JWKS URL
// in use, so one series (without a URL label) answers "is any key set
// stale?". It reports nothing when no jwks_url is configured.
type jwksAgeCollector struct {
	desc    *prometheus.Desc
	mu      sync.Mutex
	remotes map[*jwksRemote]struct{}
}

func (c *jwksAgeCollector) add(j *jwksRemote) {
	c.mu.Lock()
	c.remotes[j] = struct{}{}
	c.mu.Unlock()
}

func (c *jwksAgeCollector) remove(j *jwksRemote) {
	c.mu.Lock()
	delete(c.remotes, j)
	c.mu.Unlock()
}

func (c *jwksAgeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *jwksAgeCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.remotes) == 0 {
		return
	}
	oldest := int64(-1)
	for j := range c.remotes {
		if t := j.lastSuccess.Load(); oldest < 0 || t < oldest {
			oldest = t
		}
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(oldest)/1e9)
}

// jwksMetrics are a JWKS fetcher's pre-resolved counters.
type jwksMetrics struct {
	success, failure prometheus.Counter
}

func newJWKSMetrics() jwksMetrics {
	c := sechardMetrics()
	return jwksMetrics{
		success: c.jwksRefresh.WithLabelValues(jwksResultSuccess),
		failure: c.jwksRefresh.WithLabelValues(jwksResultError),
	}
}

// Interface guards
var (
	_ prometheus.Collector = (*memKeysCollector)(nil)
	_ prometheus.Collector = (*jwksAgeCollector)(nil)
)
