package sechard

import (
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sechard/sechard/internal/jwttest"
)

// TestMetricsScrapeAfterScriptedRequests drives every kind of refusal, auth
// success and request-ID replacement through a real Caddy with two servers
// (one enforcing, one in report mode), then scrapes its /metrics and checks
// every sechard series exactly.
func TestMetricsScrapeAfterScriptedRequests(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(t)
	var jwksDown atomic.Bool
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if jwksDown.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"keys":[%s]}`, jwttest.ECP256JWK(&ti.keys["es256"].(*ecdsa.PrivateKey).PublicKey, "es256"))
	}))
	defer jwks.Close()

	reportPort, jwtOnlyPort := freePort(t), freePort(t)
	site := `http://127.0.0.1:{PORT} {
	sechard {
		cors {
			origins https://app.test
		}
		rate_limit {
			route /limited/* 2/1m
			rate 1000/1m
		}
		auth {
			api_key BI_KEY nl-query:read
			api_key LEGACY_KEY
			jwt {
				jwks_url ` + jwks.URL + `
			}
			require /nl-query/* nl-query:read
			public /healthz /metrics
		}
	}
	handle /metrics {
		metrics
	}
	respond "ok"
}

http://127.0.0.1:` + strconv.Itoa(reportPort) + ` {
	sechard {
		cors {
			origins https://app.test
			mode report
		}
		auth {
			api_key BI_KEY nl-query:read
			mode report
		}
	}
	respond "ok"
}

http://127.0.0.1:` + strconv.Itoa(jwtOnlyPort) + ` {
	sechard {
		auth {
			phase jwt_only
			api_key BI_KEY
			` + ti.jwtBlock("") + `
		}
	}
	respond "ok"
}`
	start := time.Now()
	s := startCaddy(t, site, caddyOptions{Env: authEnv})
	names := serverNames(t, s)
	sA, sB, sC := names[s.Port], names[reportPort], names[jwtOnlyPort]
	if len(names) != 3 || sA == "" || sB == "" || sC == "" {
		t.Fatalf("server names %v", names)
	}

	n := 0
	do := func(method, url string, status int, hdr ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, url, nil)
		hasID := false
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Add(hdr[i], hdr[i+1])
			hasID = hasID || http.CanonicalHeaderKey(hdr[i]) == "X-Request-Id"
		}
		if !hasID {
			n++
			req.Header.Set("X-Request-ID", "m-"+strconv.Itoa(n))
		}
		resp := s.Do(req)
		if resp.StatusCode != status {
			t.Fatalf("%s %s: %d, want %d", method, url, resp.StatusCode, status)
		}
		return resp
	}
	a := func(path string) string { return s.URL + path }
	b := "http://127.0.0.1:" + strconv.Itoa(reportPort)
	bearer := func(tok string) string { return "Bearer " + tok }
	fullJWT := func() string { return ti.sign("es256", jwttest.Claims(time.Now(), nil), nil) }

	// Request IDs: two missing, three malformed.
	req, _ := http.NewRequest(http.MethodGet, a("/healthz"), nil)
	s.Do(req) // no header at all
	do("GET", a("/healthz"), 200, "X-Request-ID", "")
	do("GET", a("/healthz"), 200, "X-Request-ID", "bad.id")
	do("GET", a("/healthz"), 200, "X-Request-ID", strings.Repeat("a", 65))
	do("GET", a("/healthz"), 200, "X-Request-ID", "one", "X-Request-ID", "two")

	// Auth successes, per holder and method.
	for range 3 {
		do("GET", a("/nl-query/q"), 200, "X-API-Key", biKeyValue)
	}
	do("GET", a("/nl-query/q"), 200, "X-API-Key", legacyKeyValue)
	do("GET", a("/nl-query/q"), 200, "Authorization", bearer(fullJWT()))
	do("GET", a("/nl-query/q"), 200, "Authorization", bearer(fullJWT()))

	// Auth refusals.
	do("GET", a("/nl-query/q"), 401)
	do("GET", a("/nl-query/q"), 401, "X-API-Key", "wrong")
	do("GET", a("/nl-query/q"), 401, "X-API-Key", "wrong-again")
	do("GET", a("/nl-query/q"), 403, "Authorization",
		bearer(ti.sign("es256", jwttest.Claims(time.Now(), map[string]any{"scopes": []string{"schema:read"}}), nil)))
	// An unknown kid while the JWKS endpoint fails: one failed refetch.
	jwksDown.Store(true)
	do("GET", a("/nl-query/q"), 401, "Authorization",
		bearer(ti.sign("es256", jwttest.Claims(time.Now(), nil), map[string]any{"kid": "rotated"})))

	// Rate limit: 2/1m on the route, the next two refused (they never reach
	// auth); their events name the route, not the path.
	do("GET", a("/limited/one"), 200, "X-API-Key", biKeyValue)
	do("GET", a("/limited/two"), 200, "X-API-Key", biKeyValue)
	do("GET", a("/limited/three"), 429, "X-API-Key", biKeyValue, "X-Request-ID", "limited-1")
	do("GET", a("/limited/four"), 429, "X-API-Key", biKeyValue, "X-Request-ID", "limited-2")

	// CORS preflights: a refused one counts, an allowed one does not.
	do("OPTIONS", a("/nl-query/q"), 403, "Origin", "https://evil.test", "Access-Control-Request-Method", "GET")
	do("OPTIONS", a("/nl-query/q"), 204, "Origin", "https://app.test", "Access-Control-Request-Method", "GET")

	// Report mode: would-be refusals count with mode="report" and pass.
	do("GET", b+"/x", 200)
	do("OPTIONS", b+"/x", 204, "Origin", "https://evil.test", "Access-Control-Request-Method", "GET")
	do("GET", b+"/x", 200, "X-API-Key", biKeyValue)

	// Phase 3: a known API key is refused as api_key_disabled.
	do("GET", "http://127.0.0.1:"+strconv.Itoa(jwtOnlyPort)+"/x", 401, "X-API-Key", biKeyValue)

	got := scrape(t, s, "/metrics")
	rej := func(server, reason, mode string) string {
		return series("sechard_requests_rejected_total", "server", server, "reason", reason, "mode", mode)
	}
	want := map[string]float64{}
	for _, srv := range []string{sA, sB, sC} {
		for _, reason := range rejectionReasons {
			want[rej(srv, reason, "enforce")] = 0
			want[rej(srv, reason, "report")] = 0
		}
	}
	want[rej(sA, "auth_missing", "enforce")] = 1
	want[rej(sA, "auth_invalid", "enforce")] = 3
	want[rej(sA, "auth_insufficient_scope", "enforce")] = 1
	want[rej(sA, "rate_limited", "enforce")] = 2
	want[rej(sA, "cors_preflight_denied", "enforce")] = 1
	want[rej(sB, "auth_missing", "report")] = 1
	want[rej(sB, "cors_preflight_denied", "report")] = 1
	want[rej(sC, "api_key_disabled", "enforce")] = 1

	succ := func(server, method, key string) string {
		return series("sechard_auth_success_total", "server", server, "method", method, "key", key)
	}
	want[succ(sA, "api_key", "BI_KEY")] = 5
	want[succ(sA, "api_key", "LEGACY_KEY")] = 1
	want[succ(sA, "jwt", "jwt")] = 2
	want[succ(sA, "mtls", "mtls")] = 0
	want[succ(sB, "api_key", "BI_KEY")] = 1
	want[succ(sB, "jwt", "jwt")] = 0
	want[succ(sB, "mtls", "mtls")] = 0
	want[succ(sC, "api_key", "BI_KEY")] = 0
	want[succ(sC, "jwt", "jwt")] = 0
	want[succ(sC, "mtls", "mtls")] = 0

	idr := func(server, reason string) string {
		return series("sechard_request_id_replaced_total", "server", server, "reason", reason)
	}
	want[idr(sA, "missing")] = 2
	want[idr(sA, "malformed")] = 3
	want[idr(sB, "missing")] = 0
	want[idr(sB, "malformed")] = 0
	want[idr(sC, "missing")] = 0
	want[idr(sC, "malformed")] = 0

	want[series("sechard_jwks_refresh_total", "result", "success")] = 1
	want[series("sechard_jwks_refresh_total", "result", "error")] = 1
	expectMetrics(t, got, want)

	// Exactly these series, and the two gauges: nothing else (no path,
	// address or credential ever becomes a label).
	memKeys := series("sechard_ratelimit_memory_keys", "server", sA)
	jwksTS := series("sechard_jwks_last_success_timestamp_seconds")
	for k := range got {
		if _, ok := want[k]; !ok && k != memKeys && k != jwksTS {
			t.Errorf("unexpected series %s = %v", k, got[k])
		}
	}
	// Live keys: 127.0.0.1 on /healthz, /nl-query/q, /metrics and the
	// /limited/* route (a sweep may have forgotten idle ones).
	if v, ok := got[memKeys]; !ok || v < 1 || v > 4 {
		t.Errorf("%s = %v (present %v), want 1..4", memKeys, v, ok)
	}
	if v := got[jwksTS]; v < float64(start.Unix()) || v > float64(time.Now().Unix()+1) {
		t.Errorf("%s = %v, want the time of the first fetch (after %d)", jwksTS, v, start.Unix())
	}

	// Caddy events, seen through the events app's debug log.
	s.SyncLogs()
	rl := eventLogs(s, "sechard_rate_limited")
	if len(rl) != 2 {
		t.Fatalf("%d sechard_rate_limited events, want 2", len(rl))
	}
	for i, e := range rl {
		data, _ := e["data"].(map[string]any)
		wantData := map[string]any{"server": sA, "reason": "rate_limited", "route": "/limited/*", "mode": "enforce",
			"request_id": fmt.Sprintf("limited-%d", i+1), "client_ip": "127.0.0.1"}
		if fmt.Sprint(data) != fmt.Sprint(wantData) || e["origin"] != "http.handlers.sechard" {
			t.Errorf("event %d: origin %v data %v, want %v", i, e["origin"], data, wantData)
		}
	}
	denied := eventLogs(s, "sechard_auth_denied")
	var reasons []string
	for _, e := range denied {
		data, _ := e["data"].(map[string]any)
		reasons = append(reasons, fmt.Sprintf("%v/%v/%v/%v", data["server"], data["mode"], data["reason"], data["method"]))
		if id, _ := data["request_id"].(string); !strings.HasPrefix(id, "m-") {
			t.Errorf("auth_denied event without the request's ID: %v", data)
		}
	}
	wantReasons := []string{
		sA + "/enforce/auth_missing/", sA + "/enforce/auth_invalid/api_key", sA + "/enforce/auth_invalid/api_key",
		sA + "/enforce/auth_insufficient_scope/jwt", sA + "/enforce/auth_invalid/jwt", sB + "/report/auth_missing/",
		sC + "/enforce/api_key_disabled/api_key",
	}
	if strings.Join(reasons, " ") != strings.Join(wantReasons, " ") {
		t.Errorf("sechard_auth_denied events:\n got %v\nwant %v", reasons, wantReasons)
	}
	for _, e := range s.LogEntries() {
		if e["logger"] == "events" && e["msg"] == "event" {
			if b, _ := json.Marshal(e); strings.Contains(string(b), biKeyValue) || strings.Contains(string(b), "Bearer") {
				t.Fatalf("event carries a credential: %s", b)
			}
		}
	}
}

// TestMetricsCardinalityUnderDistinctClientsAndPaths sends 10,000 requests
// from distinct client addresses (X-Forwarded-For from a trusted proxy) to
// distinct paths, with valid, invalid and missing credentials and request
// IDs, and checks that the set of sechard series is unchanged.
func TestMetricsCardinalityUnderDistinctClientsAndPaths(t *testing.T) {
	t.Parallel()
	site := `http://127.0.0.1:{PORT} {
	sechard {
		rate_limit {
			rate 1000/1m
		}
		auth {
			api_key BI_KEY
			public /metrics /open/*
		}
	}
	handle /metrics {
		metrics
	}
	respond "ok"
}`
	s := startCaddy(t, site, caddyOptions{
		Env:     authEnv,
		Globals: "\tservers {\n\t\ttrusted_proxies static 127.0.0.1/8\n\t}",
	})
	// Warm every code path once, so every series that can exist does.
	for _, h := range [][]string{{"X-API-Key", biKeyValue}, {"X-API-Key", "bad"}, {}, {"X-Request-ID", "bad.id"}} {
		s.Get("/warm", h...)
	}
	before := scrape(t, s, "/metrics")

	const total, workers = 10000, 4
	var wg sync.WaitGroup
	var failures atomic.Int64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 10 * time.Second}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += workers {
				path := fmt.Sprintf("/p/%d/%x", i, i*7919)
				if i%5 == 0 {
					path = "/open" + path
				}
				req, _ := http.NewRequest(http.MethodGet, s.URL+path, nil)
				req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
				switch i % 4 {
				case 0:
					req.Header.Set("X-API-Key", biKeyValue)
				case 1:
					req.Header.Set("X-API-Key", fmt.Sprintf("wrong-%d", i))
				}
				if i%3 == 0 {
					req.Header.Set("X-Request-ID", fmt.Sprintf("bad id %d", i))
				}
				resp, err := client.Do(req)
				if err != nil {
					failures.Add(1)
					continue
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	client.CloseIdleConnections()
	if f := failures.Load(); f > 0 {
		t.Fatalf("%d requests failed", f)
	}
	after := scrape(t, s, "/metrics")

	var added, removed []string
	for k := range after {
		if _, ok := before[k]; !ok {
			added = append(added, k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			removed = append(removed, k)
		}
	}
	if len(added) > 0 || len(removed) > 0 {
		t.Fatalf("series changed: %d before, %d after; added %v removed %v", len(before), len(after), added, removed)
	}
	// The requests were counted (so the series really were exercised).
	names := serverNames(t, s)
	srv := names[s.Port]
	if v := after[series("sechard_auth_success_total", "server", srv, "method", "api_key", "key", "BI_KEY")]; v < 2000 {
		t.Errorf("auth successes %v, want at least 2000", v)
	}
	for k := range after {
		if strings.Contains(k, "10.") || strings.Contains(k, "/p/") {
			t.Errorf("a client address or path became a label: %s", k)
		}
	}
	t.Logf("%d sechard series, unchanged by %d requests", len(after), total)
}

// TestMetricsSurviveTenReloads reloads a real Caddy ten times: every load
// registers on a fresh registry without a duplicate-registration error,
// /metrics keeps being served, and counters keep counting from where they
// were.
func TestMetricsSurviveTenReloads(t *testing.T) {
	t.Parallel()
	site := func(i int) string {
		return fmt.Sprintf(`http://127.0.0.1:{PORT} {
	sechard {
		rate_limit {
			rate 1000/1m
		}
		auth {
			api_key BI_KEY
			public /metrics
		}
	}
	handle /metrics {
		metrics
	}
	respond "ok %d"
}`, i)
	}
	s := startCaddy(t, site(0), caddyOptions{Env: authEnv})
	srv := serverNames(t, s)[s.Port]
	succ := series("sechard_auth_success_total", "server", srv, "method", "api_key", "key", "BI_KEY")
	missing := series("sechard_requests_rejected_total", "server", srv, "reason", "auth_missing", "mode", "enforce")
	keys := series("sechard_ratelimit_memory_keys", "server", srv)
	for i := 1; i <= 10; i++ {
		if err := s.Reload(site(i)); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		resp := s.Get("/x", "X-API-Key", biKeyValue, "X-Request-ID", "r")
		if body := readBody(resp); resp.StatusCode != 200 || body != fmt.Sprintf("ok %d", i) {
			t.Fatalf("after reload %d: %d %q", i, resp.StatusCode, body)
		}
		if resp := s.Get("/x", "X-Request-ID", "r"); resp.StatusCode != 401 {
			t.Fatalf("after reload %d: unauthenticated request got %d", i, resp.StatusCode)
		}
		got := scrape(t, s, "/metrics")
		expectMetrics(t, got, map[string]float64{succ: float64(i), missing: float64(i)})
		if v := got[keys]; v < 1 {
			t.Errorf("after reload %d: %s = %v, want ≥ 1", i, keys, v)
		}
	}
	// The admin endpoint's /metrics serves the same registry.
	resp, err := http.Get("http://" + s.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	expectMetrics(t, parseMetrics(t, string(body)), map[string]float64{succ: 10, missing: 10})
	if code, exited := s.ExitCode(); exited {
		t.Fatalf("caddy exited with %d", code)
	}
	s.SyncLogs()
	logs := s.Logs()
	for _, bad := range []string{"duplicate metrics collector registration", "panic", "registering metrics", "error gathering metrics"} {
		if strings.Contains(logs, bad) {
			t.Fatalf("logs contain %q:\n%s", bad, logs)
		}
	}
}

// TestMetricsRedisStoreErrors counts, per decision, every rate-limit
// decision Redis could not answer. With on_store_error local the requests
// are still limited locally; with deny each is refused as
// rate_limit_store_unavailable, counted and emitted as an event.
func TestMetricsRedisStoreErrors(t *testing.T) {
	t.Parallel()
	for _, onErr := range []string{"local", "deny"} {
		t.Run(onErr, func(t *testing.T) {
			rs := startRedis(t)
			site := `http://127.0.0.1:{PORT} {
	sechard {
		rate_limit {
			rate 1000/1m
			store redis ` + rs.URL + `
			store_timeout 100ms
			on_store_error ` + onErr + `
		}
	}
	handle /metrics {
		metrics
	}
	respond "ok"
}`
			s := startCaddy(t, site, caddyOptions{})
			srv := serverNames(t, s)[s.Port]
			errs := series("sechard_ratelimit_store_errors_total", "server", srv, "store", "redis")
			down := series("sechard_requests_rejected_total", "server", srv, "reason", "rate_limit_store_unavailable", "mode", "enforce")
			for range 3 {
				s.Get("/a", "X-Request-ID", "r")
			}
			expectMetrics(t, scrape(t, s, "/metrics"), map[string]float64{errs: 0, down: 0})

			rs.Stop()
			status, refused := 200, 0.0
			if onErr == "deny" {
				status, refused = 429, 5
			}
			for i := range 5 {
				if resp := s.Get("/a", "X-Request-ID", fmt.Sprint("outage-", i)); resp.StatusCode != status {
					t.Fatalf("request %d during the outage: %d, want %d", i, resp.StatusCode, status)
				}
			}
			if onErr == "deny" {
				// The scrape itself would be refused too; read the admin endpoint.
				resp, err := http.Get("http://" + s.AdminAddr + "/metrics")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				expectMetrics(t, parseMetrics(t, string(body)), map[string]float64{errs: 5, down: refused})
				s.SyncLogs()
				ev := eventLogs(s, "sechard_rate_limited")
				if len(ev) != 5 {
					t.Fatalf("%d sechard_rate_limited events, want 5", len(ev))
				}
				data, _ := ev[0]["data"].(map[string]any)
				if data["reason"] != "rate_limit_store_unavailable" || data["route"] != "default" || data["request_id"] != "outage-0" {
					t.Fatalf("event data %v", data)
				}
				return
			}
			// The five requests and the scrape itself (rate-limited like any
			// path) were decided without Redis.
			expectMetrics(t, scrape(t, s, "/metrics"), map[string]float64{errs: 6, down: 0})
		})
	}
}
