package sechard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func boolPtr(b bool) *bool { return &b }

func TestCaddyfileParsesRequestIDAndSecurityHeaders(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		want  Handler
	}{
		{
			name:  "bare sechard",
			input: `sechard`,
			want:  Handler{},
		},
		{
			name: "empty blocks",
			input: `sechard {
				request_id
				security_headers
			}`,
			want: Handler{RequestID: &RequestID{}, SecurityHeaders: &SecurityHeaders{}},
		},
		{
			name: "every request_id option",
			input: `sechard {
				request_id {
					header X-Correlation-ID
					max_length 32
					generate uuid7
					accept_inbound off
				}
			}`,
			want: Handler{RequestID: &RequestID{Header: "X-Correlation-ID", MaxLength: 32, Generate: "uuid7", AcceptInbound: boolPtr(false)}},
		},
		{
			name: "accept_inbound on",
			input: `sechard {
				request_id {
					accept_inbound on
				}
			}`,
			want: Handler{RequestID: &RequestID{AcceptInbound: boolPtr(true)}},
		},
		{
			name: "every security_headers option",
			input: `sechard {
				security_headers {
					content_security_policy "default-src 'self'"
					content_security_policy_report_only "default-src 'none'; report-uri /csp"
					frame_options SAMEORIGIN
					referrer_policy no-referrer
					hsts "max-age=63072000; includeSubDomains; preload"
					set Permissions-Policy "camera=(), microphone=()"
					set X-Robots-Tag noindex
					remove X-AspNet-Version X-Runtime
					remove Via
				}
			}`,
			want: Handler{SecurityHeaders: &SecurityHeaders{
				ContentSecurityPolicy:           "default-src 'self'",
				ContentSecurityPolicyReportOnly: "default-src 'none'; report-uri /csp",
				FrameOptions:                    "SAMEORIGIN",
				ReferrerPolicy:                  "no-referrer",
				HSTS:                            "max-age=63072000; includeSubDomains; preload",
				Set:                             map[string]string{"Permissions-Policy": "camera=(), microphone=()", "X-Robots-Tag": "noindex"},
				Remove:                          []string{"X-AspNet-Version", "X-Runtime", "Via"},
			}},
		},
		{
			name: "off in the block",
			input: `sechard {
				security_headers {
					off
				}
			}`,
			want: Handler{SecurityHeaders: &SecurityHeaders{Off: true}},
		},
		{
			name: "off on one line",
			input: `sechard {
				security_headers off
			}`,
			want: Handler{SecurityHeaders: &SecurityHeaders{Off: true}},
		},
		{
			name: "hsts off",
			input: `sechard {
				security_headers {
					hsts off
				}
			}`,
			want: Handler{SecurityHeaders: &SecurityHeaders{HSTS: "off"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Handler
			if err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input)); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(tc.want)
				t.Fatalf("got  %s\nwant %s", g, w)
			}
		})
	}
}

// TestCaddyfileErrorsCarryLineNumbers: every parse error names the file and
// the line of the offending token.
func TestCaddyfileErrorsCarryLineNumbers(t *testing.T) {
	for _, tc := range []struct {
		name, input, want string
		line              int
	}{
		{"unknown sechard subdirective", "sechard {\n\trequest_id\n\tbogus\n}", "unrecognized sechard subdirective \"bogus\"", 3},
		{"argument to sechard", "sechard on", "wrong argument count", 1},
		{"unknown request_id option", "sechard {\n\trequest_id {\n\t\tlength 5\n\t}\n}", "unrecognized request_id option \"length\"", 3},
		{"max_length 0", "sechard {\n\trequest_id {\n\t\tmax_length 0\n\t}\n}", "request_id max_length must be from 1 to 64, got 0", 3},
		{"max_length 65", "sechard {\n\trequest_id {\n\n\t\tmax_length 65\n\t}\n}", "request_id max_length must be from 1 to 64, got 65", 4},
		{"max_length not a number", "sechard {\n\trequest_id {\n\t\tmax_length lots\n\t}\n}", "max_length must be an integer", 3},
		{"generate uuid1", "sechard {\n\trequest_id {\n\t\tgenerate uuid1\n\t}\n}", "generate must be uuid4 or uuid7", 3},
		{"accept_inbound maybe", "sechard {\n\trequest_id {\n\t\taccept_inbound maybe\n\t}\n}", "accept_inbound must be on or off", 3},
		{"header without name", "sechard {\n\trequest_id {\n\t\theader\n\t}\n}", "wrong argument count", 3},
		{"header with space", "sechard {\n\trequest_id {\n\t\theader \"X Id\"\n\t}\n}", "invalid header field name", 3},
		{"two max_length args", "sechard {\n\trequest_id {\n\t\tmax_length 8 9\n\t}\n}", "wrong argument count", 3},
		{"unknown security_headers option", "sechard {\n\tsecurity_headers {\n\t\tx_frame DENY\n\t}\n}", "unrecognized security_headers option \"x_frame\"", 3},
		{"frame_options ALLOW-FROM", "sechard {\n\tsecurity_headers {\n\t\tframe_options ALLOW-FROM\n\t}\n}", "frame_options must be DENY, SAMEORIGIN or off", 3},
		{"referrer_policy typo", "sechard {\n\tsecurity_headers {\n\t\treferrer_policy strict-origin-when-crossorigin\n\t}\n}", "unknown policy", 3},
		{"set with one argument", "sechard {\n\tsecurity_headers {\n\t\tset X-A\n\t}\n}", "set takes a header field and one value", 3},
		{"set twice", "sechard {\n\tsecurity_headers {\n\t\tset X-A 1\n\t\tset X-A 2\n\t}\n}", "header set twice", 4},
		{"remove nothing", "sechard {\n\tsecurity_headers {\n\t\tremove\n\t}\n}", "wrong argument count", 3},
		{"off with argument", "sechard {\n\tsecurity_headers {\n\t\toff now\n\t}\n}", "wrong argument count", 3},
		{"security_headers on", "sechard {\n\tsecurity_headers on\n}", "wrong argument count", 2},
		{"csp without value", "sechard {\n\tsecurity_headers {\n\t\tcontent_security_policy\n\t}\n}", "wrong argument count", 3},
		{"audit_allows unknown", "sechard {\n\tauth {\n\t\taudit_allows maybe\n\t}\n}", `audit_allows must be log, access_log or off, got "maybe"`, 3},
		{"paths without action", "sechard {\n\n\tpaths\n}", "paths takes one argument", 3},
		{"paths unknown action", "sechard {\n\tpaths clean\n}", `paths must be reject, normalize or allow, got "clean"`, 2},
		{"paths two actions", "sechard {\n\tpaths reject allow\n}", "paths takes one argument", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if at := fmt.Sprintf("Testfile:%d", tc.line); !strings.Contains(err.Error(), at) {
				t.Errorf("error %q does not name %s", err, at)
			}
		})
	}
}

// TestCaddyfileAdaptsToJSON: Caddyfile in, the sechard handler's JSON out,
// exactly.
func TestCaddyfileAdaptsToJSON(t *testing.T) {
	for _, tc := range []struct {
		name, block, want string
	}{
		{"bare", `sechard`, `{"handler":"sechard"}`},
		{"empty blocks", "sechard {\n\trequest_id\n\tsecurity_headers\n}", `{"handler":"sechard","request_id":{},"security_headers":{}}`},
		{
			"everything",
			`sechard {
	request_id {
		header X-Correlation-ID
		max_length 32
		generate uuid7
		accept_inbound off
	}
	security_headers {
		content_security_policy "default-src 'self'"
		content_security_policy_report_only "default-src 'none'"
		frame_options SAMEORIGIN
		referrer_policy no-referrer
		hsts off
		set Permissions-Policy "camera=()"
		remove X-AspNet-Version
	}
}`,
			`{"handler":"sechard",` +
				`"request_id":{"accept_inbound":false,"generate":"uuid7","header":"X-Correlation-ID","max_length":32},` +
				`"security_headers":{"content_security_policy":"default-src 'self'","content_security_policy_report_only":"default-src 'none'",` +
				`"frame_options":"SAMEORIGIN","hsts":"off","referrer_policy":"no-referrer","remove":["X-AspNet-Version"],"set":{"Permissions-Policy":"camera=()"}}}`,
		},
		{"off", "sechard {\n\tsecurity_headers off\n}", `{"handler":"sechard","security_headers":{"off":true}}`},
		{"env substitution", "sechard {\n\trequest_id {\n\t\theader {$SECHARD_TEST_ID_HEADER}\n\t}\n}", `{"handler":"sechard","request_id":{"header":"X-Trace-ID"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SECHARD_TEST_ID_HEADER", "X-Trace-ID")
			out, err := adaptCaddyfile(t, ":8080 {\n"+tc.block+"\nrespond ok\n}\n")
			if err != nil {
				t.Fatal(err)
			}
			got := sechardHandlers(t, out)
			if len(got) != 1 {
				t.Fatalf("found %d sechard handlers in %s", len(got), out)
			}
			if canon(t, got[0]) != canon(t, tc.want) {
				t.Fatalf("adapted to\n%s\nwant\n%s", canon(t, got[0]), canon(t, tc.want))
			}
		})
	}
}

// canon re-encodes JSON with sorted keys.
func canon(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%v: %s", err, s)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// TestCaddyfileSechardOrderedFirst: sechard needs no `order` option and runs
// before the site's other handlers, wherever it appears in the file.
func TestCaddyfileSechardOrderedFirst(t *testing.T) {
	out, err := adaptCaddyfile(t, ":8080 {\n\theader X-A b\n\trespond ok\n\tsechard\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []map[string]any `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, srv := range v.Apps.HTTP.Servers {
		for _, r := range srv.Routes {
			for _, h := range r.Handle {
				order = append(order, fmt.Sprint(h["handler"]))
			}
		}
	}
	if len(order) == 0 || order[0] != "sechard" {
		t.Fatalf("handler order %v, want sechard first", order)
	}
}

// TestCaddyfileUnknownSubdirectiveNamesCaddyfileLine: through the real
// adapter, the error names the Caddyfile and the line.
func TestCaddyfileUnknownSubdirectiveNamesCaddyfileLine(t *testing.T) {
	_, err := adaptCaddyfile(t, ":8080 {\n\tsechard {\n\t\trequest_id\n\t\tfirewall on\n\t}\n\trespond ok\n}\n")
	if err == nil || !strings.Contains(err.Error(), "Caddyfile:4") || !strings.Contains(err.Error(), `"firewall"`) {
		t.Fatalf("err = %v, want it to name Caddyfile:4 and \"firewall\"", err)
	}
}

// TestCaddyfileValidateRejectsBadConfigWithBinary: `caddy validate` runs the
// provision checks (a JSON max_length of 65 is refused).
func TestCaddyfileValidateRejectsBadJSON(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := `{"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[{"handler":"sechard","request_id":{"max_length":65}}]}]}}}}}`
	path := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCaddy(t, nil, "validate", "--config", path)
	if err == nil || !strings.Contains(out, "max_length must be from 1 to 64") {
		t.Fatalf("validate: err=%v\n%s", err, out)
	}
}

// TestCaddyfileExampleAdapts keeps Caddyfile.example from rotting: it adapts
// with the caddyfile adapter the README's run command picks by file name,
// without warnings, and contains the protections it promises.
func TestCaddyfileExampleAdapts(t *testing.T) {
	t.Parallel()
	env, _, _ := exampleCredentials(t)
	out, err := runCaddy(t, env, "adapt", "--config", "Caddyfile.example", "--validate")
	if err != nil {
		t.Fatalf("adapt: %v\n%s", err, out)
	}
	// adapt prints the JSON on stdout and log lines on stderr; no line may
	// be a warning (an unformatted Caddyfile is one).
	var config string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `"apps"`) {
			config = line
		} else if strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) {
			t.Errorf("adapt: %s", line)
		}
	}
	if config == "" {
		t.Fatalf("no JSON in adapt output:\n%s", out)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, []byte(config), "", " "); err != nil {
		t.Fatalf("%v\n%s", err, config)
	}
	cfg := buf.String()
	for _, want := range []string{`"handler": "sechard"`, `"request\u003eheaders\u003eX-Api-Key": {`, `"filter": "delete"`, `"handler": "reverse_proxy"`,
		`"secrets": {`, `"cors": {`, `"rate_limit": {`, `"auth": {`} {
		if !strings.Contains(cfg, want) {
			t.Errorf("adapted example lacks %s", want)
		}
	}
}

// TestCaddyfileExampleServes runs Caddyfile.example with the real binary,
// its ports moved to free ones, and checks what the README's "Try it"
// section promises.
func TestCaddyfileExampleServes(t *testing.T) {
	src, err := os.ReadFile("Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	edge, up, admin := freePort(t), freePort(t), freePort(t)
	cfg := strings.NewReplacer(
		":8080", fmt.Sprintf(":%d", edge),
		":8081", fmt.Sprintf(":%d", up),
		":2019", fmt.Sprintf(":%d", admin),
	).Replace(string(src))
	if cfg == string(src) || regexp.MustCompile(`:80(80|81)\b|:2019\b`).MatchString(cfg) {
		t.Fatal("Caddyfile.example no longer uses localhost:8080, :8081 and :2019; update this test and the README")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile.example")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env, key, keyFile := exampleCredentials(t)
	s := startCaddyFile(t, path, fmt.Sprintf("127.0.0.1:%d", admin), env...)
	s.URL = fmt.Sprintf("http://localhost:%d", edge)

	// Request IDs and security headers, on a public path.
	resp := s.Get("/healthz")
	id := resp.Header.Get("X-Request-ID")
	if resp.StatusCode != 200 || id == "" || readBody(resp) != "ok" {
		t.Fatalf("GET /healthz = %d, X-Request-ID %q, body %s", resp.StatusCode, id, readBody(resp))
	}
	requireExactHeaders(t, resp.Header, map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"})
	if v := resp.Header.Values("Server"); len(v) != 0 {
		t.Errorf("Server header %q not stripped", v)
	}
	resp = s.Get("/healthz", "X-Request-ID", "try-it-1")
	if got := resp.Header.Get("X-Request-ID"); got != "try-it-1" {
		t.Errorf("valid inbound ID not kept: %q", got)
	}

	// Auth: 401 without credentials (with a JSON body from handle_errors),
	// the API key and a JWT minted by the CLI both work, scopes apply.
	resp = s.Get("/nl-query/q")
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="sechard"` ||
		!strings.Contains(readBody(resp), `"request_id": "`+resp.Header.Get("X-Request-ID")+`"`) {
		t.Errorf("no credentials: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), readBody(resp))
	}
	// The token service: the demo key is traded for a token, which works.
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/oauth2/token", strings.NewReader("grant_type=client_credentials&scope=nl-query:read"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("BI_API_KEY", key)
	var issued struct {
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
	}
	if resp := s.Do(req); resp.StatusCode != 200 || json.Unmarshal([]byte(readBody(resp)), &issued) != nil || issued.Scope != "nl-query:read" {
		t.Fatalf("token exchange: %d %+v", resp.StatusCode, issued)
	}
	resp = s.Get("/nl-query/q", "Authorization", "Bearer "+issued.AccessToken)
	if body := readBody(resp); resp.StatusCode != 200 || !strings.Contains(body, `"auth_method": "jwt"`) || !strings.Contains(body, `"subject": "BI_API_KEY"`) {
		t.Errorf("issued token: %d %s", resp.StatusCode, body)
	}

	// paths: an encoded walk past `public /healthz` is refused, not served.
	if resp, body := rawGet(t, s, "/nl-query/..%2Fhealthz"); resp.StatusCode != 400 || !strings.Contains(body, `"error": "Bad Request"`) {
		t.Errorf("ambiguous path: %d %s", resp.StatusCode, body)
	}
	resp = s.Get("/nl-query/q", "X-API-Key", key)
	if body := readBody(resp); resp.StatusCode != 200 || !strings.Contains(body, `"auth_method": "api_key"`) {
		t.Errorf("API key: %d %s", resp.StatusCode, body)
	}
	token, err := runCaddy(t, nil, "sechard", "token", "--key", keyFile, "--sub", "service-bi", "--scopes", "nl-query:read", "--ttl", "5m")
	if err != nil {
		t.Fatalf("token: %v %s", err, token)
	}
	bearer := "Bearer " + strings.TrimSpace(token)
	resp = s.Get("/nl-query/q", "Authorization", bearer)
	if body := readBody(resp); resp.StatusCode != 200 || !strings.Contains(body, `"subject": "service-bi", "auth_method": "jwt"`) {
		t.Errorf("JWT: %d %s", resp.StatusCode, body)
	}
	if resp = s.Get("/schema/tables", "Authorization", bearer); resp.StatusCode != 403 {
		t.Errorf("JWT without schema:read on /schema/: %d", resp.StatusCode)
	}

	// CORS preflight for the configured origin.
	req, _ = http.NewRequest(http.MethodOptions, s.URL+"/nl-query/q", nil)
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Access-Control-Request-Method", "POST")
	if resp = s.Do(req); resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("preflight: %d %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}

	// The /nl-query/* route's burst of 5 runs out (earlier requests spent
	// some of it): a 429 with Retry-After follows.
	limited := false
	for i := 0; i < 8 && !limited; i++ {
		resp = s.Get("/nl-query/q", "X-API-Key", key)
		limited = resp.StatusCode == 429 && resp.Header.Get("Retry-After") != ""
	}
	if !limited {
		t.Error("no 429 after 8 quick requests to /nl-query/*")
	}
}

// exampleCredentials makes what examples/run.sh makes: a secrets dir with
// BI_API_KEY and an ES256 key pair from `caddy sechard keygen`. It returns
// the environment for Caddyfile.example, the API key and the private key file.
func exampleCredentials(t *testing.T) (env []string, apiKey, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	apiKey = "example-key-0123456789abcdef"
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(secrets, "BI_API_KEY"), []byte(apiKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runCaddy(t, nil, "sechard", "keygen", "--alg", "ES256", "--out", filepath.Join(secrets, "TOKEN_SIGNING_KEY")); err != nil {
		t.Fatalf("keygen: %v %s", err, out)
	}
	keyFile = filepath.Join(dir, "auth.pem")
	if out, err := runCaddy(t, nil, "sechard", "keygen", "--alg", "ES256", "--out", keyFile); err != nil {
		t.Fatalf("keygen: %v %s", err, out)
	}
	return []string{"SECRETS_DIR=" + secrets, "JWT_PUBLIC_KEY=" + filepath.Join(dir, "auth.pub.pem")}, apiKey, keyFile
}

// startCaddyFile runs the built binary on a config file as it is (no harness
// globals), with the admin API at adminAddr, and waits until it is ready.
func startCaddyFile(t *testing.T, path, adminAddr string, env ...string) *caddyServer {
	t.Helper()
	dir := t.TempDir()
	s := &caddyServer{t: t, dir: dir, AdminAddr: adminAddr, logs: &logBuffer{}, exited: make(chan struct{}), client: newTestClient()}
	s.cmd = exec.Command(caddyBinary(t), "run", "--config", path)
	s.cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	s.cmd.Env = append(s.cmd.Env, env...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(s.Stop)
	s.waitReady()
	return s
}
