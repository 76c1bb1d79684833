package sechard

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sechard/sechard/internal/jwttest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// skipWarnings counts the skip warnings per kid.
func skipWarnings(logs *observer.ObservedLogs) map[string]int {
	n := map[string]int{}
	for _, e := range logs.FilterLevelExact(zapcore.WarnLevel).All() {
		if strings.Contains(e.Message, "JWKS key skipped") {
			n[e.ContextMap()["kid"].(string)]++
		}
	}
	return n
}

func TestJWKSURLSkipsUnusableKeys(t *testing.T) {
	good := newRotKeyEC(t, "good")
	bad := jwttest.UnusableJWKs(t)
	set := []string{good.jwk}
	for _, k := range bad {
		set = append(set, k)
	}
	js := startJWKSServer(t, set...)
	core, logs := observer.New(zap.DebugLevel)
	env := authTestEnv(t, time.Now, nil)
	env.logger = zap.New(core)
	v, err := (&JWT{JWKSURL: js.URL, Refresh: 3600e9}).newVerifier(env)
	if err != nil {
		t.Fatalf("one good key, the set must load: %v", err)
	}
	if _, err := v.Verify(good.token(), time.Now()); err != nil {
		t.Fatalf("good key's token: %v", err)
	}
	want := func() {
		t.Helper()
		got := skipWarnings(logs)
		for kid := range bad {
			if got[kid] != 1 {
				t.Errorf("kid %s: %d warnings, want 1 (all: %v)", kid, got[kid], got)
			}
		}
		for _, e := range logs.All() {
			if strings.Contains(e.Message, "JWKS key skipped") && e.LoggerName != "auth" {
				t.Errorf("warning on logger %q, want the auth stage's", e.LoggerName)
			}
		}
	}
	want()
	// The same set again (a refresh): no new warnings.
	if err := v.Remote().Fetch(); err != nil {
		t.Fatal(err)
	}
	want()

	// Only unusable keys: the first fetch fails the load.
	js2 := startJWKSServer(t, bad["bad-x25519"], bad["bad-rsa1024"])
	if _, err := (&JWT{JWKSURL: js2.URL}).newVerifier(authTestEnv(t, time.Now, nil)); err == nil ||
		!strings.Contains(err.Error(), "no usable") {
		t.Fatalf("a set with no usable key: %v", err)
	}
}

func TestJWKSFileSkipsUnusableKeysEndToEnd(t *testing.T) {
	good := newRotKeyEC(t, "good-es256")
	bad := jwttest.UnusableJWKs(t)
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, []byte(`{"keys":[`+good.jwk+`,`+bad["bad-x25519"]+`,`+bad["bad-rsa1024"]+`]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startCaddy(t, `http://127.0.0.1:{PORT} {
	sechard {
		auth {
			jwt {
				jwks_file `+file+`
			}
		}
	}
	respond "ok"
}`)
	if resp := s.Get("/", "Authorization", "Bearer "+good.token()); resp.StatusCode != 200 {
		t.Fatalf("good key's token: %d %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	requireOneSkipWarning(t, s, "bad-x25519", "bad-rsa1024")
}

func TestJWKSURLSkipsUnusableKeysEndToEnd(t *testing.T) {
	good := newRotKeyEC(t, "good-url")
	bad := jwttest.UnusableJWKs(t)
	js := startJWKSServer(t, good.jwk, bad["bad-x25519"], bad["bad-rsa1024"], bad["bad-enc"])
	s := startCaddy(t, jwksSite(js.URL, "refresh 200ms"))
	for i := 0; i < 3; i++ {
		if resp := s.Get("/", "Authorization", "Bearer "+good.token()); resp.StatusCode != 200 {
			t.Fatalf("good key's token: %d %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	// Let a few refreshes of the same set pass: still one warning per kid.
	waitFor(t, 5*time.Second, "refreshes of the same set", func() bool { return js.hits.Load() >= 4 })
	requireOneSkipWarning(t, s, "bad-x25519", "bad-rsa1024", "bad-enc")
}

// requireOneSkipWarning: each unusable kid was warned about exactly once,
// however often its key set was fetched.
func requireOneSkipWarning(t *testing.T, s *caddyServer, kids ...string) {
	t.Helper()
	for _, kid := range kids {
		n := 0
		for _, e := range s.LogEntries() {
			if e["level"] == "warn" && e["logger"] == "http.handlers.sechard.auth" && e["kid"] == kid {
				n++
			}
		}
		if n != 1 {
			t.Errorf("kid %s: %d warnings, want 1; logs:\n%s", kid, n, s.Logs())
		}
	}
}
