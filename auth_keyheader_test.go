package sechard

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// api_key_header must not name a header sechard sets or reads for
// something else, or the key is echoed (request ID) or confused with
// other credentials.
func TestAPIKeyHeaderConflictsAtParse(t *testing.T) {
	for _, h := range []string{"Authorization", "authorization", "X-Auth-Subject", "x-auth-anything"} {
		d := caddyfile.NewTestDispenser("auth {\n\tapi_key K\n\tapi_key_header " + h + "\n}")
		d.Next()
		err := new(Auth).unmarshalCaddyfile(d)
		if err == nil || !strings.Contains(err.Error(), "Testfile:3") || !strings.Contains(err.Error(), "api_key_header") {
			t.Errorf("%s: want an api_key_header error at Testfile:3, got %v", h, err)
		}
	}
}

func TestAPIKeyHeaderConflictsAtProvision(t *testing.T) {
	secrets := map[string]string{"K": "key-k"}
	for _, tc := range []struct {
		keyHeader, requestID string
		bad                  bool
	}{
		{"X-Request-ID", "", true}, // the default request-ID header
		{"x-request-id", "X-Request-Id", true},
		{"X-Trace", "X-Trace", true},
		{"X-Request-ID", "X-Trace", false},
		{"X-Auth-Token", "", true},
		{"Authorization", "", true},
		{"X-API-Key", "", false},
	} {
		env := authTestEnv(t, time.Now, secrets)
		env.requestIDHeader = tc.requestID
		a := &Auth{APIKeys: []APIKey{{Secret: "K"}}, APIKeyHeader: tc.keyHeader}
		err := a.provision(env)
		if tc.bad != (err != nil) || (err != nil && !strings.Contains(err.Error(), "api_key_header")) {
			t.Errorf("api_key_header %s, request ID %q: got %v", tc.keyHeader, tc.requestID, err)
		}
	}
}

func TestAPIKeyHeaderRequestIDFailsTheLoad(t *testing.T) {
	t.Parallel()
	s := startCaddy(t, `http://127.0.0.1:{PORT} {
	sechard {
		request_id {
			header X-Trace
		}
		auth {
			api_key K
			api_key_header X-Trace
		}
	}
	respond "ok"
}`, caddyOptions{ExpectFail: true, Env: []string{"K=key-value-k"}})
	if code, _ := s.ExitCode(); code == 0 || !strings.Contains(s.Logs(), "api_key_header") {
		t.Fatalf("exit %d; logs:\n%s", code, s.Logs())
	}
}
