package sechard

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// muxUpstream is a Go 1.22+ http.ServeMux backend, the kind of router the
// path-confusion bypass reached: it routes on the raw path it receives.
type muxUpstream struct {
	*upstream
	mu   sync.Mutex
	hits []string // "<handler> <RequestURI>" for every request served
}

func startMuxUpstream(t *testing.T) *muxUpstream {
	m := &muxUpstream{upstream: startUpstream(t)}
	mux := http.NewServeMux()
	route := func(pattern, name string) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			m.mu.Lock()
			m.hits = append(m.hits, name+" "+r.RequestURI)
			m.mu.Unlock()
			fmt.Fprintf(w, "%s q=%s path=%s subject=%s", name, r.PathValue("q"), r.URL.Path, r.Header.Get("X-Auth-Subject"))
		})
	}
	route("GET /nl-query/{q}", "protected")
	route("GET /schema/{q}", "schema")
	route("GET /healthz", "health")
	route("GET /{q...}", "other")
	m.Handler = mux.ServeHTTP
	return m
}

// take returns and forgets what the upstream served since the last call.
func (m *muxUpstream) take() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.hits
	m.hits = nil
	return h
}

const (
	pathsQueryKey  = "paths-query-key-7b1e0c2f55aa"
	pathsSchemaKey = "paths-schema-key-3c9d8e4f11bb"
)

func pathsSite(up, mode string) string {
	return `http://127.0.0.1:{PORT} {
	sechard {
		paths ` + mode + `
		rate_limit {
			route /nl-query/v* 3/1m
			rate 100/1m
		}
		auth {
			api_key QUERY_KEY nl-query:read
			api_key SCHEMA_KEY schema:read
			require /nl-query/* nl-query:read
			require /schema/* schema:read
			public /healthz
		}
	}
	reverse_proxy ` + up + `
}`
}

// ambiguousTargets are the raw forms of the security review, and more: every
// one would reach /nl-query/{q} upstream while sechard matched another path.
var ambiguousTargets = []string{
	"/nl-query/..%2Fhealthz",
	"/nl-query/..%2fhealthz",
	"/nl-query/%2e%2e%2fhealthz",
	"/nl-query/%2E%2E%2Fhealthz",
	"/nl-query/.%2E%2Fhealthz",
	"/nl-query/..%5Chealthz",
	"/nl-query/..%5chealthz",
	`/nl-query/..\healthz`,
	"/nl-query/x%00",
	"/nl-query/%00%2F..%2F..%2Fhealthz",
	"/nl-query/../healthz",
	"/nl-query/./../healthz",
	"/nl-query/%2e%2e/healthz",
	"/nl-query/%2e/x",
	"/nl-query/..;/healthz",
	"//nl-query/x",
	"/nl-query//x",
	"/healthz/..%2Fnl-query%2Fx",
	"/healthz/%2e%2e/nl-query/x",
	"/healthz//../nl-query/x",
}

func TestPathsRejectEndToEnd(t *testing.T) {
	t.Parallel()
	up := startMuxUpstream(t)
	s := startCaddy(t, pathsSite(up.Addr, "reject"), caddyOptions{Env: []string{"QUERY_KEY=" + pathsQueryKey, "SCHEMA_KEY=" + pathsSchemaKey}})

	for _, target := range ambiguousTargets {
		for _, key := range []string{"", pathsSchemaKey} {
			var hdr []string
			if key != "" {
				hdr = []string{"X-API-Key", key}
			}
			resp, body := rawGet(t, s, target, hdr...)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("GET %q (key %v): %d %q, want 400", target, key != "", resp.StatusCode, body)
			}
			if resp.Header.Get("X-Request-ID") == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %q: 400 lacks request ID or security headers: %v", target, resp.Header)
			}
		}
	}
	if hits := up.take(); len(hits) != 0 {
		t.Fatalf("ambiguous paths reached the upstream in reject mode: %q", hits)
	}
	s.SyncLogs()
	if !strings.Contains(s.Logs(), `"reason":"ambiguous_path"`) {
		t.Error("no refusal logged with reason ambiguous_path")
	}
	legitimatePathsWork(t, s, up)
}

// legitimatePathsWork: paths that are not ambiguous pass unchanged.
func legitimatePathsWork(t *testing.T, s *caddyServer, up *muxUpstream) {
	t.Helper()
	for _, tc := range []struct{ target, wantBody, wantURI string }{
		{"/nl-query/a.b", "protected q=a.b path=/nl-query/a.b", "/nl-query/a.b"},
		{"/nl-query/%41", "protected q=A path=/nl-query/A", "/nl-query/%41"},
		{"/nl-query/x?sql=a%2Fb&p=..%2F..", "protected q=x path=/nl-query/x", "/nl-query/x?sql=a%2Fb&p=..%2F.."},
		{"/nl-query/...", "protected q=... path=/nl-query/...", "/nl-query/..."},
	} {
		resp, body := rawGet(t, s, tc.target, "X-API-Key", pathsQueryKey)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, tc.wantBody) {
			t.Errorf("GET %q: %d %q, want 200 %q", tc.target, resp.StatusCode, body, tc.wantBody)
		}
		if hits := up.take(); len(hits) != 1 || hits[0] != "protected "+tc.wantURI {
			t.Errorf("GET %q: upstream served %q, want protected %s", tc.target, hits, tc.wantURI)
		}
	}
}

func TestPathsNormalizeEndToEnd(t *testing.T) {
	t.Parallel()
	up := startMuxUpstream(t)
	s := startCaddy(t, pathsSite(up.Addr, "normalize"), caddyOptions{Env: []string{"QUERY_KEY=" + pathsQueryKey, "SCHEMA_KEY=" + pathsSchemaKey}})

	// Without credentials, no ambiguous form reaches the protected handler:
	// it is refused (400), or auth judges the cleaned path (401), or the
	// cleaned path is public and that is what the upstream receives.
	for _, target := range ambiguousTargets {
		resp, body := rawGet(t, s, target)
		hits := up.take()
		switch resp.StatusCode {
		case http.StatusBadRequest, http.StatusUnauthorized:
			if len(hits) != 0 {
				t.Errorf("GET %q: %d but the upstream served %q", target, resp.StatusCode, hits)
			}
		case http.StatusOK:
			if len(hits) != 1 || hits[0] != "health /healthz" {
				t.Errorf("GET %q: 200 %q; upstream served %q, want only the public /healthz", target, body, hits)
			}
		default:
			t.Errorf("GET %q: unexpected %d %q", target, resp.StatusCode, body)
		}
	}

	// The review's cases, one by one: the upstream receives the cleaned
	// path, and auth judged that same path.
	for _, tc := range []struct {
		target, key string
		status      int
		served      string // what the upstream served, "" for nothing
	}{
		{"/nl-query/..%2Fhealthz", "", 200, "health /healthz"},
		{"/nl-query/%2e%2e%2fhealthz", "", 200, "health /healthz"},
		{"/healthz/..%2Fnl-query%2Fx", "", 401, ""},
		{"/healthz/%2E%2E/nl-query/x", "", 401, ""},
		{"/nl-query/..%2Fschema%2Fy", pathsSchemaKey, 200, "schema /schema/y"},
		{"/schema/..%2Fnl-query%2Fx", pathsSchemaKey, 403, ""},
		{"/schema/..%2Fnl-query%2Fx", pathsQueryKey, 200, "protected /nl-query/x"},
		{`/schema\..\nl-query\%78`, pathsQueryKey, 200, "protected /nl-query/x"},
		{"//nl-query///x/", pathsQueryKey, 200, "other /nl-query/x/"},
		{"/nl-query/x%00", pathsQueryKey, 400, ""},
		{"/nl-query/..;/healthz", "", 400, ""},
	} {
		var hdr []string
		if tc.key != "" {
			hdr = []string{"X-API-Key", tc.key}
		}
		resp, body := rawGet(t, s, tc.target, hdr...)
		hits := up.take()
		if resp.StatusCode != tc.status {
			t.Errorf("GET %q: %d %q, want %d", tc.target, resp.StatusCode, body, tc.status)
		}
		if want := []string{tc.served}; tc.served == "" && len(hits) != 0 || tc.served != "" && (len(hits) != 1 || hits[0] != want[0]) {
			t.Errorf("GET %q: upstream served %q, want %q", tc.target, hits, tc.served)
		}
	}

	// The route budget follows the cleaned path: /nl-query/x/..%2Fv<i> are
	// all /nl-query/v<i>, one route (/nl-query/v*), one budget of 3.
	var codes []int
	for i := range 5 {
		resp, _ := rawGet(t, s, fmt.Sprintf("/nl-query/x/..%%2Fv%d", i), "X-API-Key", pathsQueryKey)
		codes = append(codes, resp.StatusCode)
	}
	up.take()
	if fmt.Sprint(codes) != "[200 200 200 429 429]" {
		t.Errorf("route budget over ambiguous variants: %v, want [200 200 200 429 429]", codes)
	}
}

func TestPathsAllowPassesThrough(t *testing.T) {
	t.Parallel()
	up := startMuxUpstream(t)
	s := startCaddy(t, pathsSite(up.Addr, "allow"), caddyOptions{Env: []string{"QUERY_KEY=" + pathsQueryKey, "SCHEMA_KEY=" + pathsSchemaKey}})
	resp, _ := rawGet(t, s, "/nl-query/a%2Fb", "X-API-Key", pathsQueryKey)
	if hits := up.take(); resp.StatusCode != http.StatusOK || len(hits) != 1 || hits[0] != "protected /nl-query/a%2Fb" {
		t.Fatalf("allow: %d, upstream served %q; want the raw path passed on", resp.StatusCode, hits)
	}
}
