package sechard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestGatesUnconfiguredLetEverythingThrough: a nil gate (its block absent)
// decides nothing, so ServeHTTP can name every gate unconditionally.
func TestGatesUnconfiguredLetEverythingThrough(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	ex := &exchange{w: httptest.NewRecorder(), r: r, identity: "svc"}
	for _, g := range []gate{(*CORS)(nil), (*RateLimit)(nil), (*TokenService)(nil), (*Auth)(nil), (*identityGate)(nil)} {
		if d := g.decide(ex); d.Status != 0 || d.Audit != nil || d.Count != nil {
			t.Errorf("%s (not configured) decided %+v", g.name(), d)
		}
		if m := g.mode(); m != "" && m != modeEnforce {
			t.Errorf("%s (not configured) has mode %q", g.name(), m)
		}
	}
}

// TestValidateNamesTheGate: the one mode rule, reported with the gate's
// name, for every gate that has a mode, all at once.
func TestValidateNamesTheGate(t *testing.T) {
	h := &Handler{CORS: &CORS{Mode: "audit"}, RateLimit: &RateLimit{Mode: "log"}, Auth: &Auth{Mode: modeReport}}
	err := h.Validate()
	if err == nil {
		t.Fatal("Validate accepted modes audit and log")
	}
	for _, want := range []string{`cors: mode must be enforce or report, got "audit"`, `rate_limit: mode must be enforce or report, got "log"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want it to say %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "auth") {
		t.Errorf("Validate blamed auth, whose mode is fine: %v", err)
	}
}

// TestModeParserIsOneRule: every block's `mode` line goes through the same
// parser, which names the block.
func TestModeParserIsOneRule(t *testing.T) {
	for block, parse := range map[string]func(*caddyfile.Dispenser) error{
		"cors":       func(d *caddyfile.Dispenser) error { return new(CORS).unmarshalCaddyfile(d) },
		"rate_limit": func(d *caddyfile.Dispenser) error { return new(RateLimit).unmarshalCaddyfile(d) },
		"auth":       func(d *caddyfile.Dispenser) error { return new(Auth).unmarshalCaddyfile(d) },
	} {
		d := caddyfile.NewTestDispenser(block + " {\n\tmode audit\n}")
		d.Next()
		err := parse(d)
		if want := block + ` mode must be enforce or report, got "audit"`; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", block, err, want)
		}
		d = caddyfile.NewTestDispenser(block + " {\n\tmode report extra\n}")
		d.Next()
		if err := parse(d); err == nil {
			t.Errorf("%s: mode with two arguments accepted", block)
		}
	}
}

// TestProvisionReportsEveryProblemOfABlock: a block with several mistakes
// names all of them in one load, not one per attempt.
func TestProvisionReportsEveryProblemOfABlock(t *testing.T) {
	env := authTestEnv(t, time.Now, map[string]string{"BI_KEY": biKeyValue})
	err := (&Auth{Phase: "later", AuditAllows: "sometimes", APIKeyHeader: "Authorization",
		APIKeys: []APIKey{{Secret: "BI_KEY"}, {Secret: "BI_KEY"}}}).provision(env)
	for _, want := range []string{"phase must be", "audit_allows must be", "api_key_header cannot be Authorization", "api_key BI_KEY configured twice"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("auth: %v, want it to say %q", err, want)
		}
	}

	a := &Auth{APIKeys: []APIKey{{Secret: "BI_KEY"}}}
	if err := a.provision(env); err != nil {
		t.Fatal(err)
	}
	env.auth = a
	err = (&TokenService{Issuer: "not a url", Path: "token", TTL: -1}).provision(env)
	for _, want := range []string{"issuer", "audience is required", "path must start with /", "ttl", "signing_key is required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("token_service: %v, want it to say %q", err, want)
		}
	}
}

// TestConcludeOwnsEveryEffect: the gate only decides; conclude counts the
// decision's own counter, writes its audit record (with "enforced" on
// refusals only) and answers or refuses, and in report mode does what the
// decision says instead.
func TestConcludeOwnsEveryEffect(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	m, _ := testMetrics(t)
	h := &Handler{audit: zap.New(core).Named("audit"), metrics: m, stageLoggers: map[string]*zap.Logger{}}
	newEx := func() *exchange {
		return &exchange{w: httptest.NewRecorder(), r: httptest.NewRequest(http.MethodGet, "/x", nil), requestID: "rid"}
	}
	counter := m.c.tokens.WithLabelValues(m.server, "conclude-test")
	before := metricValue(counter)

	// An allowed decision with a record and a counter: both, and the request goes on.
	ex := newEx()
	done, err := h.conclude(ex, &Auth{}, decision{Audit: ex.auditAuth(zap.InfoLevel, "allow", "authenticated", "api_key", nil, nil, ""), Count: counter})
	if done || err != nil {
		t.Fatalf("allowed decision stopped the request: %v %v", done, err)
	}
	if got := metricValue(counter) - before; got != 1 {
		t.Errorf("counter +%v, want +1", got)
	}
	entries := logs.TakeAll()
	if len(entries) != 1 || entries[0].Message != "auth decision" {
		t.Fatalf("audit entries %v, want one", entries)
	}
	if _, ok := entries[0].ContextMap()["enforced"]; ok {
		t.Error("an allowed decision's entry carries enforced")
	}

	// The same refusal in enforce and report mode: recorded alike; applied
	// only in enforce; report mode applies Instead.
	refusal := func(ex *exchange) decision {
		return decision{Status: http.StatusForbidden, Reason: reasonAuthScope,
			Audit:   ex.auditAuth(zap.WarnLevel, "deny", reasonAuthScope, "api_key", nil, nil, "read"),
			Instead: &decision{Status: http.StatusNoContent, Answer: true}}
	}
	ex = newEx()
	if done, err := h.conclude(ex, &Auth{}, refusal(ex)); !done || err == nil {
		t.Errorf("enforce: done=%v err=%v, want the refusal", done, err)
	}
	ex = newEx()
	if done, err := h.conclude(ex, &Auth{Mode: modeReport}, refusal(ex)); !done || err != nil || ex.w.(*httptest.ResponseRecorder).Code != http.StatusNoContent {
		t.Errorf("report: done=%v err=%v code=%d, want Instead's 204", done, err, ex.w.(*httptest.ResponseRecorder).Code)
	}
	entries = logs.TakeAll()
	if len(entries) != 2 {
		t.Fatalf("%d entries, want one per refusal", len(entries))
	}
	for i, want := range []bool{true, false} {
		if got, ok := entries[i].ContextMap()["enforced"]; !ok || got != want {
			t.Errorf("entry %d: enforced=%v, want %v", i, got, want)
		}
	}
}

// The gates' scratch shares the exchange's allocation when a gate that
// writes into it is on, and is left out (about 600 bytes per request) when
// only the request ID and the security headers are; a gate that runs
// without it anyway gets one of its own.
func TestExchangeCarriesScratchOnlyForGatesThatUseIt(t *testing.T) {
	t.Setenv("BENCH_API_KEY", "bench-key-0123456789abcdef")
	rate := &RateSpec{Events: 10, Window: caddy.Duration(time.Second)}
	for _, tc := range []struct {
		name string
		h    *Handler
		want bool
	}{
		{"defaults", new(Handler), false},
		{"paths only", &Handler{Paths: "normalize"}, false},
		{"cors", &Handler{CORS: &CORS{Origins: []string{"https://app.example.com"}}}, true},
		{"rate_limit", &Handler{RateLimit: &RateLimit{Rate: rate}}, true},
		{"auth", &Handler{Auth: &Auth{APIKeys: []APIKey{{Secret: "BENCH_API_KEY"}}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := provisionedHandler(t, tc.h)
			r, _ := newTestRequest()
			ex := h.newExchange(r)
			if got := ex.s != nil; got != tc.want {
				t.Fatalf("scratch inline = %v, want %v", got, tc.want)
			}
			if s := ex.scratch(); s == nil || ex.s != s || ex.scratch() != s {
				t.Fatal("scratch() must return one gateScratch per exchange")
			}
		})
	}
}
