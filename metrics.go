package sechard

import (
	"errors"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
)

// Prometheus collectors, created once per process: Caddy gives every config
// load a fresh registry, so they are registered on each one, and counters keep
// counting across reloads. Labels never hold a client address, path or
// credential: only the server name, a fixed reason, a mode, a method and the
// configured API-key holder name.
type collectors struct {
	rejected      *prometheus.CounterVec // server, reason, mode
	authSuccess   *prometheus.CounterVec // server, method, key
	idReplaced    *prometheus.CounterVec // server, reason
	storeErrors   *prometheus.CounterVec // server, store
	storeKeys     *prometheus.GaugeVec   // server
	jwksRefresh   *prometheus.CounterVec // result
	jwksKeySetAge *prometheus.GaugeVec   // url-independent: one series per handler is not needed, so no labels
}

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
			Help: "Rate-limit decisions the configured store could not answer.",
		}, []string{"server", "store"}),
		storeKeys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "ratelimit_memory_keys",
			Help: "Live keys in the in-memory rate-limit store.",
		}, []string{"server"}),
		jwksRefresh: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "jwks_refresh_total",
			Help: "JWKS fetches by result (success, error).",
		}, []string{"result"}),
		jwksKeySetAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "jwks_last_success_timestamp_seconds",
			Help: "Unix time of the last successful JWKS fetch; now minus this is the key set's age.",
		}, nil),
	}
})

// register puts the collectors on the config's registry, once per registry.
func (c *collectors) register(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, col := range []prometheus.Collector{c.rejected, c.authSuccess, c.idReplaced, c.storeErrors, c.storeKeys, c.jwksRefresh, c.jwksKeySetAge} {
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

// handlerMetrics holds one handler's pre-resolved counters, so recording on
// the request path is a map lookup and an atomic add.
type handlerMetrics struct {
	server   string
	enforced map[string]prometheus.Counter // by reason
	reported map[string]prometheus.Counter // by reason, mode report
	c        *collectors
}

// rejectionReasons are every reason a stage may give; their counters are
// resolved at provision time.
var rejectionReasons = []string{
	"cors_preflight_denied", "rate_limited", "ratelimit_store_unavailable",
	"auth_missing", "auth_invalid", "auth_insufficient_scope", "api_key_disabled",
}

func newHandlerMetrics(ctx caddy.Context) (*handlerMetrics, error) {
	c := sechardMetrics()
	if err := c.register(ctx.GetMetricsRegistry()); err != nil {
		return nil, err
	}
	m := &handlerMetrics{server: serverName(ctx), c: c,
		enforced: make(map[string]prometheus.Counter), reported: make(map[string]prometheus.Counter)}
	for _, reason := range rejectionReasons {
		m.enforced[reason] = c.rejected.WithLabelValues(m.server, reason, modeEnforce)
		m.reported[reason] = c.rejected.WithLabelValues(m.server, reason, modeReport)
	}
	return m, nil
}

// rejection counts a refusal (or, in report mode, a would-be refusal).
func (m *handlerMetrics) rejection(mode, reason string) {
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
	m.c.rejected.WithLabelValues(m.server, reason, mode).Inc()
}
