package sechard

import (
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// scriptedRequest is one step of a request sequence run in both modes.
type scriptedRequest struct {
	method, path string
	header       []string // name, value pairs
}

// TestReportModeLogsExactlyWhatEnforcementRefuses runs the same request
// sequence through a real Caddy once with `mode enforce` and once with
// `mode report`, for each stage that has a mode. The would-be refusals
// logged in report mode must be the very requests enforcement refused, for
// the same reasons; in report mode every request reaches the upstream with
// its original status and carries no refusal headers.
func TestReportModeLogsExactlyWhatEnforcementRefuses(t *testing.T) {
	t.Parallel()
	const key = "report-mode-key-0123456789"
	good, bad := []string{"X-API-Key", key}, []string{"X-API-Key", "not-the-key"}
	preflight := func(origin, method, headers string) scriptedRequest {
		h := []string{"Origin", origin, "Access-Control-Request-Method", method}
		if headers != "" {
			h = append(h, "Access-Control-Request-Headers", headers)
		}
		return scriptedRequest{http.MethodOptions, "/data", h}
	}
	get := func(path string, header ...string) scriptedRequest {
		return scriptedRequest{http.MethodGet, path, header}
	}

	cases := []struct {
		stage, block string
		script       []scriptedRequest
		want         map[int]string // request index -> reason refused
	}{
		{
			stage: "cors",
			block: "cors {\n\t\torigins https://app.example.com\n\t\tmode %s\n\t}",
			script: []scriptedRequest{
				preflight("https://app.example.com", "POST", "Content-Type"),
				preflight("https://evil.example.com", "POST", ""),
				preflight("https://app.example.com", "DELETE", ""),
				preflight("https://app.example.com", "POST", "X-Not-Allowed"),
				get("/data", "Origin", "https://evil.example.com"),
				get("/data", "Origin", "https://app.example.com"),
			},
			want: map[int]string{1: "cors_preflight_denied", 2: "cors_preflight_denied", 3: "cors_preflight_denied"},
		},
		{
			stage: "rate_limit",
			block: "rate_limit {\n\t\troute /search/* 2/1m\n\t\trate 3/1m\n\t\tmode %s\n\t}",
			script: []scriptedRequest{
				get("/search/a"), get("/search/b"), get("/search/c"), // shared route budget of 2
				get("/a"), get("/a"), get("/a"), get("/a"), // per-path budget of 3
				get("/b"),
			},
			want: map[int]string{2: "rate_limited", 6: "rate_limited"},
		},
		{
			stage: "auth",
			block: "auth {\n\t\tapi_key REPORT_KEY data:read\n\t\trequire /admin/* admin\n\t\tpublic /healthz\n\t\tmode %s\n\t}",
			script: []scriptedRequest{
				get("/data"),
				get("/data", bad...),
				get("/data", good...),
				get("/admin/users", good...),
				get("/healthz"),
				get("/data", "Authorization", "Bearer not.a.jwt"),
			},
			want: map[int]string{0: "auth_missing", 1: "auth_invalid", 3: "auth_insufficient_scope", 5: "auth_invalid"},
		},
	}

	for _, tc := range cases {
		t.Run(tc.stage, func(t *testing.T) {
			results := map[string]map[int]string{}
			for _, mode := range []string{modeEnforce, modeReport} {
				up := startUpstream(t)
				s := startCaddy(t, fmt.Sprintf("http://127.0.0.1:{PORT} {\n\tsechard {\n\t%s\n\t}\n\treverse_proxy %s\n}",
					fmt.Sprintf(tc.block, mode), up.Addr), caddyOptions{Env: []string{"REPORT_KEY=" + key}})

				forwarded := 0
				for i, step := range tc.script {
					req, _ := http.NewRequest(step.method, s.URL+step.path, nil)
					for j := 0; j+1 < len(step.header); j += 2 {
						req.Header.Set(step.header[j], step.header[j+1])
					}
					req.Header.Set("X-Request-ID", requestIDFor(tc.stage, i))
					resp := s.Do(req)
					if step.method == http.MethodOptions {
						continue // preflights are answered by sechard in both modes
					}
					forwarded++
					if mode == modeReport {
						if resp.StatusCode != http.StatusOK || readBody(resp) != "upstream ok" {
							t.Errorf("report mode, request %d: got %d %q, want the upstream's 200", i, resp.StatusCode, readBody(resp))
						}
						for _, h := range []string{"Retry-After", "WWW-Authenticate", "RateLimit", "RateLimit-Policy"} {
							if v := resp.Header.Get(h); v != "" {
								t.Errorf("report mode, request %d: %s: %q sent to the client", i, h, v)
							}
						}
					}
				}
				if mode == modeReport && up.Count() != forwarded {
					t.Errorf("report mode: upstream saw %d requests, want all %d", up.Count(), forwarded)
				}
				s.SyncLogs()
				results[mode] = refusalsInLogs(t, s, tc.stage, len(tc.script), mode == modeEnforce)
			}
			if !reflect.DeepEqual(results[modeEnforce], tc.want) {
				t.Errorf("enforce refused %v, want %v", results[modeEnforce], tc.want)
			}
			if !reflect.DeepEqual(results[modeReport], results[modeEnforce]) {
				t.Errorf("report mode logged would-be refusals %v; enforcement refused %v", results[modeReport], results[modeEnforce])
			}
		})
	}
}

func requestIDFor(stage string, i int) string { return fmt.Sprintf("script-%s-%d", stage, i) }

// refusalsInLogs maps each scripted request's index to the reason it was
// refused (or would have been), from the stage's log entries: "refused
// request"/"would refuse request", or auth's audit "deny" entries.
func refusalsInLogs(t *testing.T, s *caddyServer, stage string, n int, enforced bool) map[int]string {
	t.Helper()
	index := map[string]int{}
	for i := 0; i < n; i++ {
		index[requestIDFor(stage, i)] = i
	}
	wantLogger := "http.handlers.sechard." + stage
	if stage == "auth" {
		wantLogger = "http.handlers.sechard.audit"
	}
	got := map[int]string{}
	for _, e := range s.LogEntries() {
		i, ok := index[fmt.Sprint(e["request_id"])]
		if !ok {
			continue
		}
		msg, logger := fmt.Sprint(e["msg"]), fmt.Sprint(e["logger"])
		isRefusal := msg == "refused request" || msg == "would refuse request" ||
			(logger == "http.handlers.sechard.audit" && e["decision"] == "deny")
		if !isRefusal {
			continue
		}
		if logger != wantLogger {
			t.Errorf("refusal of request %d logged on %q, want %q", i, logger, wantLogger)
		}
		if e["enforced"] != enforced {
			t.Errorf("refusal of request %d: enforced=%v, want %v", i, e["enforced"], enforced)
		}
		if !enforced && e["level"] != "warn" {
			t.Errorf("would-be refusal of request %d logged at %v, want warn", i, e["level"])
		}
		if prev, dup := got[i]; dup {
			t.Errorf("request %d logged twice (%s, %v)", i, prev, e["reason"])
		}
		got[i] = fmt.Sprint(e["reason"])
	}
	return got
}

// TestReportModePerRoute shows that sechard instances in different handle
// blocks keep their own modes: one path observed, another enforced.
func TestReportModePerRoute(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	s := startCaddy(t, `http://127.0.0.1:{PORT} {
	handle /observed/* {
		sechard {
			rate_limit {
				rate 1/1m
				mode report
			}
		}
		reverse_proxy `+up.Addr+`
	}
	handle {
		sechard {
			rate_limit {
				rate 1/1m
			}
		}
		reverse_proxy `+up.Addr+`
	}
}`)
	var observed, enforced []int
	for i := 0; i < 3; i++ {
		observed = append(observed, s.Get("/observed/x").StatusCode)
		enforced = append(enforced, s.Get("/enforced").StatusCode)
	}
	if got := fmt.Sprint(observed); got != "[200 200 200]" {
		t.Errorf("report-mode route: %s", got)
	}
	if got := fmt.Sprint(enforced); got != "[200 429 429]" {
		t.Errorf("enforced route: %s", got)
	}
	s.SyncLogs()
	var would []string
	for _, e := range s.LogEntries() {
		if e["msg"] == "would refuse request" {
			would = append(would, fmt.Sprint(e["reason"]))
		}
	}
	sort.Strings(would)
	if strings.Join(would, ",") != "rate_limited,rate_limited" {
		t.Errorf("would-be refusals logged: %v, want two rate_limited", would)
	}
}
