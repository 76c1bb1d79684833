package sechard

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCORSEndToEnd runs the CORS stage in the real binary, in front of
// reverse_proxy, error routes and handle_errors.
func TestCORSEndToEnd(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	up.Handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", "Accept-Encoding")
		fmt.Fprint(w, "upstream ok")
	}
	errPort := freePort(t)
	cors := `cors {
			origins https://app.example.com HTTP://LOCALHOST:3000/
			credentials
		}`
	s := startCaddy(t, fmt.Sprintf(`http://127.0.0.1:{PORT} {
	sechard {
		%[1]s
	}
	handle /denied {
		error 401
	}
	handle /limited {
		error 429
	}
	handle {
		reverse_proxy %[2]s
	}
}

http://127.0.0.1:%[3]d {
	sechard {
		%[1]s
	}
	error /denied 401
	handle_errors {
		respond "{err.status_code} from handle_errors"
	}
}`, cors, up.Addr, errPort), caddyOptions{
		// Caddy's default is 16 KB; let a megabyte header reach sechard.
		Globals: "servers {\n\t\tmax_header_size 2MB\n\t}",
	})
	errURL := fmt.Sprintf("http://127.0.0.1:%d", errPort)

	send := func(method, url string, hdr ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, url, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Add(hdr[i], hdr[i+1])
		}
		return s.Do(req)
	}
	expectAllowed := func(t *testing.T, resp *http.Response, origin string) {
		t.Helper()
		if got := resp.Header.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != origin {
			t.Errorf("Access-Control-Allow-Origin %q, want %q", got, origin)
		}
		if got := resp.Header.Values("Access-Control-Allow-Credentials"); len(got) != 1 || got[0] != "true" {
			t.Errorf("Access-Control-Allow-Credentials %q", got)
		}
		if got := resp.Header.Get("Access-Control-Expose-Headers"); got != defaultExpose {
			t.Errorf("Access-Control-Expose-Headers %q", got)
		}
	}
	expectNoCORS := func(t *testing.T, resp *http.Response) {
		t.Helper()
		for k := range resp.Header {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("unexpected %s: %q", k, resp.Header[k])
			}
		}
	}
	expectVary := func(t *testing.T, resp *http.Response, want ...string) {
		t.Helper()
		got := strings.Join(resp.Header.Values("Vary"), ", ")
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("Vary %q lacks %s", got, w)
			}
		}
	}

	t.Run("allowed origin reads the upstream response, upstream Vary kept", func(t *testing.T) {
		resp := send("GET", s.URL+"/v1", "Origin", "https://app.example.com")
		if resp.StatusCode != 200 || readBody(resp) != "upstream ok" {
			t.Fatalf("%d %q", resp.StatusCode, readBody(resp))
		}
		expectAllowed(t, resp, "https://app.example.com")
		expectVary(t, resp, "Origin", "Accept-Encoding")
	})
	t.Run("normalised config entry matches what browsers send", func(t *testing.T) {
		resp := send("GET", s.URL+"/v1", "Origin", "http://localhost:3000")
		expectAllowed(t, resp, "http://localhost:3000")
	})
	t.Run("disallowed origin passed on without CORS headers", func(t *testing.T) {
		for _, o := range []string{"https://app.example.com.evil.com", "https://evilapp.example.com", "null", "http://app.example.com"} {
			resp := send("GET", s.URL+"/v1", "Origin", o)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d", o, resp.StatusCode)
			}
			expectNoCORS(t, resp)
			expectVary(t, resp, "Origin")
		}
	})
	t.Run("no Origin still gets Vary", func(t *testing.T) {
		expectVary(t, send("GET", s.URL+"/v1"), "Origin")
	})
	t.Run("preflight answered 204 and never forwarded", func(t *testing.T) {
		before := up.Count()
		resp := send("OPTIONS", s.URL+"/v1", "Origin", "https://app.example.com",
			"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type,x-request-id")
		if resp.StatusCode != 204 || readBody(resp) != "" {
			t.Fatalf("%d %q", resp.StatusCode, readBody(resp))
		}
		for k, want := range map[string]string{
			"Access-Control-Allow-Origin":      "https://app.example.com",
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Allow-Methods":     "GET, HEAD, POST",
			"Access-Control-Allow-Headers":     defaultAllowHeaders,
			"Access-Control-Max-Age":           "600",
			"Vary":                             varyPreflight,
		} {
			if got := resp.Header.Values(k); len(got) != 1 || got[0] != want {
				t.Errorf("%s: %q, want %q", k, got, want)
			}
		}
		if resp.Header.Get("X-Request-ID") == "" {
			t.Error("preflight answer lacks X-Request-ID")
		}
		if up.Count() != before {
			t.Fatal("the preflight reached the upstream")
		}
	})
	t.Run("refused preflights are 403 without Allow headers and never forwarded", func(t *testing.T) {
		before := up.Count()
		for name, hdr := range map[string][]string{
			"origin": {"Origin", "https://evil.example.com", "Access-Control-Request-Method", "GET"},
			"method": {"Origin", "https://app.example.com", "Access-Control-Request-Method", "DELETE"},
			"header": {"Origin", "https://app.example.com", "Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "x-evil"},
			"bomb":   {"Origin", "https://app.example.com", "Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", strings.Repeat(",", 1<<20)},
		} {
			resp := send("OPTIONS", s.URL+"/v1", hdr...)
			if resp.StatusCode != 403 {
				t.Errorf("%s: %d, want 403", name, resp.StatusCode)
			}
			expectNoCORS(t, resp)
			expectVary(t, resp, varyPreflight)
		}
		if up.Count() != before {
			t.Fatal("a refused preflight reached the upstream")
		}
	})
	t.Run("error responses keep CORS headers for an allowed origin", func(t *testing.T) {
		for _, tc := range []struct {
			url    string
			status int
			body   string
		}{
			{s.URL + "/denied", 401, ""},
			{s.URL + "/limited", 429, ""},
			{errURL + "/denied", 401, "401 from handle_errors"},
		} {
			resp := send("GET", tc.url, "Origin", "https://app.example.com")
			if resp.StatusCode != tc.status || readBody(resp) != tc.body {
				t.Fatalf("%s: %d %q", tc.url, resp.StatusCode, readBody(resp))
			}
			expectAllowed(t, resp, "https://app.example.com")
			expectVary(t, resp, "Origin")
			resp = send("GET", tc.url, "Origin", "https://evil.example.com")
			expectNoCORS(t, resp)
		}
	})
}

// TestCORSEndToEndAllowedOriginsEnvironment is the runbook's example: with
// no origins line, ALLOWED_ORIGINS=https://app.example.com,*,ftp://bad.com
// allows exactly https://app.example.com, with one warning per rejected entry.
func TestCORSEndToEndAllowedOriginsEnvironment(t *testing.T) {
	t.Parallel()
	s := startCaddy(t, `http://127.0.0.1:{PORT} {
	sechard {
		cors
	}
	respond "ok"
}`, caddyOptions{Env: []string{"ALLOWED_ORIGINS=https://app.example.com,*,ftp://bad.com"}})
	for origin, allowed := range map[string]bool{
		"https://app.example.com": true, "*": false, "ftp://bad.com": false, "https://evil.example.com": false,
	} {
		got := s.Get("/", "Origin", origin).Header.Get("Access-Control-Allow-Origin")
		if (got == origin) != allowed || (!allowed && got != "") {
			t.Errorf("Origin %q: Access-Control-Allow-Origin %q", origin, got)
		}
	}
	s.SyncLogs()
	var warned []string
	for _, e := range s.LogEntries() {
		if e["logger"] == "http.handlers.sechard.cors" && e["level"] == "warn" {
			warned = append(warned, fmt.Sprint(e["entry"]))
		}
	}
	// Caddy provisions the handler once at startup.
	if strings.Join(warned, " ") != "* ftp://bad.com" {
		t.Fatalf("warnings for %q, want one for * and one for ftp://bad.com; logs:\n%s", warned, s.Logs())
	}
}

// TestCORSEndToEndConfigErrors: strict with rejected entries and max_age
// above 24h fail `caddy validate` and `caddy run`.
func TestCORSEndToEndConfigErrors(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		cors string
		env  []string
		want []string
	}{
		"strict": {cors: "origins https://app.example.com,*\n\t\t\torigins ftp://bad.com\n\t\t\tstrict",
			want: []string{`origin "*" rejected`, `origin "ftp://bad.com" rejected`}},
		"strict from environment": {cors: "strict", env: []string{"ALLOWED_ORIGINS=https://app.example.com,https://x.com/path,null"},
			want: []string{`origin "https://x.com/path" rejected: a path`, `origin "null" rejected`}},
		"max_age": {cors: "origins https://app.example.com\n\t\t\tmax_age 25h",
			want: []string{"max_age must be between 0 and 24h0m0s", "Caddyfile:"}},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "Caddyfile")
			cfg := fmt.Sprintf("http://127.0.0.1:%d {\n\tsechard {\n\t\tcors {\n\t\t\t%s\n\t\t}\n\t}\n\trespond ok\n}\n", freePort(t), tc.cors)
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := runCaddy(t, tc.env, "validate", "--config", path, "--adapter", "caddyfile")
			if err == nil {
				t.Fatalf("validate succeeded:\n%s", out)
			}
			out = strings.ReplaceAll(out, `\"`, `"`) // the error is inside a JSON log line
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	s := startCaddy(t, `http://127.0.0.1:{PORT} {
	sechard {
		cors {
			origins https://app.example.com,ftp://bad.com
			strict
		}
	}
	respond ok
}`, caddyOptions{ExpectFail: true})
	if code, exited := s.ExitCode(); !exited || code == 0 {
		t.Fatalf("caddy run with a rejected strict origin: exited=%v code=%d", exited, code)
	}
}

// TestCORSUpstreamHeadersDoNotPassThrough: an upstream that sends
// `Access-Control-Allow-Origin: *` or reflects Origin, with credentials,
// grants nothing through sechard: a disallowed origin gets no
// Access-Control-* header at all, an allowed one exactly sechard's.
func TestCORSUpstreamHeadersDoNotPassThrough(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	up.Handler = func(w http.ResponseWriter, r *http.Request) {
		acao := "*"
		if strings.HasPrefix(r.URL.Path, "/reflect") {
			acao = r.Header.Get("Origin")
		}
		w.Header().Set("Access-Control-Allow-Origin", acao)
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		w.Header().Set("Access-Control-Expose-Headers", "X-Secret")
		fmt.Fprint(w, "upstream ok")
	}
	s := startCaddy(t, `http://127.0.0.1:{PORT} {
	sechard {
		cors {
			origins https://app.example.com
			credentials
		}
	}
	reverse_proxy `+up.Addr+`
}`)
	for _, path := range []string{"/star", "/reflect"} {
		for _, origin := range []string{"https://evil.example", "https://app.example.com"} {
			resp := s.Get(path, "Origin", origin)
			var got []string
			for k, v := range resp.Header {
				if strings.HasPrefix(k, "Access-Control-") {
					got = append(got, k+": "+strings.Join(v, " | "))
				}
			}
			if resp.StatusCode != 200 {
				t.Fatalf("%s from %s: status %d", path, origin, resp.StatusCode)
			}
			if origin == "https://evil.example" {
				if len(got) != 0 {
					t.Errorf("%s from disallowed %s: %q, want no Access-Control-* header", path, origin, got)
				}
				continue
			}
			if v := resp.Header.Values("Access-Control-Allow-Origin"); len(v) != 1 || v[0] != origin {
				t.Errorf("%s from allowed %s: Access-Control-Allow-Origin %q, want exactly [%q]", path, origin, v, origin)
			}
			if v := resp.Header.Values("Access-Control-Allow-Credentials"); len(v) != 1 || v[0] != "true" {
				t.Errorf("%s from allowed %s: Access-Control-Allow-Credentials %q", path, origin, v)
			}
			if v := resp.Header.Values("Access-Control-Expose-Headers"); len(v) != 1 || strings.Contains(v[0], "X-Secret") {
				t.Errorf("%s from allowed %s: Access-Control-Expose-Headers %q, want sechard's only", path, origin, v)
			}
		}
	}
}
