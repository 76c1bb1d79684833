package sechard

import (
	"crypto/ecdsa"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sechard/sechard/internal/jwttest"
)

func TestAuthJWKSRotation(t *testing.T) {
	a, b, c := newRotKeyEC(t, "key-a"), newRotKeyEd(t, "key-b"), newRotKeyEC(t, "key-c")
	js := startJWKSServer(t, a.jwk)
	s := startCaddy(t, jwksSite(js.URL, "refresh 1h"))
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
	tokA := a.token()

	if resp := s.Get("/", bearer(tokA)...); resp.StatusCode != 200 {
		t.Fatalf("key-a token: %d %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if n := js.hits.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times at startup, want 1", n)
	}

	// Rotation: key-b appears, key-a is removed. A key-b token triggers one
	// refetch and passes.
	js.set(b.jwk)
	if resp := s.Get("/", bearer(b.token())...); resp.StatusCode != 200 {
		t.Fatalf("key-b token after rotation: %d %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if n := js.hits.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2 (one unknown-kid refetch)", n)
	}
	// The removed key's token is refused at once, though it was cached.
	if resp := s.Get("/", bearer(tokA)...); resp.StatusCode != 401 ||
		resp.Header.Get("WWW-Authenticate") != wwwAuth401("unknown key") {
		t.Fatalf("key-a token after removal: %d %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// Within 30 s of the last refetch, unknown kids cause no more fetches.
	js.set(b.jwk, c.jwk)
	for range 5 {
		if resp := s.Get("/", bearer(c.token())...); resp.StatusCode != 401 {
			t.Fatalf("key-c before the refetch window: %d", resp.StatusCode)
		}
	}
	if n := js.hits.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want still 2 (rate-limited)", n)
	}
}

func TestAuthJWKSBackgroundRefreshAndReloadStopsIt(t *testing.T) {
	a, b := newRotKeyEC(t, "key-a"), newRotKeyEd(t, "key-b")
	js := startJWKSServer(t, a.jwk)
	s := startCaddy(t, jwksSite(js.URL, "refresh 200ms"))
	js.set(a.jwk, b.jwk)
	waitFor(t, 5*time.Second, "background refreshes", func() bool { return js.hits.Load() >= 3 })
	before := js.hits.Load()
	if resp := s.Get("/", "Authorization", "Bearer "+b.token()); resp.StatusCode != 200 {
		t.Fatalf("key-b after background refresh: %d", resp.StatusCode)
	}
	if js.hits.Load() > before+1 {
		t.Fatal("a request triggered a fetch for a key the refresher had already brought")
	}

	// A failed refresh keeps the last good key set.
	js.mu.Lock()
	js.body = "not json"
	js.mu.Unlock()
	n := js.hits.Load()
	waitFor(t, 5*time.Second, "refreshes after a failed one", func() bool { return js.hits.Load() >= n+2 })
	if resp := s.Get("/", "Authorization", "Bearer "+a.token()); resp.StatusCode != 200 {
		t.Fatalf("last good key set lost after a failed refresh: %d", resp.StatusCode)
	}

	// Reload to a config without jwks_url: the old refresher stops.
	pub := t.TempDir() + "/k.pem"
	writePublicPEM(t, pub, &a.priv.(*ecdsa.PrivateKey).PublicKey)
	if err := s.Reload(`http://127.0.0.1:{PORT} {
	sechard {
		auth {
			jwt {
				public_key ` + pub + `
			}
		}
	}
	respond "ok"
}`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	n = js.hits.Load()
	time.Sleep(700 * time.Millisecond)
	if got := js.hits.Load(); got != n {
		t.Fatalf("JWKS still fetched after reload: %d -> %d", n, got)
	}
}

func TestAuthJWKSUnknownKIDWaitIsBounded(t *testing.T) {
	a, b := newRotKeyEC(t, "key-a"), newRotKeyEC(t, "key-b")
	js := startJWKSServer(t, a.jwk)
	s := startCaddy(t, jwksSite(js.URL, "refresh 1h"))
	js.mu.Lock()
	js.delay = 3500 * time.Millisecond
	js.body = `{"keys":[` + a.jwk + "," + b.jwk + `]}`
	js.mu.Unlock()
	start := time.Now()
	resp := s.Get("/", "Authorization", "Bearer "+b.token())
	took := time.Since(start)
	if resp.StatusCode != 401 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if took < 1900*time.Millisecond || took > 2800*time.Millisecond {
		t.Fatalf("request waited %v for the refetch, want about 2s", took)
	}
	// The slow fetch still completes in the background and installs key-b.
	waitFor(t, 4*time.Second, "key-b accepted once the slow fetch finished", func() bool {
		resp := s.Get("/", "Authorization", "Bearer "+b.token())
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func TestAuthJWKSFirstFetchFailureFailsTheLoad(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String() + "/jwks.json"
	l.Close()
	s := startCaddy(t, jwksSite(dead, ""), caddyOptions{ExpectFail: true})
	if code, _ := s.ExitCode(); code == 0 || !strings.Contains(s.Logs(), "first fetch failed") {
		t.Fatalf("exit %d; logs:\n%s", code, s.Logs())
	}

	// With another key configured, the load goes on (and says why).
	ti := newTestIssuer(t)
	s = startCaddy(t, jwksSite(dead, "public_key "+ti.pemPath("es256")+" es256"))
	s.WaitLog(func(e map[string]any) bool {
		return e["logger"] == "http.handlers.sechard.auth" && strings.Contains(e["msg"].(string), "first fetch failed")
	}, 3*time.Second)
	if resp := s.Get("/", "Authorization", "Bearer "+ti.sign("es256", jwttest.Claims(time.Now(), nil), nil)); resp.StatusCode != 200 {
		t.Fatalf("static key refused: %d", resp.StatusCode)
	}
}
