package sechard

import (
	"net/http"
	"testing"
)

// TestBareSechardServesThroughRealCaddy: a bare `sechard` in front of
// reverse_proxy, in the real binary.
func TestBareSechardServesThroughRealCaddy(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	s := startCaddy(t, `http://127.0.0.1:{PORT} {
	sechard
	reverse_proxy `+up.Addr+`
}`)
	resp := s.Get("/")
	if resp.StatusCode != 200 || readBody(resp) != "upstream ok" {
		t.Fatalf("got %d %q", resp.StatusCode, readBody(resp))
	}
	if resp.Header.Get("X-Request-ID") == "" {
		t.Fatal("no X-Request-ID on the response")
	}
}

// TestStagesRunInContractOrder checks the order of DESIGN.md through a real
// Caddy with every stage on: a preflight is answered before auth (it carries
// no credentials); a 401 still carries the request ID, security and CORS
// headers; rate limiting runs before auth, so a flood of bad credentials is
// cut off by 429s that never reach the verifier.
func TestStagesRunInContractOrder(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	s := startCaddy(t, `http://127.0.0.1:{PORT} {
	sechard {
		cors {
			origins https://app.example.com
		}
		rate_limit {
			rate 3/1m
		}
		auth {
			api_key ORDER_KEY read
		}
	}
	reverse_proxy `+up.Addr+`
}`, caddyOptions{Env: []string{"ORDER_KEY=order-key-0123456789"}})

	req, _ := http.NewRequest(http.MethodOptions, s.URL+"/preflight", nil)
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "X-API-Key")
	if resp := s.Do(req); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("preflight without credentials: %d, want 204 (CORS answers before auth)", resp.StatusCode)
	}

	resp := s.Get("/data", "Origin", "https://app.example.com", "X-API-Key", "wrong")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad key: %d, want 401", resp.StatusCode)
	}
	requireExactHeaders(t, resp.Header, map[string]string{
		"Access-Control-Allow-Origin": "https://app.example.com",
		"X-Frame-Options":             "DENY",
		"X-Content-Type-Options":      "nosniff",
	})
	if resp.Header.Get("X-Request-ID") == "" || resp.Header.Get("RateLimit") == "" {
		t.Errorf("401 lacks X-Request-ID or RateLimit: %v", resp.Header)
	}

	// Two more bad keys use up the budget of 3; the next ones are 429s.
	var statuses []int
	for i := 0; i < 5; i++ {
		statuses = append(statuses, s.Get("/data", "X-API-Key", "wrong").StatusCode)
	}
	want := []int{401, 401, 429, 429, 429}
	for i := range want {
		if statuses[i] != want[i] {
			t.Fatalf("statuses %v, want %v", statuses, want)
		}
	}
	// The verifier saw exactly the 3 requests that were not rate limited.
	s.SyncLogs()
	denials := 0
	for _, e := range s.LogEntries() {
		if e["logger"] == "http.handlers.sechard.audit" && e["decision"] == "deny" {
			denials++
		}
	}
	if denials != 3 {
		t.Errorf("auth decided %d requests, want 3: rate limiting must run before auth", denials)
	}
	if up.Count() != 0 {
		t.Errorf("upstream saw %d requests, want 0", up.Count())
	}
}
