package sechard

// End-to-end tests of request IDs (SEC-06) and security headers (SEC-07)
// through the real Caddy binary, with a real reverse_proxy upstream.

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// edgeSite is one Caddy site that exercises every way a response can leave
// through sechard: proxied, proxied to a dead upstream (502), respond 404,
// file_server 404, an error handled by handle_errors, and a placeholder.
func edgeSite(t *testing.T, upstreamAddr, sechardBlock string) string {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "hello.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`http://127.0.0.1:{PORT} {
	%s
	log
	handle /proxy/* {
		reverse_proxy %s
	}
	handle /dead/* {
		reverse_proxy %s
	}
	handle /respond404 {
		respond "nothing here" 404
	}
	handle /files/* {
		root * %s
		uri strip_prefix /files
		file_server
	}
	handle /forbidden {
		error "no entry" 403
	}
	handle /vars {
		respond "id={http.vars.request_id}"
	}
	handle_errors 403 {
		respond "handled {err.status_code}"
	}
}`, sechardBlock, upstreamAddr, deadAddr(t), root)
}

// deadAddr is a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	return fmt.Sprintf("127.0.0.1:%d", freePort(t))
}

// hostileUpstream answers like a careless backend: its own request ID,
// framing policy, Server and X-Powered-By.
func hostileUpstream(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Request-ID", "upstream-made-this-up")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Server", "nginx/1.0")
	h.Set("X-Powered-By", "Express")
	h.Set("Content-Security-Policy", "default-src *")
	h.Set("X-Upstream", "yes")
	fmt.Fprintf(w, "upstream saw %s", r.Header.Get("X-Request-ID"))
}

// requireEdgeHeaders checks the default security headers and a single
// request ID on a response, and returns the ID.
func requireEdgeHeaders(t *testing.T, resp *http.Response) string {
	t.Helper()
	requireExactHeaders(t, resp.Header, defaultSecurityHeaders)
	for _, k := range []string{"Server", "X-Powered-By", "Strict-Transport-Security"} {
		if v := resp.Header.Values(k); len(v) != 0 {
			t.Errorf("%s = %q, want none", k, v)
		}
	}
	ids := resp.Header.Values("X-Request-ID")
	if len(ids) != 1 || !validRequestID(ids[0], 64) {
		t.Fatalf("X-Request-ID = %q, want exactly one valid ID", ids)
	}
	return ids[0]
}

func TestEdgeEveryResponseCarriesIDAndSecurityHeaders(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	up.Handler = hostileUpstream
	s := startCaddy(t, edgeSite(t, up.Addr, "sechard"))

	for _, tc := range []struct {
		name, path string
		status     int
		body       string // substring; "" = not checked
	}{
		{"proxied 200, upstream headers overridden", "/proxy/x", 200, "upstream saw "},
		{"502 from a dead upstream", "/dead/x", 502, ""},
		{"respond 404", "/respond404", 404, "nothing here"},
		{"file_server 200", "/files/hello.txt", 200, "hello"},
		{"file_server 404", "/files/nope.txt", 404, ""},
		{"handle_errors response", "/forbidden", 403, "handled 403"},
		{"placeholder in respond", "/vars", 200, "id="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.Get(tc.path)
			body := readBody(resp)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.body) {
				t.Fatalf("GET %s = %d %q, want %d containing %q", tc.path, resp.StatusCode, body, tc.status, tc.body)
			}
			id := requireEdgeHeaders(t, resp)
			switch tc.path {
			case "/proxy/x":
				if body != "upstream saw "+id {
					t.Errorf("upstream saw a different ID: body %q, response ID %q", body, id)
				}
				if got := up.Last().Header.Values("X-Request-ID"); len(got) != 1 || got[0] != id {
					t.Errorf("upstream request X-Request-ID = %q, want [%q]", got, id)
				}
				if resp.Header.Get("X-Upstream") != "yes" {
					t.Error("the upstream's own other headers were lost")
				}
			case "/vars":
				if body != "id="+id {
					t.Errorf("{http.vars.request_id} = %q, want id=%s", body, id)
				}
			}
			if _, err := uuid.Parse(id); err != nil {
				t.Errorf("generated ID %q is not a UUID", id)
			}
		})
	}
}

func TestEdgeRequestIDInbound(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	s := startCaddy(t, edgeSite(t, up.Addr, "sechard"))

	t.Run("valid inbound ID kept end to end", func(t *testing.T) {
		resp := s.Get("/proxy/a", "X-Request-ID", "client-trace_42")
		if id := requireEdgeHeaders(t, resp); id != "client-trace_42" {
			t.Fatalf("response ID %q, want the client's", id)
		}
		if got := up.Last().Header.Values("X-Request-ID"); len(got) != 1 || got[0] != "client-trace_42" {
			t.Fatalf("upstream got %q", got)
		}
	})

	for _, tc := range []struct {
		name, bad, reason, logged string
	}{
		{"spaces and dots", "bad id.v1", "invalid_byte", strconv.Quote("bad id.v1")},
		{"non-ASCII", "idé", "invalid_byte", strconv.Quote("idé")},
		{"tab and quote", "a\t\"b", "invalid_byte", strconv.Quote("a\t\"b")},
		{"65 chars", strings.Repeat("A", 65), "too_long", strconv.Quote(strings.Repeat("A", 64))},
		{"10 KB", strings.Repeat("x", 10<<10), "too_long", strconv.Quote(strings.Repeat("x", 64))},
	} {
		t.Run("malformed replaced and logged escaped: "+tc.name, func(t *testing.T) {
			resp := s.Get("/proxy/b", "X-Request-ID", tc.bad)
			id := requireEdgeHeaders(t, resp)
			if _, err := uuid.Parse(id); err != nil {
				t.Fatalf("response ID %q, want a new UUID", id)
			}
			if got := up.Last().Header.Values("X-Request-ID"); len(got) != 1 || got[0] != id {
				t.Fatalf("upstream got %q, want [%q]", got, id)
			}
			e := s.WaitLog(func(e map[string]any) bool {
				return e["logger"] == "http.handlers.sechard.request_id" && e["request_id"] == id
			}, 5*time.Second)
			if e["level"] != "warn" || e["reason"] != tc.reason || e["value"] != tc.logged {
				t.Errorf("log entry %v; want warn, reason %s, value %s", e, tc.reason, tc.logged)
			}
			if ra, _ := e["remote_addr"].(string); !strings.HasPrefix(ra, "127.0.0.1:") || e["client_ip"] != "127.0.0.1" {
				t.Errorf("log entry lacks the client address: %v", e)
			}
		})
	}

	t.Run("missing ID: new one, no warning", func(t *testing.T) {
		resp := s.Get("/proxy/c")
		id := requireEdgeHeaders(t, resp)
		s.SyncLogs()
		for _, e := range s.LogEntries() {
			if e["logger"] == "http.handlers.sechard.request_id" && e["request_id"] == id {
				t.Fatalf("warning for a missing ID: %v", e)
			}
		}
	})
}

// TestEdgeAccessLogHasRequestID: the site's access log line carries
// request_id, equal to the response header.
func TestEdgeAccessLogHasRequestID(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	s := startCaddy(t, edgeSite(t, up.Addr, "sechard"))
	for _, path := range []string{"/proxy/log", "/dead/log", "/forbidden"} {
		resp := s.Get(path, "X-Request-ID", "log-"+strings.Trim(strings.ReplaceAll(path, "/", "-"), "-"))
		id := requireEdgeHeaders(t, resp)
		e := s.WaitLog(func(e map[string]any) bool {
			l, _ := e["logger"].(string)
			return strings.HasPrefix(l, "http.log.access") && e["request_id"] == id
		}, 5*time.Second)
		if e["status"] != float64(resp.StatusCode) {
			t.Errorf("%s: access log status %v, response %d", path, e["status"], resp.StatusCode)
		}
	}
}

func TestEdgeSecurityHeadersOff(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	up.Handler = hostileUpstream
	s := startCaddy(t, edgeSite(t, up.Addr, "sechard {\n\t\tsecurity_headers {\n\t\t\toff\n\t\t}\n\t}"))
	for _, path := range []string{"/proxy/x", "/respond404"} {
		resp := s.Get(path)
		for k := range defaultSecurityHeaders {
			if path == "/proxy/x" && (k == "X-Frame-Options" || k == "Content-Security-Policy") {
				continue // the upstream's own, passed through
			}
			if v := resp.Header.Values(k); len(v) != 0 {
				t.Errorf("%s: %s = %q with security_headers off", path, k, v)
			}
		}
		if path == "/proxy/x" {
			if v := resp.Header.Values("X-Frame-Options"); len(v) != 1 || v[0] != "SAMEORIGIN" {
				t.Errorf("the upstream's X-Frame-Options = %q, want it untouched", v)
			}
			if resp.Header.Get("X-Powered-By") != "Express" {
				t.Error("off must not remove headers either")
			}
		}
		// the request ID is an edge header, sent even with security headers off
		ids := resp.Header.Values("X-Request-ID")
		if len(ids) != 1 || ids[0] == "upstream-made-this-up" {
			t.Errorf("%s: X-Request-ID = %q, want exactly the edge's", path, ids)
		}
	}
}

func TestEdgeCustomOptions(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	up.Handler = hostileUpstream
	s := startCaddy(t, edgeSite(t, up.Addr, `sechard {
		request_id {
			header X-Correlation-ID
			max_length 16
			generate uuid7
		}
		security_headers {
			frame_options SAMEORIGIN
			content_security_policy "default-src 'none'"
			content_security_policy_report_only "default-src 'self'"
			referrer_policy no-referrer
			set Permissions-Policy "camera=()"
			remove X-Upstream
		}
	}`))
	resp := s.Get("/proxy/x", "X-Correlation-ID", "seventeen-chars-x")
	requireExactHeaders(t, resp.Header, map[string]string{
		"X-Frame-Options":                     "SAMEORIGIN",
		"Content-Security-Policy":             "default-src 'none'",
		"Content-Security-Policy-Report-Only": "default-src 'self'",
		"Referrer-Policy":                     "no-referrer",
		"Permissions-Policy":                  "camera=()",
		"X-Content-Type-Options":              "nosniff",
	})
	if v := resp.Header.Values("X-Upstream"); len(v) != 0 {
		t.Errorf("removed header sent: %q", v)
	}
	id := resp.Header.Get("X-Correlation-ID")
	if u, err := uuid.Parse(id); err != nil || u.Version() != 7 {
		t.Fatalf("17-char ID over max_length 16 should be replaced by a v7 UUID, got %q", id)
	}
	if got := up.Last().Header.Get("X-Correlation-ID"); got != id {
		t.Errorf("upstream got %q, want %q", got, id)
	}
	if v := resp.Header.Values("X-Request-ID"); len(v) != 1 || v[0] != "upstream-made-this-up" {
		t.Errorf("X-Request-ID is not the ID header here; the upstream's passes: %q", v)
	}
}

// TestEdgeHSTSOnTLSOnly: Strict-Transport-Security on an HTTPS site, never
// on plain HTTP (the plain case is in requireEdgeHeaders above).
func TestEdgeHSTSOnTLSOnly(t *testing.T) {
	t.Parallel()
	certFile, keyFile := selfSignedCert(t)
	s := startCaddy(t, fmt.Sprintf(`https://127.0.0.1:{PORT} {
	tls %s %s
	sechard
	respond "secure"
}`, certFile, keyFile))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // our own throwaway certificate
	}}
	resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/", s.Port))
	if err != nil {
		t.Fatalf("HTTPS request: %v\n%s", err, s.Logs())
	}
	resp.Body.Close()
	want := map[string]string{"Strict-Transport-Security": defaultHSTSValue}
	for k, v := range defaultSecurityHeaders {
		want[k] = v
	}
	requireExactHeaders(t, resp.Header, want)
}
