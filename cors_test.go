package sechard

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// serveCORS runs the CORS stage of h on r as ServeHTTP does, and reports
// the response and whether the request went on to the next handler.
func serveCORS(h *Handler, r *http.Request, preset http.Header) (resp *httptest.ResponseRecorder, forwarded bool) {
	w := httptest.NewRecorder()
	for k, v := range preset {
		w.Header()[k] = v
	}
	ex := &exchange{w: w, r: r, requestID: "req-1"}
	done, err := h.conclude(ex, h.CORS, h.CORS.decide(ex))
	switch {
	case !done:
		w.WriteHeader(http.StatusOK)
		return w, true
	case err != nil:
		var he caddyhttp.HandlerError
		if !errors.As(err, &he) {
			panic(err)
		}
		w.WriteHeader(he.StatusCode)
	}
	return w, false
}

func testCORSConfigs() map[string]func() *CORS {
	origins := []string{"https://app.example.com", "HTTPS://Admin.Example.COM:443/", apiOrigin, localOrigin, "*", "ftp://bad.com"}
	return map[string]func() *CORS{
		"default": func() *CORS { return &CORS{Origins: origins} },
		"creds":   func() *CORS { return &CORS{Origins: origins, Credentials: true} },
		"report":  func() *CORS { return &CORS{Origins: origins, Mode: modeReport} },
		"custom": func() *CORS {
			return &CORS{Origins: origins, Methods: []string{"put", "DELETE", "PATCH"}, AllowHeaders: []string{},
				ExposeHeaders: []string{}, MaxAge: caddy.Duration(time.Hour)}
		},
	}
}

func TestCORSDecisions(t *testing.T) {
	type hv = map[string]string // expected header values; "" means absent
	preflight := func(origin, method, headers string) http.Header {
		h := http.Header{"Origin": {origin}, "Access-Control-Request-Method": {method}}
		if headers != "" {
			h["Access-Control-Request-Headers"] = []string{headers}
		}
		return h
	}
	allowedActual := func(origin string) hv {
		return hv{"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "",
			"Access-Control-Expose-Headers": defaultExpose, "Vary": "Origin"}
	}
	deniedActual := hv{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Credentials": "",
		"Access-Control-Expose-Headers": "", "Vary": "Origin"}
	allowedPreflight := func(origin string) hv {
		return hv{"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "",
			"Access-Control-Allow-Methods": "GET, HEAD, POST", "Access-Control-Allow-Headers": defaultAllowHeaders,
			"Access-Control-Max-Age": "600", "Access-Control-Expose-Headers": "", "Vary": varyPreflight}
	}
	deniedPreflight := hv{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Credentials": "",
		"Access-Control-Allow-Methods": "", "Access-Control-Allow-Headers": "", "Access-Control-Max-Age": "",
		"Vary": varyPreflight}
	with := func(base hv, kv ...string) hv {
		out := hv{}
		for k, v := range base {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	megabyteOfCommas := strings.Repeat(",", 1<<20)

	for _, tc := range []struct {
		name      string
		cfg       string
		method    string
		header    http.Header
		preset    http.Header // response headers set before the stage runs
		status    int         // 200: went on to the next handler
		want      hv
		wouldDeny bool // report mode logs a would-be refusal
	}{
		// Actual requests: exact matches only.
		{name: "allowed origin GET", method: "GET", header: http.Header{"Origin": {appOrigin}}, status: 200, want: allowedActual(appOrigin)},
		{name: "allowed origin POST", method: "POST", header: http.Header{"Origin": {appOrigin}}, status: 200, want: allowedActual(appOrigin)},
		{name: "allowed origin DELETE is not method-checked", method: "DELETE", header: http.Header{"Origin": {appOrigin}}, status: 200, want: allowedActual(appOrigin)},
		{name: "credentials configured", cfg: "creds", method: "GET", header: http.Header{"Origin": {appOrigin}}, status: 200,
			want: with(allowedActual(appOrigin), "Access-Control-Allow-Credentials", "true")},
		{name: "disallowed origin passes without CORS headers", method: "GET", header: http.Header{"Origin": {"https://evil.example.com"}}, status: 200, want: deniedActual},
		{name: "disallowed origin with credentials configured", cfg: "creds", method: "GET", header: http.Header{"Origin": {"https://evil.example.com"}}, status: 200, want: deniedActual},
		{name: "no Origin still varies on Origin", method: "GET", header: http.Header{}, status: 200, want: deniedActual},
		{name: "Origin null", method: "GET", header: http.Header{"Origin": {"null"}}, status: 200, want: deniedActual},
		{name: "empty Origin", method: "GET", header: http.Header{"Origin": {""}}, status: 200, want: deniedActual},
		{name: "Origin *", method: "GET", header: http.Header{"Origin": {"*"}}, status: 200, want: deniedActual},
		{name: "scheme mismatch", method: "GET", header: http.Header{"Origin": {"http://app.example.com"}}, status: 200, want: deniedActual},
		{name: "port mismatch", method: "GET", header: http.Header{"Origin": {"https://app.example.com:8443"}}, status: 200, want: deniedActual},
		{name: "explicit default port is not what browsers send", method: "GET", header: http.Header{"Origin": {"https://app.example.com:443"}}, status: 200, want: deniedActual},
		{name: "suffix attack", method: "GET", header: http.Header{"Origin": {"https://app.example.com.evil.com"}}, status: 200, want: deniedActual},
		{name: "prefix attack", method: "GET", header: http.Header{"Origin": {"https://evilapp.example.com"}}, status: 200, want: deniedActual},
		{name: "subdomain of allowed origin", method: "GET", header: http.Header{"Origin": {"https://x.app.example.com"}}, status: 200, want: deniedActual},
		{name: "parent domain of allowed origin", method: "GET", header: http.Header{"Origin": {"https://example.com"}}, status: 200, want: deniedActual},
		{name: "allowed origin as a prefix of Origin", method: "GET", header: http.Header{"Origin": {appOrigin + "x"}}, status: 200, want: deniedActual},
		{name: "request Origin in upper case", method: "GET", header: http.Header{"Origin": {"HTTPS://APP.EXAMPLE.COM"}}, status: 200, want: deniedActual},
		{name: "request Origin with trailing slash", method: "GET", header: http.Header{"Origin": {appOrigin + "/"}}, status: 200, want: deniedActual},
		{name: "request Origin with trailing space", method: "GET", header: http.Header{"Origin": {appOrigin + " "}}, status: 200, want: deniedActual},
		{name: "upper-case config entry with default port and slash matches its normal form", method: "GET", header: http.Header{"Origin": {adminOrigin}}, status: 200, want: allowedActual(adminOrigin)},
		{name: "non-default port entry", method: "GET", header: http.Header{"Origin": {apiOrigin}}, status: 200, want: allowedActual(apiOrigin)},
		{name: "non-default port entry without its port", method: "GET", header: http.Header{"Origin": {"https://api.example.com"}}, status: 200, want: deniedActual},
		{name: "http localhost with port", method: "GET", header: http.Header{"Origin": {localOrigin}}, status: 200, want: allowedActual(localOrigin)},
		{name: "localhost other port", method: "GET", header: http.Header{"Origin": {"http://localhost:3001"}}, status: 200, want: deniedActual},
		{name: "rejected config entry ftp is not allowed", method: "GET", header: http.Header{"Origin": {"ftp://bad.com"}}, status: 200, want: deniedActual},
		{name: "two Origin headers", method: "GET", header: http.Header{"Origin": {appOrigin, appOrigin}}, status: 200, want: deniedActual},
		{name: "megabyte Origin", method: "GET", header: http.Header{"Origin": {"https://" + strings.Repeat("a", 1<<20)}}, status: 200, want: deniedActual},
		{name: "existing Vary is kept", method: "GET", header: http.Header{"Origin": {appOrigin}}, preset: http.Header{"Vary": {"Accept-Encoding"}},
			status: 200, want: with(allowedActual(appOrigin), "Vary", "Accept-Encoding|Origin")},
		{name: "existing Vary Origin is not doubled", method: "GET", header: http.Header{}, preset: http.Header{"Vary": {"Origin"}}, status: 200, want: deniedActual},
		{name: "expose_headers empty sends none", cfg: "custom", method: "GET", header: http.Header{"Origin": {appOrigin}}, status: 200,
			want: with(allowedActual(appOrigin), "Access-Control-Expose-Headers", "")},

		// OPTIONS that are not preflights go on.
		{name: "OPTIONS without Access-Control-Request-Method goes on", method: "OPTIONS", header: http.Header{"Origin": {appOrigin}}, status: 200,
			want: with(allowedActual(appOrigin), "Vary", varyPreflight)},
		{name: "OPTIONS with Access-Control-Request-Method but no Origin goes on", method: "OPTIONS", header: http.Header{"Access-Control-Request-Method": {"POST"}}, status: 200,
			want: with(deniedActual, "Vary", varyPreflight)},

		// Preflights: answered here, never forwarded.
		{name: "preflight allowed", method: "OPTIONS", header: preflight(appOrigin, "POST", "authorization,content-type,x-request-id"), status: 204, want: allowedPreflight(appOrigin)},
		{name: "preflight allowed without request headers", method: "OPTIONS", header: preflight(appOrigin, "GET", ""), status: 204, want: allowedPreflight(appOrigin)},
		{name: "preflight header names are case-insensitive", method: "OPTIONS", header: preflight(localOrigin, "POST", "Authorization, X-API-KEY ,\tx-Request-Id"), status: 204, want: allowedPreflight(localOrigin)},
		{name: "preflight with credentials", cfg: "creds", method: "OPTIONS", header: preflight(appOrigin, "HEAD", "x-api-key"), status: 204,
			want: with(allowedPreflight(appOrigin), "Access-Control-Allow-Credentials", "true")},
		{name: "preflight disallowed origin", method: "OPTIONS", header: preflight("https://evil.example.com", "GET", ""), status: 403, want: deniedPreflight},
		{name: "preflight disallowed origin with credentials", cfg: "creds", method: "OPTIONS", header: preflight("https://evil.example.com", "GET", ""), status: 403, want: deniedPreflight},
		{name: "preflight null origin", method: "OPTIONS", header: preflight("null", "GET", ""), status: 403, want: deniedPreflight},
		{name: "preflight suffix attack", method: "OPTIONS", header: preflight("https://app.example.com.evil.com", "POST", "authorization"), status: 403, want: deniedPreflight},
		{name: "preflight prefix attack", method: "OPTIONS", header: preflight("https://evilapp.example.com", "POST", ""), status: 403, want: deniedPreflight},
		{name: "preflight scheme mismatch", method: "OPTIONS", header: preflight("http://app.example.com", "GET", ""), status: 403, want: deniedPreflight},
		{name: "preflight method not allowed", method: "OPTIONS", header: preflight(appOrigin, "DELETE", ""), status: 403, want: deniedPreflight},
		{name: "preflight method compared byte for byte", method: "OPTIONS", header: preflight(appOrigin, "post", ""), status: 403, want: deniedPreflight},
		{name: "preflight empty method", method: "OPTIONS", header: preflight(appOrigin, "", ""), status: 403, want: deniedPreflight},
		{name: "preflight header not allowed", method: "OPTIONS", header: preflight(appOrigin, "POST", "authorization,x-evil"), status: 403, want: deniedPreflight},
		{name: "preflight cookie header not allowed", method: "OPTIONS", header: preflight(appOrigin, "GET", "cookie"), status: 403, want: deniedPreflight},
		{name: "preflight megabyte of commas refused", method: "OPTIONS", header: preflight(appOrigin, "GET", megabyteOfCommas), status: 403, want: deniedPreflight},
		{name: "preflight too many header elements refused", method: "OPTIONS", header: preflight(appOrigin, "GET", strings.Repeat("x-api-key,", 65)), status: 403, want: deniedPreflight},
		{name: "preflight refusal drops Allow headers set earlier", method: "OPTIONS", header: preflight("https://evil.example.com", "GET", ""),
			preset: http.Header{"Access-Control-Allow-Origin": {"https://evil.example.com"}, "Access-Control-Allow-Credentials": {"true"}}, status: 403, want: deniedPreflight},
		{name: "custom methods, normalised", cfg: "custom", method: "OPTIONS", header: preflight(appOrigin, "PUT", ""), status: 204,
			want: with(allowedPreflight(appOrigin), "Access-Control-Allow-Methods", "PUT, DELETE, PATCH", "Access-Control-Allow-Headers", "", "Access-Control-Max-Age", "3600")},
		{name: "custom methods: GET no longer allowed", cfg: "custom", method: "OPTIONS", header: preflight(appOrigin, "GET", ""), status: 403, want: deniedPreflight},
		{name: "empty allow_headers allows no request header", cfg: "custom", method: "OPTIONS", header: preflight(appOrigin, "PATCH", "authorization"), status: 403, want: deniedPreflight},

		// Report mode: never refuses a preflight, never widens the policy.
		{name: "report: allowed preflight", cfg: "report", method: "OPTIONS", header: preflight(appOrigin, "POST", "authorization"), status: 204, want: allowedPreflight(appOrigin)},
		{name: "report: header would be refused, answered 204", cfg: "report", method: "OPTIONS", header: preflight(appOrigin, "POST", "x-evil"), status: 204,
			want: allowedPreflight(appOrigin), wouldDeny: true},
		{name: "report: origin would be refused, 204 without Allow-Origin", cfg: "report", method: "OPTIONS", header: preflight("https://evil.example.com", "POST", ""), status: 204,
			want: with(allowedPreflight(""), "Access-Control-Allow-Origin", ""), wouldDeny: true},
		{name: "report: disallowed simple request passes as in enforce", cfg: "report", method: "GET", header: http.Header{"Origin": {"https://evil.example.com"}}, status: 200, want: deniedActual},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg == "" {
				cfg = "default"
			}
			h, logs := mustProvisionCORS(t, testCORSConfigs()[cfg]())
			r := httptest.NewRequest(tc.method, "http://api.example.com/v1/things", nil)
			r.Header = tc.header
			w, forwarded := serveCORS(h, r, tc.preset)
			if w.Code != tc.status {
				t.Errorf("status %d, want %d", w.Code, tc.status)
			}
			if forwarded != (tc.status == 200) {
				t.Errorf("forwarded to the next handler: %v", forwarded)
			}
			for k, want := range tc.want {
				if got := strings.Join(w.Header()[k], "|"); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
			if w.Code == 403 {
				for k := range w.Header() {
					if strings.HasPrefix(k, "Access-Control-") {
						t.Errorf("refused preflight carries %s", k)
					}
				}
			}
			warned := logs.FilterMessage("would refuse request").FilterField(zap.String("reason", "cors_preflight_denied"))
			if got := warned.Len(); got != map[bool]int{true: 1}[tc.wouldDeny] {
				t.Errorf("%d would-refuse log lines, want wouldDeny=%v; logs: %v", got, tc.wouldDeny, logs.All())
			}
		})
	}
}

func TestCORSPreflightRefusalNamesItsReason(t *testing.T) {
	h, _ := mustProvisionCORS(t, &CORS{Origins: []string{appOrigin}})
	for hdrs, want := range map[[3]string]string{
		{"https://evil.example.com", "GET", ""}:       `origin "https://evil.example.com" is not allowed`,
		{appOrigin, "DELETE", ""}:                     `method "DELETE" is not allowed`,
		{appOrigin, "GET", "authorization,X-Evil"}:    `request header "X-Evil" is not allowed`,
		{appOrigin, "GET", strings.Repeat(",", 5000)}: `Access-Control-Request-Headers is too long or lists too many names`,
	} {
		r := httptest.NewRequest("OPTIONS", "/", nil)
		r.Header = http.Header{"Origin": {hdrs[0]}, "Access-Control-Request-Method": {hdrs[1]}, "Access-Control-Request-Headers": {hdrs[2]}}
		d := h.CORS.decide(&exchange{w: httptest.NewRecorder(), r: r})
		if d.Status != 403 || d.Reason != "cors_preflight_denied" || d.Detail != want || d.Header != nil {
			t.Errorf("%q: got %+v, want 403 cors_preflight_denied %q", hdrs, d, want)
		}
	}
}

func TestCORSOriginsFromEnvironmentRejectEachBadEntry(t *testing.T) {
	t.Setenv("ALLOWED_ORIGINS", "https://app.example.com,*,ftp://bad.com")
	h, logs := mustProvisionCORS(t, &CORS{})
	if len(h.CORS.origins) != 1 {
		t.Fatalf("allowed %v, want exactly https://app.example.com", h.CORS.origins)
	}
	if _, ok := h.CORS.origins[appOrigin]; !ok {
		t.Fatalf("allowed %v", h.CORS.origins)
	}
	warned := logs.FilterMessage("rejected CORS origin entry; the other entries still load")
	if warned.Len() != 2 {
		t.Fatalf("%d warnings, want one per rejected entry: %v", warned.Len(), logs.All())
	}
	for i, entry := range []string{"*", "ftp://bad.com"} {
		e := warned.All()[i]
		if e.Level != zap.WarnLevel || e.ContextMap()["entry"] != entry || e.ContextMap()["source"] != "ALLOWED_ORIGINS" {
			t.Errorf("warning %d: %v %v", i, e.Level, e.ContextMap())
		}
	}
}

func TestCORSOriginsLineOverridesEnvironment(t *testing.T) {
	t.Setenv("ALLOWED_ORIGINS", "https://from-env.example.com")
	h, _ := mustProvisionCORS(t, &CORS{Origins: []string{"https://a.example.com,https://b.example.com"}})
	if len(h.CORS.origins) != 2 {
		t.Fatalf("allowed %v", h.CORS.origins)
	}
	// An empty origins line (an unset {$ALLOWED_ORIGINS}) allows nothing:
	// it does not fall back to the environment.
	h, logs := mustProvisionCORS(t, &CORS{Origins: []string{}})
	if len(h.CORS.origins) != 0 || logs.FilterMessage("CORS allowlist is empty: no origin is allowed").Len() != 1 {
		t.Fatalf("allowed %v; logs %v", h.CORS.origins, logs.All())
	}
}

func TestCORSEmptyAllowlistWarnsAndAllowsNothing(t *testing.T) {
	t.Setenv("ALLOWED_ORIGINS", "")
	for _, c := range []*CORS{{}, {Origins: []string{"*", "null"}}} {
		h, logs := mustProvisionCORS(t, c)
		if e := logs.FilterMessage("CORS allowlist is empty: no origin is allowed").All(); len(e) != 1 || e[0].Level != zap.WarnLevel {
			t.Fatalf("want one warning; logs %v", logs.All())
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Origin", "null")
		if w, _ := serveCORS(h, r, nil); w.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Fatal("an empty allowlist allowed an origin")
		}
	}
}

func TestCORSStrictFailsListingEveryRejectedEntry(t *testing.T) {
	_, logs, err := provisionCORS(t, &CORS{Strict: true,
		Origins: []string{"https://app.example.com", "*", "ftp://bad.com", "https://a.com/path"}})
	if err == nil {
		t.Fatal("strict config with rejected entries loaded")
	}
	for _, want := range []string{`"*"`, `"ftp://bad.com"`, `"https://a.com/path"`, "3 rejected"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), `"https://app.example.com"`) {
		t.Errorf("error names an accepted entry: %v", err)
	}
	_ = logs
	if _, _, err := provisionCORS(t, &CORS{Strict: true, Origins: []string{"HTTPS://App.example.com:443/"}}); err != nil {
		t.Fatalf("strict refused a valid entry: %v", err)
	}
}

func TestCORSConfigErrors(t *testing.T) {
	for name, c := range map[string]*CORS{
		"max_age above 24h":       {Origins: []string{appOrigin}, MaxAge: caddy.Duration(25 * time.Hour)},
		"negative max_age":        {Origins: []string{appOrigin}, MaxAge: caddy.Duration(-time.Second)},
		"wildcard method":         {Origins: []string{appOrigin}, Methods: []string{"*"}},
		"invalid method":          {Origins: []string{appOrigin}, Methods: []string{"GE T"}},
		"wildcard allow_headers":  {Origins: []string{appOrigin}, AllowHeaders: []string{"*"}},
		"invalid allow_headers":   {Origins: []string{appOrigin}, AllowHeaders: []string{"X:Y"}},
		"wildcard expose_headers": {Origins: []string{appOrigin}, ExposeHeaders: []string{"*"}},
		"overlong allow_headers":  {Origins: []string{appOrigin}, AllowHeaders: []string{strings.Repeat("x", 200)}},
	} {
		if _, _, err := provisionCORS(t, c); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	if _, _, err := provisionCORS(t, &CORS{Origins: []string{appOrigin}, MaxAge: caddy.Duration(24 * time.Hour)}); err != nil {
		t.Errorf("max_age 24h: %v", err)
	}
}

func TestCORSCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`cors {
		origins https://a.example.com,https://b.example.com https://c.example.com
		origins "https://d.example.com/,*"
		methods GET PUT
		allow_headers Authorization
		expose_headers
		credentials
		max_age 1h
		strict
		mode report
	}`)
	d.Next()
	var c CORS
	if err := c.unmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := CORS{
		Origins:      []string{"https://a.example.com", "https://b.example.com", "https://c.example.com", "https://d.example.com/", "*"},
		Methods:      []string{"GET", "PUT"},
		AllowHeaders: []string{"Authorization"}, ExposeHeaders: []string{},
		Credentials: true, MaxAge: caddy.Duration(time.Hour), Strict: true, Mode: "report",
	}
	got, _ := json.Marshal(c)
	exp, _ := json.Marshal(want)
	if string(got) != string(exp) {
		t.Fatalf("got  %s\nwant %s", got, exp)
	}
	if !strings.Contains(string(got), `"expose_headers":[]`) {
		t.Fatalf("an empty expose_headers must survive into JSON: %s", got)
	}

	// An origins line without arguments is an empty list, not "absent".
	d = caddyfile.NewTestDispenser("cors {\n origins\n }")
	d.Next()
	c = CORS{}
	if err := c.unmarshalCaddyfile(d); err != nil || c.Origins == nil || len(c.Origins) != 0 {
		t.Fatalf("got %#v, %v", c.Origins, err)
	}

	for input, wantErr := range map[string]string{
		"cors {\n bogus\n}":           `unrecognized cors option "bogus"`,
		"cors {\n max_age 25h\n}":     "max_age must be between 0 and 24h0m0s",
		"cors {\n max_age soon\n}":    "parsing max_age",
		"cors {\n max_age\n}":         "wrong argument count",
		"cors {\n methods\n}":         "wrong argument count",
		"cors {\n credentials yes\n}": "wrong argument count",
		"cors {\n strict yes\n}":      "wrong argument count",
		"cors {\n mode audit\n}":      `cors mode must be enforce or report, got "audit"`,
	} {
		d := caddyfile.NewTestDispenser(input)
		d.Next()
		err := new(CORS).unmarshalCaddyfile(d)
		if err == nil || !strings.HasPrefix(err.Error(), wantErr) || !strings.Contains(err.Error(), "Testfile:2") {
			t.Errorf("%q: got %v, want %q", input, err, wantErr)
		}
	}
}

func TestCORSAdaptFromEnvironmentSubstitution(t *testing.T) {
	t.Setenv("SECHARD_TEST_ORIGINS", "https://app.example.com,https://api.example.com https://x.example.com")
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(`:8080 {
	sechard {
		cors {
			origins {$SECHARD_TEST_ORIGINS}
			max_age 90s
		}
	}
}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"origins":["https://app.example.com","https://api.example.com","https://x.example.com"]`,
		`"max_age":90000000000`,
	} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("adapted config lacks %s:\n%s", want, out)
		}
	}
}

// TestCORSHeaderSlicesAreNeverShared: a later handler appending to or
// editing one response's CORS header values must not change another
// response's (rs/cors #198). Run with -race.
func TestCORSHeaderSlicesAreNeverShared(t *testing.T) {
	h, _ := mustProvisionCORS(t, &CORS{Origins: []string{appOrigin}, Credentials: true})
	serve := func(method string, hdr http.Header) http.Header {
		r := httptest.NewRequest(method, "/", nil)
		r.Header = hdr
		w, _ := serveCORS(h, r, nil)
		return w.Header()
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				var hdr http.Header
				if j%2 == 0 {
					hdr = serve("GET", http.Header{"Origin": {appOrigin}})
				} else {
					hdr = serve("OPTIONS", http.Header{"Origin": {appOrigin}, "Access-Control-Request-Method": {"GET"}})
				}
				for k, v := range hdr {
					if cap(v) != 1 {
						t.Errorf("%s has capacity %d: appends would write into shared memory", k, cap(v))
						return
					}
					v[0] = "mutated" // a misbehaving downstream handler
					hdr[k] = append(v, "appended")
				}
			}
		}()
	}
	wg.Wait()
	hdr := serve("GET", http.Header{"Origin": {appOrigin}})
	if hdr.Get("Access-Control-Allow-Credentials") != "true" || hdr.Get("Access-Control-Expose-Headers") != defaultExpose {
		t.Fatalf("configured values were changed by a downstream handler: %v", hdr)
	}
}

func TestCORSNilStageIsOff(t *testing.T) {
	var c *CORS
	r := httptest.NewRequest("OPTIONS", "/", nil)
	r.Header.Set("Origin", appOrigin)
	r.Header.Set("Access-Control-Request-Method", "GET")
	w := httptest.NewRecorder()
	if d := c.decide(&exchange{w: w, r: r}); d.Status != 0 || len(w.Header()) != 0 || c.mode() != "" {
		t.Fatalf("nil CORS decided %+v, headers %v", d, w.Header())
	}
	if err := c.provision(nil); err != nil {
		t.Fatal(err)
	}
}

// TestCORSNextHandlersAccessControlHeadersAreReplaced: sechard is the only
// source of Access-Control-* response headers. Whatever the next handler
// (an upstream, through reverse_proxy) sets, adds or edits, the response
// carries sechard's values only, and none at all for a disallowed origin.
func TestCORSNextHandlersAccessControlHeadersAreReplaced(t *testing.T) {
	h := provisionedHandler(t, &Handler{CORS: &CORS{Origins: []string{appOrigin}, Credentials: true}})
	upstreams := map[string]func(w http.ResponseWriter, r *http.Request){
		"star": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Add("Access-Control-Allow-Origin", "*")
			w.Header().Add("Access-Control-Allow-Credentials", "true")
		},
		"reflect": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Add("Access-Control-Allow-Origin", r.Header.Get("Origin"))
			w.Header().Add("Access-Control-Allow-Credentials", "true")
			w.Header().Add("Access-Control-Expose-Headers", "X-Secret")
			w.Header()["access-control-allow-methods"] = []string{"DELETE"} // not canonical
			w.Header().Set("Access-Control-Custom", "x")
		},
		"edit in place": func(w http.ResponseWriter, r *http.Request) {
			if v := w.Header()["Access-Control-Allow-Origin"]; len(v) == 1 {
				v[0] = "*"
			}
			w.Header().Set("Access-Control-Allow-Credentials", "TRUE")
		},
	}
	for name, up := range upstreams {
		for _, origin := range []string{appOrigin, "https://evil.example"} {
			t.Run(name+" "+origin, func(t *testing.T) {
				r, _ := newTestRequest("Origin", origin)
				w := serveTest(t, h, r, func(w http.ResponseWriter, r *http.Request) error {
					up(w, r)
					w.WriteHeader(http.StatusOK)
					return nil
				})
				var got []string
				for k, v := range w.Header() {
					if strings.HasPrefix(strings.ToLower(k), "access-control-") {
						got = append(got, k+": "+strings.Join(v, " | "))
					}
				}
				if origin == appOrigin {
					requireExactHeaders(t, w.Header(), map[string]string{
						"Access-Control-Allow-Origin":      appOrigin,
						"Access-Control-Allow-Credentials": "true",
						"Access-Control-Expose-Headers":    defaultExpose,
					})
					if len(got) != 3 {
						t.Errorf("Access-Control-* headers %q, want sechard's three", got)
					}
				} else if len(got) != 0 {
					t.Errorf("disallowed origin got Access-Control-* headers %q, want none", got)
				}
			})
		}
	}
}

// TestCORSOffLeavesAccessControlHeadersAlone: without a cors block, sechard
// is not the CORS authority and passes the upstream's headers through.
func TestCORSOffLeavesAccessControlHeadersAlone(t *testing.T) {
	h := provisionedHandler(t, new(Handler))
	r, _ := newTestRequest("Origin", appOrigin)
	w := serveTest(t, h, r, func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.WriteHeader(http.StatusOK)
		return nil
	})
	if got := w.Header().Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != "*" {
		t.Fatalf("Access-Control-Allow-Origin %q, want the upstream's", got)
	}
}
