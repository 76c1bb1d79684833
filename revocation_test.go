package sechard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sechard/sechard/internal/jwttest"
	"github.com/sechard/sechard/internal/revocation"
)

func countLogs(logs *observer.ObservedLogs, prefix string) int {
	n := 0
	for _, e := range logs.All() {
		if strings.HasPrefix(e.Message, prefix) {
			n++
		}
	}
	return n
}

func TestRevocationCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`revocation {
		file /etc/sechard/revoked.txt
		refresh 2s
		redis redis://127.0.0.1:6379/0
		cache_ttl 1s
	}`)
	d.Next()
	var rv Revocation
	if err := rv.unmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if rv.File != "/etc/sechard/revoked.txt" || rv.Refresh != caddy.Duration(2*time.Second) ||
		rv.Redis != "redis://127.0.0.1:6379/0" || rv.CacheTTL != caddy.Duration(time.Second) {
		t.Fatalf("got file %q refresh %v redis %q cache_ttl %v", rv.File, rv.Refresh, rv.Redis, rv.CacheTTL)
	}

	for name, input := range map[string]string{
		"unknown option":      "revocation {\n bogus x\n}",
		"missing file":        "revocation {\n file\n}",
		"extra argument":      "revocation {\n file a b\n}",
		"bad duration":        "revocation {\n refresh soon\n}",
		"zero cache_ttl":      "revocation {\n cache_ttl 0s\n}",
		"negative refresh":    "revocation {\n refresh -1s\n}",
		"missing redis url":   "revocation {\n redis\n}",
		"cache_ttl two value": "revocation {\n cache_ttl 1s 2s\n}",
	} {
		t.Run(name, func(t *testing.T) {
			d := caddyfile.NewTestDispenser(input)
			d.Next()
			err := new(Revocation).unmarshalCaddyfile(d)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), "Testfile:") {
				t.Errorf("error %q does not name the file and line", err)
			}
		})
	}
}

func TestRevocationDefaults(t *testing.T) {
	env, _ := newTestEnv(t)
	rv := provisionRevocation(t, env, &Revocation{})
	if time.Duration(rv.Refresh) != 10*time.Second || time.Duration(rv.CacheTTL) != 5*time.Second {
		t.Fatalf("defaults: refresh %v, cache_ttl %v", time.Duration(rv.Refresh), time.Duration(rv.CacheTTL))
	}
	var nilRV *Revocation
	if nilRV.revoked("x", "y", time.Now()) {
		t.Fatal("a nil Revocation revoked something")
	}
	if err := nilRV.provision(env); err != nil {
		t.Fatal(err)
	}
	if err := nilRV.cleanup(); err != nil {
		t.Fatal(err)
	}
}

func TestRevocationFileRevokesByJTIAndSubject(t *testing.T) {
	file := filepath.Join(t.TempDir(), "revoked.txt")
	writeTestFile(t, file, `# leaked on 2026-11-02
jti-leaked
  jti-indented   # trailing comment
odd#jti
sub:compromised-client
sub:rotated-client 1000
sub:
sub:bad-time yesterday
two words
sub:x 1 2
sub: leading-space
`)
	env, logs := newTestEnv(t)
	rv := provisionRevocation(t, env, &Revocation{File: file})

	at := func(sec int64) time.Time { return time.Unix(sec, 0) }
	for _, tc := range []struct {
		name     string
		jti, sub string
		iat      time.Time
		want     bool
	}{
		{"listed jti", "jti-leaked", "anyone", at(5000), true},
		{"indented jti with trailing comment", "jti-indented", "anyone", at(5000), true},
		{"# inside a word is part of the jti", "odd#jti", "anyone", at(5000), true},
		{"comment is not a jti", "leaked", "anyone", at(5000), false},
		{"unlisted jti", "jti-fine", "anyone", at(5000), false},
		{"subject revoked without time: any token", "jti-fine", "compromised-client", at(1 << 40), true},
		{"subject revoked before 1000: iat 999", "jti-fine", "rotated-client", at(999), true},
		{"subject revoked before 1000: iat 1000 is not before", "jti-fine", "rotated-client", at(1000), false},
		{"subject revoked before 1000: iat 1001", "jti-fine", "rotated-client", at(1001), false},
		{"a word that is not a time is part of the subject", "jti-fine", "bad-time yesterday", at(1 << 40), true},
		{"the subject is all of it", "jti-fine", "bad-time", at(1), false},
		{"the last all-digit field is the time", "jti-fine", "x 1", at(1), true},
		{"the last all-digit field is the time: iat 2", "jti-fine", "x 1", at(2), false},
		{"malformed line ignored", "jti-fine", "leading-space", at(1), false},
		{"empty jti and subject", "", "", at(1), false},
		{"subject name is not a jti", "compromised-client", "other", at(1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := rv.revoked(tc.jti, tc.sub, tc.iat); got != tc.want {
				t.Fatalf("revoked(%q, %q, %d) = %v, want %v", tc.jti, tc.sub, tc.iat.Unix(), got, tc.want)
			}
		})
	}
	if n := countLogs(logs, "ignoring malformed revocation line"); n != 3 {
		t.Errorf("%d malformed-line warnings, want 3: %v", n, logs.All())
	}
	var lines []int64
	for _, e := range logs.FilterMessage("ignoring malformed revocation line").All() {
		lines = append(lines, e.ContextMap()["line"].(int64))
	}
	if fmt.Sprint(lines) != "[7 9 11]" {
		t.Errorf("malformed lines reported: %v, want [7 9 11]", lines)
	}
}

func TestRevocationFileMissingAtLoadIsAConfigError(t *testing.T) {
	env, _ := newTestEnv(t)
	err := (&Revocation{File: filepath.Join(t.TempDir(), "absent.txt")}).provision(env)
	if err == nil || !strings.Contains(err.Error(), "loading revocation file") {
		t.Fatalf("got %v, want a loading error", err)
	}
}

func TestRevocationFileEditsPickedUpWithinRefresh(t *testing.T) {
	const refresh = 100 * time.Millisecond
	// Generous for a loaded CI machine with -race; the point is that it is
	// the refresh period, not an unbounded or much longer wait.
	const slack = 400 * time.Millisecond
	dir := t.TempDir()
	file := filepath.Join(dir, "revoked.txt")
	writeTestFile(t, file, "first\n")
	env, logs := newTestEnv(t)
	rv := provisionRevocation(t, env, &Revocation{File: file, Refresh: caddy.Duration(refresh)})
	if !rv.revoked("first", "", time.Now()) {
		t.Fatal("first not revoked at load")
	}

	// An edit in place.
	writeTestFile(t, file, "first\nsecond\n")
	took := waitFor(t, refresh+slack, "in-place edit", func() bool { return rv.revoked("second", "", time.Now()) })
	t.Logf("in-place edit seen after %v", took)

	// An atomic replace (write elsewhere, rename), as editors and Kubernetes do.
	tmp := filepath.Join(dir, "revoked.txt.new")
	writeTestFile(t, tmp, "third\n")
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	took = waitFor(t, refresh+slack, "atomic replace", func() bool {
		return rv.revoked("third", "", time.Now()) && !rv.revoked("first", "", time.Now())
	})
	t.Logf("atomic replace seen after %v", took)

	// The file vanishes: the last good list keeps applying, logged once.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * refresh)
	if !rv.revoked("third", "", time.Now()) {
		t.Fatal("the last good list was dropped when the file vanished")
	}
	if n := countLogs(logs, "revocation file unreadable"); n != 1 {
		t.Fatalf("%d 'unreadable' log lines after 5 refreshes, want exactly 1", n)
	}

	// It comes back: read again, and that is logged once.
	writeTestFile(t, file, "fourth\n")
	waitFor(t, refresh+slack, "file back", func() bool { return rv.revoked("fourth", "", time.Now()) })
	if rv.revoked("third", "", time.Now()) {
		t.Fatal("third still revoked after the file came back without it")
	}
	time.Sleep(2 * refresh)
	if n := countLogs(logs, "revocation file readable again"); n != 1 {
		t.Fatalf("%d 'readable again' log lines, want 1", n)
	}
}

func TestRevocationCleanupStopsTheRefresher(t *testing.T) {
	file := filepath.Join(t.TempDir(), "revoked.txt")
	writeTestFile(t, file, "a\n")
	env, logs := newTestEnv(t)
	rv := &Revocation{File: file, Refresh: caddy.Duration(20 * time.Millisecond)}
	if err := rv.provision(env); err != nil {
		t.Fatal(err)
	}
	if err := rv.cleanup(); err != nil { // returns only once the goroutine has ended
		t.Fatal(err)
	}
	before := len(logs.All())
	writeTestFile(t, file, "a\nb\n")
	time.Sleep(100 * time.Millisecond)
	if rv.revoked("b", "", time.Now()) || len(logs.All()) != before {
		t.Fatal("the file was re-read after cleanup")
	}
	for _, r := range activeRevocations() {
		if r == rv {
			t.Fatal("still registered after cleanup")
		}
	}
}

func TestRevocationRedisSeenByTwoInstancesWithinCacheTTL(t *testing.T) {
	r := startRedis(t)
	const cacheTTL = 200 * time.Millisecond
	const slack = 300 * time.Millisecond
	env, _ := newTestEnv(t)
	a := provisionRevocation(t, env, &Revocation{Redis: r.URL, CacheTTL: caddy.Duration(cacheTTL)})
	b := provisionRevocation(t, env, &Revocation{Redis: r.URL, CacheTTL: caddy.Duration(cacheTTL)})

	now := time.Now()
	jti, err := revocation.Request{JTI: "fleet-jti", Exp: now.Add(5 * time.Minute).Unix()}.Entry(now, defaultTokenBounds)
	if err != nil {
		t.Fatal(err)
	}
	before := now.Unix()
	sub, err := revocation.Request{Sub: "fleet-client", Before: &before}.Entry(now, defaultTokenBounds)
	if err != nil {
		t.Fatal(err)
	}
	if a.revoked("fleet-jti", "", now) || b.revoked("fleet-jti", "", now) {
		t.Fatal("revoked before it was written")
	}
	ctx := context.Background()
	if err := revocation.AddRedis(ctx, a.client, jti); err != nil {
		t.Fatal(err)
	}
	if err := revocation.AddRedis(ctx, a.client, sub); err != nil {
		t.Fatal(err)
	}
	// Neither instance is told: each must see it from its own poll.
	for name, rv := range map[string]*Revocation{"a": a, "b": b} {
		took := waitFor(t, cacheTTL+slack, "instance "+name, func() bool {
			return rv.revoked("fleet-jti", "x", now) && rv.revoked("other", "fleet-client", now.Add(-time.Second))
		})
		t.Logf("instance %s saw the revocations after %v", name, took)
		if rv.revoked("other", "fleet-client", now.Add(time.Second)) {
			t.Errorf("instance %s: a token issued after `before` is revoked", name)
		}
	}

	// A later, stronger subject revocation wins; an earlier one does not
	// weaken it.
	later := before + 100
	e, _ := revocation.Request{Sub: "fleet-client", Before: &later}.Entry(now, defaultTokenBounds)
	if err := revocation.AddRedis(ctx, a.client, e); err != nil {
		t.Fatal(err)
	}
	earlier := before - 100
	e, _ = revocation.Request{Sub: "fleet-client", Before: &earlier}.Entry(now, defaultTokenBounds)
	if err := revocation.AddRedis(ctx, a.client, e); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cacheTTL+slack, "stronger subject revocation", func() bool {
		return b.revoked("other", "fleet-client", time.Unix(before+50, 0))
	})
	got, _ := redisClient(t, r.Addr).Get(ctx, "sechard:{revoked}:sub:fleet-client").Result()
	if got != fmt.Sprint(later) {
		t.Fatalf("subject key holds %q, want the latest time %d", got, later)
	}
}

func TestRevocationRedisKeysExpireByThemselves(t *testing.T) {
	r := startRedis(t)
	env, _ := newTestEnv(t)
	rv := provisionRevocation(t, env, &Revocation{Redis: r.URL})
	c := redisClient(t, r.Addr)
	ctx := context.Background()
	now := time.Now()

	grace := ceilSeconds(int64(defaultTokenBounds.Leeway))
	life := ceilSeconds(int64(defaultTokenBounds.MaxTTL + defaultTokenBounds.Leeway))
	// Entries whose tokens die within two seconds...
	shortJTI, err := revocation.Request{JTI: "short-lived", Exp: now.Unix() + 2 - grace}.Entry(now, defaultTokenBounds)
	if err != nil {
		t.Fatal(err)
	}
	shortBefore := now.Unix() + 2 - life
	shortSub, err := revocation.Request{Sub: "short-client", Before: &shortBefore}.Entry(now, defaultTokenBounds)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []revocation.Entry{shortJTI, shortSub} {
		if err := revocation.AddRedis(ctx, rv.client, e); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 {
		t.Fatalf("keys %v, want the jti key, the subject key and the index", keys)
	}
	for _, k := range keys {
		ttl, err := c.TTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 || ttl > 3*time.Second {
			t.Errorf("key %s has TTL %v, want 0 < TTL <= 3s", k, ttl)
		}
	}

	// ...and a long one, whose expiry must follow the token's exp.
	exp := now.Add(5 * time.Minute).Unix()
	long, _ := revocation.Request{JTI: "long-lived", Exp: exp}.Entry(now, defaultTokenBounds)
	if err := revocation.AddRedis(ctx, rv.client, long); err != nil {
		t.Fatal(err)
	}
	at, err := c.ExpireTime(ctx, "sechard:{revoked}:jti:long-lived").Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Duration(exp+grace) * time.Second; at != want {
		t.Errorf("long-lived key expires at %v, want exp + grace = %v", at, want)
	}
	idxAt, _ := c.ExpireTime(ctx, "sechard:{revoked}:index").Result()
	if idxAt != at {
		t.Errorf("index expires at %v, want its latest entry's expiry %v", idxAt, at)
	}

	// Without anyone deleting anything, the short entries leave Redis.
	waitFor(t, 5*time.Second, "short-lived keys expired", func() bool {
		n, _ := c.Exists(ctx, "sechard:{revoked}:jti:short-lived", "sechard:{revoked}:sub:short-client").Result()
		return n == 0
	})
	if n, _ := c.Exists(ctx, "sechard:{revoked}:jti:long-lived").Result(); n != 1 {
		t.Fatal("the long-lived key left too")
	}
}

func TestRevocationRedisOutageKeepsLastListAndLogsOnce(t *testing.T) {
	r := startRedis(t)
	const cacheTTL = 100 * time.Millisecond
	env, logs := newTestEnv(t)
	rv := provisionRevocation(t, env, &Revocation{Redis: r.URL, CacheTTL: caddy.Duration(cacheTTL)})
	now := time.Now()
	e, _ := revocation.Request{JTI: "outage-jti", Exp: now.Add(time.Minute).Unix()}.Entry(now, defaultTokenBounds)
	if err := revocation.AddRedis(context.Background(), rv.client, e); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "seen", func() bool { return rv.revoked("outage-jti", "", now) })

	r.Stop()
	waitFor(t, 2*time.Second, "outage logged", func() bool { return countLogs(logs, "revocation redis unreachable") > 0 })
	time.Sleep(5 * cacheTTL)
	if !rv.revoked("outage-jti", "", now) {
		t.Fatal("the last known list was dropped during the outage")
	}
	if n := countLogs(logs, "revocation redis unreachable"); n != 1 {
		t.Fatalf("%d outage log lines after several polls, want exactly 1", n)
	}

	// A config reload during the outage starts from the last known list.
	env2, _ := newTestEnv(t)
	reloaded := provisionRevocation(t, env2, &Revocation{Redis: r.URL, CacheTTL: caddy.Duration(cacheTTL)})
	if !reloaded.revoked("outage-jti", "", now) {
		t.Fatal("a reload during the outage forgot the last known list")
	}

	r.Start() // a fresh, empty Redis
	waitFor(t, 2*time.Second, "recovery logged", func() bool { return countLogs(logs, "revocation redis reachable again") == 1 })
	if err := revocation.AddRedis(context.Background(), rv.client, e); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "seen after recovery", func() bool { return rv.revoked("outage-jti", "", now) })
	if n := countLogs(logs, "revocation redis unreachable"); n != 1 {
		t.Fatalf("%d outage log lines, want exactly 1", n)
	}
}

func TestRevocationRedisBadURLIsAConfigError(t *testing.T) {
	env, _ := newTestEnv(t)
	if err := (&Revocation{Redis: "http://nope"}).provision(env); err == nil {
		t.Fatal("no error for a non-redis URL")
	}
}

// BenchmarkRevokedCacheHit measures the request-path check against a list of
// 10,000 jtis and 1,000 subjects, answered from the local snapshot.
func BenchmarkRevokedCacheHit(b *testing.B) {
	env, _ := newTestEnv(b)
	rv := provisionRevocation(b, env, &Revocation{})
	rv.mu.Lock()
	for i := range 10000 {
		rv.fileList = append(rv.fileList, revocation.Entry{JTI: fmt.Sprintf("jti-%022d", i), Source: "file"})
	}
	for i := range 1000 {
		before := int64(1_000_000)
		rv.fileList = append(rv.fileList, revocation.Entry{Sub: fmt.Sprintf("client-%d", i), Before: &before, Source: "file"})
	}
	rv.rebuildLocked()
	rv.mu.Unlock()
	iat := time.Unix(2_000_000, 0)
	hit, miss := fmt.Sprintf("jti-%022d", 4242), "Xq2xY0n4bWm3o0c9f7a1Zw"
	if !rv.revoked(hit, "client-7", iat) || rv.revoked(miss, "client-7", iat) {
		b.Fatal("benchmark data wrong")
	}
	b.Run("revoked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !rv.revoked(hit, "client-7", iat) {
				b.Fatal("not revoked")
			}
		}
	})
	b.Run("not_revoked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if rv.revoked(miss, "client-7", iat) {
				b.Fatal("revoked")
			}
		}
	})
}

func revocationSite(pub, revocationBlock string) string {
	return fmt.Sprintf(`http://127.0.0.1:{PORT} {
	sechard {
		auth {
			phase jwt_only
			jwt {
				public_key %s
			}
			revocation {
%s
			}
		}
	}
	respond "hello {http.auth.user.id}"
}`, pub, revocationBlock)
}

func TestRevocationEndToEndNextRequestIsRefused(t *testing.T) {
	priv, pub, _ := keygen(t, "ES256")
	file := filepath.Join(t.TempDir(), "revoked.txt")
	writeTestFile(t, file, "# revoked tokens\n")
	site := revocationSite(pub, fmt.Sprintf("\t\t\t\tfile %s\n\t\t\t\trefresh 100ms", file))
	s := startCaddy(t, site)

	// Through the admin API (the CLI): the next request is refused.
	tok, _ := mintToken(t, priv, "service-bi")
	requireStatus(t, s, tok, http.StatusOK)
	if out, err := runCaddy(t, nil, "sechard", "revoke", "--address", s.AdminAddr, "--token", tok); err != nil {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	requireStatus(t, s, tok, http.StatusUnauthorized)
	other, _ := mintToken(t, priv, "service-bi")
	requireStatus(t, s, other, http.StatusOK)

	// Through the file: refused within refresh.
	fileTok, fileJTI := mintToken(t, priv, "service-etl")
	requireStatus(t, s, fileTok, http.StatusOK)
	writeTestFile(t, file, "# revoked tokens\n"+fileJTI+"\n")
	waitFor(t, time.Second, "file revocation honoured", func() bool {
		return s.Get("/data", "Authorization", "Bearer "+fileTok).StatusCode == http.StatusUnauthorized
	})

	// By subject: every token it holds now is refused, later ones are not.
	if out, err := runCaddy(t, nil, "sechard", "revoke", "--address", s.AdminAddr, "--sub", "service-bi"); err != nil {
		t.Fatalf("revoke --sub: %v\n%s", err, out)
	}
	requireStatus(t, s, other, http.StatusUnauthorized)
	time.Sleep(1100 * time.Millisecond) // iat has whole seconds
	fresh, _ := mintToken(t, priv, "service-bi")
	requireStatus(t, s, fresh, http.StatusOK)
}

func TestRevocationEndToEndFleetViaRedisWithinCacheTTL(t *testing.T) {
	r := startRedis(t)
	priv, pub, _ := keygen(t, "EdDSA")
	const cacheTTL = 300 * time.Millisecond
	site := revocationSite(pub, fmt.Sprintf("\t\t\t\tredis %s\n\t\t\t\tcache_ttl 300ms", r.URL))
	a := startCaddy(t, site)
	b := startCaddy(t, site)

	tok, _ := mintToken(t, priv, "service-bi")
	requireStatus(t, a, tok, http.StatusOK)
	requireStatus(t, b, tok, http.StatusOK)
	if out, err := runCaddy(t, nil, "sechard", "revoke", "--address", a.AdminAddr, "--token", tok); err != nil {
		t.Fatalf("revoke on a: %v\n%s", err, out)
	}
	requireStatus(t, a, tok, http.StatusUnauthorized) // the node posted to: at once
	took := waitFor(t, cacheTTL+700*time.Millisecond, "revocation reaches b", func() bool {
		return b.Get("/data", "Authorization", "Bearer "+tok).StatusCode == http.StatusUnauthorized
	})
	t.Logf("server b refused the token %v after the revocation", took)
}

func TestRevocationLookupsRaceFreeDuringUpdates(t *testing.T) {
	env, _ := newTestEnv(t)
	rv := provisionRevocation(t, env, &Revocation{})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				rv.revoked("race-jti-7", "race-sub", time.Now())
			}
		}
	}()
	now := time.Now()
	for i := range 50 {
		e, err := revocation.Request{JTI: fmt.Sprintf("race-jti-%d", i), Exp: now.Unix() + 60}.Entry(now, defaultTokenBounds)
		if err != nil {
			t.Fatal(err)
		}
		localRevocations.Add(e, now.Unix())
		rv.refreshNow(context.Background())
	}
	close(stop)
	<-done
	if !rv.revoked("race-jti-49", "", now) {
		t.Fatal("last update not visible")
	}
}

// lifetimeAuth provisions an Auth trusting the es256 test key with the given
// max_ttl and leeway, with rv as its revocation list and a clock the test
// moves.
func lifetimeAuth(t *testing.T, ti *testIssuer, clock *time.Time, maxTTL, leeway time.Duration, rv *Revocation) *Auth {
	t.Helper()
	l := caddy.Duration(leeway)
	a := &Auth{
		JWT: &JWT{PublicKeys: []PublicKey{{File: ti.pemPath("es256"), KID: "es256"}},
			MaxTTL: caddy.Duration(maxTTL), Leeway: &l},
		Revocation: rv,
	}
	if err := a.provision(authTestEnv(t, func() time.Time { return *clock }, nil)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.cleanup() })
	return a
}

// tokenStatus is the auth decision's status for a bearer token (0: accepted).
func tokenStatus(a *Auth, token string) int {
	ex := newAuthExchange("/x")
	ex.r.Header.Set("Authorization", "Bearer "+token)
	return a.decide(ex).Status
}

// A revocation outlives every token it covers: max_ttl + leeway for a
// subject, exp + leeway for a jti, whatever max_ttl and leeway are.
func TestRevocationLifetimesFollowMaxTTLAndLeeway(t *testing.T) {
	const maxTTL, leeway = 48 * time.Hour, 10 * time.Minute
	ti := newTestIssuer(t)
	t0 := time.Now().Truncate(time.Second)
	subToken := func(sub string) string {
		return ti.sign("es256", jwttest.Claims(t0, map[string]any{"sub": sub, "exp": t0.Add(maxTTL).Unix(),
			"jti": "jti-" + sub}), nil)
	}
	// Expired 6 minutes ago, still accepted within the 10-minute leeway.
	lateExp := t0.Add(-6 * time.Minute)
	lateToken := func(jti string) string {
		return ti.sign("es256", jwttest.Claims(lateExp.Add(-time.Minute), map[string]any{"sub": "late-" + jti,
			"exp": lateExp.Unix(), "jti": jti}), nil)
	}

	t.Run("file", func(t *testing.T) {
		clock := t0
		file := filepath.Join(t.TempDir(), "revoked.txt")
		writeTestFile(t, file, fmt.Sprintf("sub:file-client %d\nfile-late-jti\n", t0.Unix()+1))
		a := lifetimeAuth(t, ti, &clock, maxTTL, leeway, &Revocation{File: file})
		tok, late := subToken("file-client"), lateToken("file-late-jti")
		clock = t0.Add(25 * time.Hour)
		a.Revocation.refreshNow(context.Background())
		if s := tokenStatus(a, tok); s != http.StatusUnauthorized {
			t.Errorf("25h after a file subject revocation, a 48h token gets %d, want 401", s)
		}
		clock = t0.Add(3 * time.Minute)
		a.Revocation.refreshNow(context.Background())
		if s := tokenStatus(a, late); s != http.StatusUnauthorized {
			t.Errorf("a jti revoked in the file, its token inside leeway, gets %d, want 401", s)
		}
	})

	t.Run("admin API", func(t *testing.T) {
		addr := startInProcessAdmin(t)
		clock := t0
		a := lifetimeAuth(t, ti, &clock, maxTTL, leeway, &Revocation{})
		tok, late := subToken("admin-client"), lateToken("admin-late-jti")
		if s := tokenStatus(a, tok); s != 0 {
			t.Fatalf("token refused before any revocation: %d", s)
		}
		if status, body := adminDo(t, addr, http.MethodPost, `{"sub": "admin-client"}`); status != http.StatusOK {
			t.Fatalf("POST sub: %d %s", status, body)
		}
		if status, body := adminDo(t, addr, http.MethodPost,
			fmt.Sprintf(`{"jti": "admin-late-jti", "exp": %d}`, lateExp.Unix())); status != http.StatusOK {
			t.Fatalf("POST jti of a token still accepted within leeway: %d %s", status, body)
		}
		clock = t0.Add(3 * time.Minute) // exp + 9m: still inside leeway
		a.Revocation.refreshNow(context.Background())
		if s := tokenStatus(a, late); s != http.StatusUnauthorized {
			t.Errorf("jti revoked through the admin API, token inside leeway: %d, want 401", s)
		}
		clock = t0.Add(25 * time.Hour)
		a.Revocation.refreshNow(context.Background())
		if s := tokenStatus(a, tok); s != http.StatusUnauthorized {
			t.Errorf("25h after an admin subject revocation, a 48h token gets %d, want 401", s)
		}
	})

	t.Run("redis", func(t *testing.T) {
		r := startRedis(t)
		addr := startInProcessAdmin(t)
		clock := t0
		a := lifetimeAuth(t, ti, &clock, maxTTL, leeway, &Revocation{Redis: r.URL, CacheTTL: caddy.Duration(time.Hour)})
		tok, late := subToken("redis-client"), lateToken("redis-late-jti")
		if status, body := adminDo(t, addr, http.MethodPost, `{"sub": "redis-client"}`); status != http.StatusOK {
			t.Fatalf("POST sub: %d %s", status, body)
		}
		if status, body := adminDo(t, addr, http.MethodPost,
			fmt.Sprintf(`{"jti": "redis-late-jti", "exp": %d}`, lateExp.Unix())); status != http.StatusOK {
			t.Fatalf("POST jti of a token still accepted within leeway: %d %s", status, body)
		}
		c := redisClient(t, r.Addr)
		ctx := context.Background()
		now := time.Now()
		for key, want := range map[string]time.Duration{
			"sechard:{revoked}:sub:redis-client":   maxTTL + leeway,
			"sechard:{revoked}:jti:redis-late-jti": lateExp.Add(leeway).Sub(now),
			"sechard:{revoked}:index":              maxTTL + leeway,
		} {
			ttl, err := c.PTTL(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			if ttl < want-2*time.Second {
				t.Errorf("key %s has TTL %v, want at least %v", key, ttl, want)
			}
		}
		clock = t0.Add(3 * time.Minute)
		a.Revocation.refreshNow(ctx)
		if s := tokenStatus(a, late); s != http.StatusUnauthorized {
			t.Errorf("jti revoked in Redis, token inside leeway: %d, want 401", s)
		}
		clock = t0.Add(25 * time.Hour)
		a.Revocation.refreshNow(ctx)
		if s := tokenStatus(a, tok); s != http.StatusUnauthorized {
			t.Errorf("25h after a Redis subject revocation, a 48h token gets %d, want 401", s)
		}
	})
}

// A certificate whose CN holds a space can be revoked through the file.
func TestRevocationFileRevokesCertificateCNWithSpaces(t *testing.T) {
	dir := t.TempDir()
	ca := newMTLSCA(t, dir, "ca")
	now := time.Now()
	leaf, _, _, _ := ca.issue(t, dir, "svc", mtlsCertSpec{cn: "Service BI", notBefore: now.Add(-time.Hour), notAfter: now.Add(time.Hour)})
	cs := mtlsVerifiedState(t, ca, leaf)
	clock := now
	for _, tc := range []struct {
		line string
		want int
	}{
		{"", 0},
		{"sub:cn:Service BI", 401},
		{fmt.Sprintf("sub:cn:Service BI %d  # leaked key", leaf.NotBefore.Unix()+1), 401},
		{fmt.Sprintf("sub:cn:Service BI %d", leaf.NotBefore.Unix()), 0},
		{"sub:cn:Service", 0},
	} {
		file := filepath.Join(dir, "revoked.txt")
		writeTestFile(t, file, tc.line+"\n")
		a := mtlsUnitAuth(t, &clock, func(a *Auth) {
			a.ClientCerts = append(a.ClientCerts, ClientCert{Identity: "cn:Service BI", Scopes: []string{"nl-query:read"}})
			a.Revocation = &Revocation{File: file}
		})
		ex := newAuthExchange("/x")
		ex.r.TLS = cs
		d := a.decide(ex)
		if d.Status != tc.want {
			t.Errorf("%q: status %d, want %d", tc.line, d.Status, tc.want)
		}
		if tc.want == 401 && d.Header.Get("WWW-Authenticate") != wwwAuth401("client certificate revoked") {
			t.Errorf("%q: WWW-Authenticate %q", tc.line, d.Header.Get("WWW-Authenticate"))
		}
	}
}

// The revocation Redis password comes from a secret, named in the config
// like the rate-limit store's, and required when the config loads.
func TestRevocationRedisPasswordSecret(t *testing.T) {
	const pw = "s3cret-revocation-pw"
	t.Run("caddyfile", func(t *testing.T) {
		d := caddyfile.NewTestDispenser("revocation {\n redis redis://127.0.0.1:6379/0 password_secret REV_REDIS_PW\n}")
		d.Next()
		var rv Revocation
		if err := rv.unmarshalCaddyfile(d); err != nil {
			t.Fatal(err)
		}
		if rv.Redis != "redis://127.0.0.1:6379/0" || rv.RedisPasswordSecret != "REV_REDIS_PW" {
			t.Fatalf("redis %q, password_secret %q", rv.Redis, rv.RedisPasswordSecret)
		}
		for _, line := range []string{
			"redis redis://127.0.0.1/0 password_secret",
			"redis redis://127.0.0.1/0 password REV_REDIS_PW",
			"redis redis://127.0.0.1/0 password_secret A B",
			"redis redis://127.0.0.1/0 password_secret 1BAD",
		} {
			d := caddyfile.NewTestDispenser("revocation {\n " + line + "\n}")
			d.Next()
			if err := new(Revocation).unmarshalCaddyfile(d); err == nil || !strings.Contains(err.Error(), "Testfile:") {
				t.Errorf("%q: error %v, want one naming the line", line, err)
			}
		}
		out, err := adaptCaddyfile(t, `:8080 {
	sechard {
		auth {
			jwt {
				public_key /k.pem
			}
			revocation {
				redis redis://127.0.0.1:6379/0 password_secret REV_REDIS_PW
			}
		}
	}
}`)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), `"revocation":{"redis":"redis://127.0.0.1:6379/0","redis_password_secret":"REV_REDIS_PW"}`) {
			t.Fatalf("adapted JSON lacks the secret's name:\n%s", out)
		}
	})

	handler := func(redisURL, secret string, apiKey string) *Handler {
		ti := newTestIssuer(t)
		a := &Auth{JWT: &JWT{PublicKeys: []PublicKey{{File: ti.pemPath("es256"), KID: "es256"}}},
			Revocation: &Revocation{Redis: redisURL, RedisPasswordSecret: secret, CacheTTL: caddy.Duration(time.Hour)}}
		if apiKey != "" {
			a.APIKeys = []APIKey{{Secret: apiKey}}
		}
		return &Handler{Secrets: &Secrets{Dirs: []string{t.TempDir()}}, Auth: a}
	}
	for _, n := range []string{"SECHARD_T_REV_PW", "SECHARD_T_REV_KEY"} {
		t.Setenv(n, "")
		t.Setenv(n+"_FILE", "")
	}

	t.Run("missing secret fails the load with every missing name", func(t *testing.T) {
		ctx, cancel := newTestContext()
		defer cancel()
		h := handler("redis://127.0.0.1:1/0", "SECHARD_T_REV_PW", "SECHARD_T_REV_KEY")
		err := h.Provision(ctx)
		if err == nil {
			h.Cleanup()
		}
		// Named with the API key's: required up front, like every secret.
		if want := "missing required secret: SECHARD_T_REV_KEY, SECHARD_T_REV_PW"; err == nil || err.Error() != want {
			t.Fatalf("error %v, want %q", err, want)
		}
	})

	t.Run("redis with requirepass", func(t *testing.T) {
		addr := startRedisWithPassword(t, pw).Addr
		t.Setenv("SECHARD_T_REV_PW", pw)
		ctx, cancel := newTestContext()
		defer cancel()
		h := handler("redis://"+addr+"/0", "SECHARD_T_REV_PW", "")
		if err := h.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		defer h.Cleanup()
		rv := h.Auth.Revocation
		now := time.Now()
		e, err := revocation.Request{JTI: "pw-jti", Exp: now.Add(time.Minute).Unix()}.Entry(now, defaultTokenBounds)
		if err != nil {
			t.Fatal(err)
		}
		if err := revocation.AddRedis(ctx, rv.client, e); err != nil {
			t.Fatalf("writing through the secret's password: %v", err)
		}
		rv.refreshNow(ctx)
		if !rv.revoked("pw-jti", "", now) || rv.redisDown {
			t.Fatal("revocation not read back through the secret's password")
		}
		cfg, _ := json.Marshal(h)
		if strings.Contains(string(cfg), pw) {
			t.Fatalf("password in the JSON config: %s", cfg)
		}
	})
}

func TestRevocationEndToEndSubjectWithSpaces(t *testing.T) {
	priv, pub, _ := keygen(t, "ES256")
	file := filepath.Join(t.TempDir(), "revoked.txt")
	writeTestFile(t, file, "# revoked subjects\n")
	site := revocationSite(pub, fmt.Sprintf("\t\t\t\tfile %s\n\t\t\t\trefresh 100ms", file))
	s := startCaddy(t, site)

	spaced, _ := mintToken(t, priv, "Service BI")
	prefix, _ := mintToken(t, priv, "Service")
	requireStatus(t, s, spaced, http.StatusOK)
	writeTestFile(t, file, fmt.Sprintf("sub:Service BI %d  # leaked\n", time.Now().Unix()+60))
	waitFor(t, 2*time.Second, "subject with a space revoked", func() bool {
		return s.Get("/data", "Authorization", "Bearer "+spaced).StatusCode == http.StatusUnauthorized
	})
	requireStatus(t, s, prefix, http.StatusOK)
}

func TestRevocationEndToEndRedisPasswordSecret(t *testing.T) {
	const pw = "s3cret-revocation-e2e"
	addr := startRedisWithPassword(t, pw).Addr
	t.Setenv("SECHARD_T_REV_E2E_PW", "")
	t.Setenv("SECHARD_T_REV_E2E_PW_FILE", "")
	priv, pub, _ := keygen(t, "ES256")
	site := revocationSite(pub, fmt.Sprintf("\t\t\t\tredis redis://%s/0 password_secret SECHARD_T_REV_E2E_PW\n\t\t\t\tcache_ttl 300ms", addr))

	failed := startCaddy(t, site, caddyOptions{ExpectFail: true})
	if !strings.Contains(failed.Logs(), "missing required secret: SECHARD_T_REV_E2E_PW") {
		t.Fatalf("load without the secret: logs\n%s", failed.Logs())
	}

	s := startCaddy(t, site, caddyOptions{Env: []string{"SECHARD_T_REV_E2E_PW=" + pw}})
	tok, _ := mintToken(t, priv, "service-bi")
	requireStatus(t, s, tok, http.StatusOK)
	if out, err := runCaddy(t, nil, "sechard", "revoke", "--address", s.AdminAddr, "--token", tok); err != nil {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	requireStatus(t, s, tok, http.StatusUnauthorized)
	resp := s.Get("/data") // any request; then the config and logs
	resp.Body.Close()
	cfg, err := http.Get("http://" + s.AdminAddr + "/config/")
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(cfg); strings.Contains(body, pw) || !strings.Contains(body, `"redis_password_secret":"SECHARD_T_REV_E2E_PW"`) {
		t.Fatalf("admin config: %s", body)
	}
	if strings.Contains(s.Logs(), pw) {
		t.Fatal("password in Caddy's logs")
	}
}
