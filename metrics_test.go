package sechard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sechard/sechard/internal/ratelimit"
)

// recordedEvents collects what eventRecorder sees.
var recordedEvents struct {
	sync.Mutex
	list []caddy.Event
}

// eventRecorder is an events.handlers module for tests: a real subscriber,
// bound through the events app's own config, like any Caddy event handler.
type eventRecorder struct{}

func init() { caddy.RegisterModule(eventRecorder{}) }

func (eventRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "events.handlers.sechard_test_recorder", New: func() caddy.Module { return new(eventRecorder) }}
}

func (eventRecorder) Handle(_ context.Context, e caddy.Event) error {
	recordedEvents.Lock()
	recordedEvents.list = append(recordedEvents.list, e)
	recordedEvents.Unlock()
	return nil
}

// TestEventsReachASubscribedHandler loads, in this process, a config whose
// events app subscribes a handler to sechard's events from the sechard
// module, and checks that refusals (only refusals) reach it with their data.
func TestEventsReachASubscribedHandler(t *testing.T) {
	t.Setenv("EVT_KEY", "evt-secret-value-0123456789")
	recordedEvents.Lock()
	recordedEvents.list = nil
	recordedEvents.Unlock()
	port := freePort(t)
	cfg := fmt.Sprintf(`{
	"admin": {"disabled": true},
	"logging": {"logs": {"default": {"level": "ERROR"}}},
	"apps": {
		"events": {"subscriptions": [{
			"events": ["sechard_rate_limited", "sechard_auth_denied"],
			"modules": ["http.handlers.sechard"],
			"handlers": [{"handler": "sechard_test_recorder"}]
		}]},
		"http": {"servers": {"edge": {
			"listen": ["127.0.0.1:%d"],
			"automatic_https": {"disable": true},
			"routes": [{"handle": [
				{"handler": "sechard",
				 "rate_limit": {"routes": [{"path": "/limited/*", "events": 1, "window": "1m"}]},
				 "auth": {"api_keys": [{"secret": "EVT_KEY"}]}},
				{"handler": "static_response", "body": "ok"}
			]}]
		}}}
	}
}`, port)
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { caddy.Stop() })

	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	get := func(path, id string, hdr ...string) int {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("X-Request-ID", id)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		path, id string
		hdr      []string
		status   int
	}{
		{"/ok", "allowed", []string{"X-API-Key", "evt-secret-value-0123456789"}, 200},
		{"/ok", "no-credentials", nil, 401},
		{"/ok", "bad-key", []string{"X-API-Key", "nope"}, 401},
		{"/limited/a", "first", []string{"X-API-Key", "evt-secret-value-0123456789"}, 200},
		{"/limited/b", "second", []string{"X-API-Key", "evt-secret-value-0123456789"}, 429},
	} {
		if got := get(tc.path, tc.id, tc.hdr...); got != tc.status {
			t.Fatalf("%s (%s): %d, want %d", tc.path, tc.id, got, tc.status)
		}
	}

	recordedEvents.Lock()
	defer recordedEvents.Unlock()
	var got []string
	for _, e := range recordedEvents.list {
		origin := ""
		if e.Origin() != nil {
			origin = string(e.Origin().CaddyModule().ID)
		}
		got = append(got, fmt.Sprintf("%s %s server=%v reason=%v route=%v method=%v mode=%v request_id=%v",
			e.Name(), origin, e.Data["server"], e.Data["reason"], e.Data["route"], e.Data["method"], e.Data["mode"], e.Data["request_id"]))
	}
	want := []string{
		"sechard_auth_denied http.handlers.sechard server=edge reason=auth_missing route=<nil> method= mode=enforce request_id=no-credentials",
		"sechard_auth_denied http.handlers.sechard server=edge reason=auth_invalid route=<nil> method=api_key mode=enforce request_id=bad-key",
		"sechard_rate_limited http.handlers.sechard server=edge reason=rate_limited route=/limited/* method=<nil> mode=enforce request_id=second",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// testMetrics provisions handler metrics on a bare context (no events app).
func testMetrics(t testing.TB) (*handlerMetrics, *prometheus.Registry) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	m, err := newHandlerMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m, ctx.GetMetricsRegistry()
}

func TestMetricsRequestIDReplacedReasons(t *testing.T) {
	m, _ := testMetrics(t)
	off := false
	for _, tc := range []struct {
		name               string
		cfg                RequestID
		values             []string
		missing, malformed float64
	}{
		{"absent is missing", RequestID{}, nil, 1, 0},
		{"empty is missing", RequestID{}, []string{""}, 1, 0},
		{"valid is kept", RequestID{}, []string{"abc-123"}, 0, 0},
		{"invalid byte is malformed", RequestID{}, []string{"a.b"}, 0, 1},
		{"too long is malformed", RequestID{}, []string{strings.Repeat("a", 65)}, 0, 1},
		{"several values are malformed", RequestID{}, []string{"a", "b"}, 0, 1},
		{"accept_inbound off counts nothing", RequestID{AcceptInbound: &off}, []string{"a.b"}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, _ := newTestEnv(t)
			env.metrics = m
			c := tc.cfg
			if err := c.provision(env); err != nil {
				t.Fatal(err)
			}
			m0, b0 := metricValue(m.idMissing), metricValue(m.idMalformed)
			var hdr []string
			for _, v := range tc.values {
				hdr = append(hdr, "X-Request-Id", v)
			}
			r, _ := newTestRequest(hdr...)
			c.assign(&exchange{r: r, repl: r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)})
			if d := metricValue(m.idMissing) - m0; d != tc.missing {
				t.Errorf("missing +%v, want +%v", d, tc.missing)
			}
			if d := metricValue(m.idMalformed) - b0; d != tc.malformed {
				t.Errorf("malformed +%v, want +%v", d, tc.malformed)
			}
		})
	}
}

func TestMetricsNilIsSafe(t *testing.T) {
	var m *handlerMetrics
	m.reject(modeReport, "x")
	m.requestIDReplaced(true)
	m.provisionAuth([]string{"K"})
	countAuthSuccess(m, &identity{method: "jwt"})
	m.refused(nil, eventRateLimited, modeEnforce, rateLimitedReason, "r")
	if m.storeErrors(storeRedis) != nil {
		t.Fatal("nil metrics gave a store-error counter")
	}
	m.trackMemoryStore(nil)()
}

func TestMetricsRejectionCountsByModeAndSkipsAnswers(t *testing.T) {
	m, _ := testMetrics(t)
	enf, rep := m.enforced[rateLimitedReason], m.reported[rateLimitedReason]
	e0, r0 := metricValue(enf), metricValue(rep)
	ex := &exchange{w: httptest.NewRecorder(), r: httptest.NewRequest("GET", "/", nil)}
	h := &Handler{metrics: m}
	refusal := decision{Status: 429, Reason: rateLimitedReason}
	h.conclude(ex, &RateLimit{}, refusal)
	h.conclude(ex, &RateLimit{Mode: ""}, refusal) // no mode: enforce
	h.conclude(ex, &RateLimit{Mode: modeReport}, refusal)
	h.conclude(ex, &CORS{}, decision{Status: 204, Answer: true})
	h.conclude(ex, &RateLimit{}, allow)
	if d := metricValue(enf) - e0; d != 2 {
		t.Errorf("enforce +%v, want +2", d)
	}
	if d := metricValue(rep) - r0; d != 1 {
		t.Errorf("report +%v, want +1", d)
	}
	for _, reason := range []string{"cors_preflight_denied", "rate_limited", "rate_limit_store_unavailable",
		"auth_missing", "auth_invalid", "auth_insufficient_scope", "api_key_disabled"} {
		if m.enforced[reason] == nil || m.reported[reason] == nil {
			t.Errorf("reason %s not pre-resolved", reason)
		}
	}
}

func TestMetricsAuthSuccessPerHolder(t *testing.T) {
	m, _ := testMetrics(t)
	m.provisionAuth([]string{"BI_KEY", "LEGACY_KEY"})
	c := sechardMetrics().authSuccess
	val := func(method, key string) float64 { return metricValue(c.WithLabelValues(m.server, method, key)) }
	b0, l0, j0, t0 := val("api_key", "BI_KEY"), val("api_key", "LEGACY_KEY"), val("jwt", "jwt"), val("mtls", "mtls")
	countAuthSuccess(m, &identity{method: "api_key", subject: "BI_KEY"})
	countAuthSuccess(m, &identity{method: "api_key", subject: "BI_KEY"})
	countAuthSuccess(m, &identity{method: "jwt", subject: "service-bi"})
	countAuthSuccess(m, &identity{method: "mtls", subject: "spiffe://x"})
	countAuthSuccess(m, &identity{method: "api_key", subject: "UNKNOWN_KEY"}) // never a new series
	if got := [4]float64{val("api_key", "BI_KEY") - b0, val("api_key", "LEGACY_KEY") - l0, val("jwt", "jwt") - j0, val("mtls", "mtls") - t0}; got != [4]float64{2, 0, 1, 1} {
		t.Fatalf("increments %v, want [2 0 1 1]", got)
	}
}

func TestMetricsRecordingAllocatesNothing(t *testing.T) {
	m, _ := testMetrics(t)
	m.provisionAuth([]string{"BI_KEY"})
	id := &identity{method: "api_key", subject: "BI_KEY"}
	if n := testing.AllocsPerRun(1000, func() {
		m.reject(modeEnforce, "auth_invalid")
		countAuthSuccess(m, id)
		m.requestIDReplaced(true)
	}); n != 0 {
		t.Fatalf("%v allocs per request, want 0", n)
	}
}

// TestMetricsMemoryKeysCountsSharedStoresOnce: while an old and a new
// config overlap during a reload, a store both use is counted once; a
// store is no longer counted once every user untracked it.
func TestMetricsMemoryKeysCountsSharedStoresOnce(t *testing.T) {
	m, reg := testMetrics(t)
	m.server = "memkeys-test"
	s1 := ratelimit.NewMemoryStore(1000, time.Now, 0)
	s2 := ratelimit.NewMemoryStore(1000, time.Now, 0)
	now := time.Now()
	rate := mustRate(t)
	for i := range 3 {
		s1.Take(now, fmt.Sprint("c", i), []ratelimit.Budget{{Kind: ratelimit.KindPath, Tag: "/", Rate: rate}})
	}
	s2.Take(now, "c", []ratelimit.Budget{{Kind: ratelimit.KindPath, Tag: "/", Rate: rate}})

	gauge := func() (float64, bool) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "sechard_ratelimit_memory_keys" {
				continue
			}
			for _, mt := range mf.GetMetric() {
				if mt.GetLabel()[0].GetValue() == "memkeys-test" {
					return mt.GetGauge().GetValue(), true
				}
			}
		}
		return 0, false
	}
	old := m.trackMemoryStore(s1)
	reloaded := m.trackMemoryStore(s1) // the new config, same limits
	if v, _ := gauge(); v != 3 {
		t.Fatalf("shared store counted as %v keys, want 3", v)
	}
	other := m.trackMemoryStore(s2)
	if v, _ := gauge(); v != 4 {
		t.Fatalf("two stores: %v keys, want 4", v)
	}
	old()
	old() // idempotent
	other()
	if v, _ := gauge(); v != 3 {
		t.Fatalf("after the old config left: %v keys, want 3", v)
	}
	reloaded()
	if v, ok := gauge(); ok {
		t.Fatalf("untracked server still reported (%v)", v)
	}
}

func mustRate(t testing.TB) *ratelimit.Rate {
	t.Helper()
	l, err := ratelimit.NewRate(10, time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestMetricsJWKSAgeReportsTheStalestKeySet(t *testing.T) {
	c := sechardMetrics().jwksAge
	a, b := &jwksRemote{}, &jwksRemote{}
	a.lastSuccess.Store(2_000_000_000)
	b.lastSuccess.Store(1_000_000_000)
	c.add(a)
	c.add(b)
	defer c.remove(a)
	defer c.remove(b)
	if v := metricValue(c); v != 1 {
		t.Fatalf("timestamp %v, want 1 (the older of the two)", v)
	}
	c.remove(b)
	if v := metricValue(c); v != 2 {
		t.Fatalf("timestamp %v, want 2", v)
	}
}

func TestMetricsRegisterTwiceOnOneRegistry(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	for range 2 {
		if err := sechardMetrics().register(reg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkMetricsRecordRejection is the request-path cost of counting a
// refusal in Handler.conclude.
func BenchmarkMetricsRecordRejection(b *testing.B) {
	m, _ := testMetrics(b)
	b.ReportAllocs()
	for b.Loop() {
		m.reject(modeEnforce, rateLimitedReason)
	}
}

// BenchmarkMetricsRecordAuthSuccess is the request-path cost of counting an
// API-key success (a map lookup by holder name, then an atomic add).
func BenchmarkMetricsRecordAuthSuccess(b *testing.B) {
	m, _ := testMetrics(b)
	names := make([]string, 50)
	for i := range names {
		names[i] = fmt.Sprintf("KEY_HOLDER_%02d", i)
	}
	m.provisionAuth(names)
	id := &identity{method: "api_key", subject: names[37]}
	b.ReportAllocs()
	for b.Loop() {
		countAuthSuccess(m, id)
	}
}

// metricValue is the value of a collector that yields one counter or gauge.
func metricValue(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 4)
	c.Collect(ch)
	close(ch)
	var v float64
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			panic(err)
		}
		if pb.Counter != nil {
			v = pb.Counter.GetValue()
		} else if pb.Gauge != nil {
			v = pb.Gauge.GetValue()
		}
	}
	return v
}

// TestGrafanaDashboardUsesExportedMetrics keeps grafana/sechard-dashboard.json
// valid JSON whose queries only name metrics sechard exports.
func TestGrafanaDashboardUsesExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("grafana/sechard-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	reg := prometheus.NewPedanticRegistry()
	if err := sechardMetrics().register(reg); err != nil {
		t.Fatal(err)
	}
	descs := make(chan *prometheus.Desc, 16)
	for _, c := range []prometheus.Collector{sechardMetrics().rejected, sechardMetrics().authSuccess, sechardMetrics().idReplaced,
		sechardMetrics().storeErrors, sechardMetrics().jwksRefresh, sechardMetrics().memKeys, sechardMetrics().jwksAge} {
		c.Describe(descs)
	}
	close(descs)
	for d := range descs {
		name := regexp.MustCompile(`fqName: "([a-z_]+)"`).FindStringSubmatch(d.String())
		exported[name[1]] = true
	}
	used := map[string]bool{}
	queries := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			queries++
			for _, name := range regexp.MustCompile(`sechard_[a-z_]+`).FindAllString(tg.Expr, -1) {
				if !exported[name] {
					t.Errorf("panel %q queries %s, which sechard does not export", p.Title, name)
				}
				used[name] = true
			}
		}
	}
	for name := range exported {
		if !used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
	if queries < 10 {
		t.Errorf("%d queries, want a panel per metric", queries)
	}
}

// countAuthSuccess counts id's success as Handler.conclude does with the
// counter auth puts in its decision.
func countAuthSuccess(m *handlerMetrics, id *identity) {
	if c := m.authSuccessCounter(id); c != nil {
		c.Inc()
	}
}
