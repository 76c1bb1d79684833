package sechard

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

type listedRevocations struct {
	Instances   int `json:"instances"`
	Revocations []struct {
		JTI    string `json:"jti"`
		Exp    int64  `json:"exp"`
		Sub    string `json:"sub"`
		Before *int64 `json:"before"`
		Source string `json:"source"`
	} `json:"revocations"`
}

func adminList(t *testing.T, addr string) listedRevocations {
	t.Helper()
	status, body := adminDo(t, addr, http.MethodGet, "")
	if status != http.StatusOK {
		t.Fatalf("GET: %d %s", status, body)
	}
	var l listedRevocations
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		t.Fatalf("GET body %q: %v", body, err)
	}
	return l
}

func TestAdminRevocationsWithoutActiveListIsAConflict(t *testing.T) {
	addr := startInProcessAdmin(t)
	// Revocation lists other tests left registered would answer; set them
	// aside for this test.
	revocationRegistry.Lock()
	saved := revocationRegistry.m
	revocationRegistry.m = make(map[*Revocation]struct{})
	revocationRegistry.Unlock()
	t.Cleanup(func() {
		revocationRegistry.Lock()
		revocationRegistry.m = saved
		revocationRegistry.Unlock()
	})
	status, body := adminDo(t, addr, http.MethodPost, fmt.Sprintf(`{"jti": "x", "exp": %d}`, time.Now().Unix()+60))
	if status != http.StatusConflict || !strings.Contains(body, "no revocation list is configured") {
		t.Fatalf("got %d %s, want 409 naming the missing config", status, body)
	}
	if l := adminList(t, addr); l.Instances != 0 || len(l.Revocations) != 0 {
		t.Fatalf("GET with nothing active: %+v", l)
	}
}

func TestAdminRevocationsAddLocallyWithoutRedis(t *testing.T) {
	addr := startInProcessAdmin(t)
	env, _ := newTestEnv(t)
	a := provisionRevocation(t, env, &Revocation{})
	b := provisionRevocation(t, env, &Revocation{})
	now := time.Now()
	exp := now.Add(5 * time.Minute).Unix()

	status, body := adminDo(t, addr, http.MethodPost, fmt.Sprintf(`{"jti": "admin-local-jti", "exp": %d}`, exp))
	if status != http.StatusOK {
		t.Fatalf("POST jti: %d %s", status, body)
	}
	if !strings.Contains(body, `"stored":["memory"]`) {
		t.Errorf("POST response %s does not say it was stored in memory", body)
	}
	// Applied at once, by every active list in the process.
	for name, rv := range map[string]*Revocation{"a": a, "b": b} {
		if !rv.revoked("admin-local-jti", "someone", now) {
			t.Errorf("list %s does not honour the posted jti", name)
		}
	}

	before := now.Unix()
	status, body = adminDo(t, addr, http.MethodPost, fmt.Sprintf(`{"sub": "admin-local-client", "before": %d}`, before))
	if status != http.StatusOK {
		t.Fatalf("POST sub: %d %s", status, body)
	}
	if !a.revoked("fresh", "admin-local-client", now.Add(-time.Minute)) {
		t.Error("a token of the subject issued before `before` is not revoked")
	}
	if a.revoked("fresh", "admin-local-client", now.Add(time.Minute)) {
		t.Error("a token of the subject issued after `before` is revoked")
	}

	// A list provisioned later (a config reload) keeps what was posted.
	c := provisionRevocation(t, env, &Revocation{})
	if !c.revoked("admin-local-jti", "", now) {
		t.Error("a reloaded list forgot the posted revocation")
	}

	l := adminList(t, addr)
	if l.Instances != 3 {
		t.Errorf("GET instances = %d, want 3", l.Instances)
	}
	var sawJTI, sawSub bool
	for _, e := range l.Revocations {
		if e.JTI == "admin-local-jti" && e.Exp == exp && e.Source == "admin" {
			sawJTI = true
		}
		if e.Sub == "admin-local-client" && e.Before != nil && *e.Before == before && e.Source == "admin" {
			sawSub = true
		}
	}
	if !sawJTI || !sawSub {
		t.Fatalf("GET does not list both revocations once each: %+v", l)
	}
}

func TestAdminRevocationsWriteToRedis(t *testing.T) {
	r := startRedis(t)
	addr := startInProcessAdmin(t)
	env, _ := newTestEnv(t)
	// A long cache_ttl: the posting node must not wait for its poll.
	rv := provisionRevocation(t, env, &Revocation{Redis: r.URL, CacheTTL: caddy.Duration(time.Hour)})
	now := time.Now()
	exp := now.Add(5 * time.Minute).Unix()
	status, body := adminDo(t, addr, http.MethodPost, fmt.Sprintf(`{"jti": "admin-redis-jti", "exp": %d}`, exp))
	if status != http.StatusOK {
		t.Fatalf("POST: %d %s", status, body)
	}
	if !strings.Contains(body, fmt.Sprintf(`"stored":[%q]`, r.URL)) {
		t.Errorf("POST response %s does not name the Redis", body)
	}
	if !rv.revoked("admin-redis-jti", "", now) {
		t.Fatal("the posting node does not honour the revocation at once")
	}
	c := redisClient(t, r.Addr)
	ttl, err := c.TTL(t.Context(), "sechard:{revoked}:jti:admin-redis-jti").Result()
	if err != nil || ttl <= 0 {
		t.Fatalf("redis key TTL %v, %v; want > 0", ttl, err)
	}
	l := adminList(t, addr)
	if len(l.Revocations) != 1 || l.Revocations[0].Source != "redis" || l.Revocations[0].Exp != exp {
		t.Fatalf("GET: %+v", l)
	}
}

func TestAdminRevocationsRejectsBadRequests(t *testing.T) {
	addr := startInProcessAdmin(t)
	env, _ := newTestEnv(t)
	provisionRevocation(t, env, &Revocation{})
	now := time.Now().Unix()
	for _, tc := range []struct {
		name, method, body string
		status             int
		says               string
	}{
		{"empty body", http.MethodPost, ``, 400, "decoding request"},
		{"not json", http.MethodPost, `jti=x`, 400, "decoding request"},
		{"nothing to revoke", http.MethodPost, `{}`, 400, "want {"},
		{"unknown field", http.MethodPost, `{"jti": "x", "exp": 9999999999, "token": "y"}`, 400, "unknown field"},
		{"jti and sub", http.MethodPost, `{"jti": "x", "exp": 9999999999, "sub": "y"}`, 400, "not both"},
		{"jti without exp", http.MethodPost, `{"jti": "x"}`, 400, "exp"},
		{"jti with before", http.MethodPost, `{"jti": "x", "exp": 9999999999, "before": 1}`, 400, "before goes with sub"},
		{"sub with exp", http.MethodPost, `{"sub": "x", "exp": 9999999999}`, 400, "exp goes with jti"},
		{"long expired jti", http.MethodPost, fmt.Sprintf(`{"jti": "x", "exp": %d}`, now-3600), 400, "already expired"},
		{"long past subject time", http.MethodPost, fmt.Sprintf(`{"sub": "x", "before": %d}`, now-3*86400), 400, "long past"},
		{"oversized jti", http.MethodPost, fmt.Sprintf(`{"jti": %q, "exp": 9999999999}`, strings.Repeat("a", 2000)), 400, "longer than"},
		{"wrong method", http.MethodPut, `{}`, 405, "method not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := adminDo(t, addr, tc.method, tc.body)
			if status != tc.status || !strings.Contains(body, tc.says) {
				t.Fatalf("got %d %s, want %d containing %q", status, body, tc.status, tc.says)
			}
		})
	}
}
