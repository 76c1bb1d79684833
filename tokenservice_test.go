package sechard

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sechard/sechard/internal/jwtverify"
)

func TestTokenServiceCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, input, want string
		line              int
	}{
		{"unknown option", "token_service {\n\tissuer https://e\n\tlifetime 5m\n}", `unrecognized token_service option "lifetime"`, 3},
		{"relative path", "token_service {\n\tpath oauth2/token\n}", "path must start with /", 2},
		{"issuer with query", "token_service {\n\tissuer https://e/?x=1\n}", "token_service issuer", 2},
		{"issuer not a URL", "token_service {\n\n\tissuer edge.example.com\n}", "token_service issuer", 3},
		{"bad ttl", "token_service {\n\tttl soon\n}", "ttl must be a positive duration", 2},
		{"bad secret name", "token_service {\n\tsigning_key my-key\n}", "invalid secret name", 2},
		{"audience without value", "token_service {\n\taudience\n}", "wrong argument count", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := caddyfile.NewTestDispenser(tc.input)
			d.Next()
			err := new(TokenService).unmarshalCaddyfile(d)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), fmt.Sprintf("Testfile:%d", tc.line)) {
				t.Fatalf("got %v, want %q at line %d", err, tc.want, tc.line)
			}
		})
	}
}

func TestTokenServiceCaddyfileParses(t *testing.T) {
	d := caddyfile.NewTestDispenser("token_service {\n\tpath /token\n\tissuer https://edge.example.com\n\taudience a b\n\taudience c\n\tsigning_key K1 K2\n\tttl 90s\n}")
	d.Next()
	ts := new(TokenService)
	if err := ts.unmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if ts.Path != "/token" || ts.Issuer != "https://edge.example.com" || strings.Join(ts.Audience, ",") != "a,b,c" ||
		strings.Join(ts.SigningKeys, ",") != "K1,K2" || time.Duration(ts.TTL) != 90*time.Second {
		t.Fatalf("%+v", ts)
	}
}

func TestTokenSignerKeyForms(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	for _, tc := range []struct {
		name, pem, alg, err string
	}{
		{"P-256 PKCS#8", pemOf(t, p256, "PRIVATE KEY"), "ES256", ""},
		{"P-256 SEC 1", pemOf(t, p256, "EC PRIVATE KEY"), "ES256", ""},
		{"P-384", pemOf(t, p384, "PRIVATE KEY"), "ES384", ""},
		{"P-521", pemOf(t, p521, "EC PRIVATE KEY"), "ES512", ""},
		{"Ed25519", pemOf(t, ed, "PRIVATE KEY"), "EdDSA", ""},
		{"RSA PKCS#1", pemOf(t, rsa2048, "RSA PRIVATE KEY"), "RS256", ""},
		{"P-224", pemOf(t, p224, "EC PRIVATE KEY"), "", "P-256, P-384 or P-521"},
		{"RSA-1024", pemOf(t, rsa1024, "PRIVATE KEY"), "", "too short"},
		{"public key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "", "not a private key"},
		{"not PEM", "hunter2", "", "no PEM block"},
	} {
		s, err := newTokenSigner([]byte(tc.pem))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || s.method.Alg() != tc.alg || s.kid != jwtverify.Thumbprint(s.pub) {
			t.Errorf("%s: %v %+v", tc.name, err, s)
		}
	}
}

// tokenTestService provisions a token service over an auth with one API key.
func tokenTestService(t testing.TB, mutate func(*TokenService, *Auth)) (*TokenService, *Auth, error) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	env := authTestEnv(t, time.Now, map[string]string{"BI_KEY": biKeyValue, "TS_KEY": pemOf(t, key, "PRIVATE KEY")})
	a := &Auth{APIKeys: []APIKey{{Secret: "BI_KEY", Scopes: []string{"nl-query:read"}}}}
	ts := &TokenService{Issuer: "https://edge.example.com", Audience: []string{"api"}, SigningKeys: []string{"TS_KEY"}}
	if mutate != nil {
		mutate(ts, a)
	}
	if err := a.provision(env); err != nil {
		t.Fatal(err)
	}
	env.auth = a
	return ts, a, ts.provision(env)
}

func TestTokenServiceProvisionErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*TokenService, *Auth)
		want   string
	}{
		{"ttl beyond max_ttl", func(ts *TokenService, _ *Auth) { ts.TTL = caddy.Duration(10 * time.Minute) }, "not longer than auth's jwt max_ttl"},
		{"no audience", func(ts *TokenService, _ *Auth) { ts.Audience = nil }, "audience is required"},
		{"no key", func(ts *TokenService, _ *Auth) { ts.SigningKeys = nil }, "signing_key is required"},
		{"key twice", func(ts *TokenService, _ *Auth) { ts.SigningKeys = []string{"TS_KEY", "TS_KEY"} }, "given twice"},
		{"no issuer", func(ts *TokenService, _ *Auth) { ts.Issuer = "" }, "issuer"},
	} {
		if _, _, err := tokenTestService(t, tc.mutate); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := (&TokenService{}).provision(authTestEnv(t, time.Now, nil)); err == nil || !strings.Contains(err.Error(), "needs an auth block") {
		t.Errorf("without auth: %v", err)
	}
}

// TestTokenServiceSigningKeyNeverInErrors: a key that does not parse is
// named, never shown.
func TestTokenServiceSigningKeyNeverInErrors(t *testing.T) {
	env := authTestEnv(t, time.Now, map[string]string{"BI_KEY": biKeyValue, "TS_KEY": "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXZhbHVl\n-----END PRIVATE KEY-----\n"})
	a := &Auth{APIKeys: []APIKey{{Secret: "BI_KEY"}}}
	if err := a.provision(env); err != nil {
		t.Fatal(err)
	}
	env.auth = a
	err := (&TokenService{Issuer: "https://e", Audience: []string{"a"}, SigningKeys: []string{"TS_KEY"}}).provision(env)
	if err == nil || !strings.Contains(err.Error(), "signing_key TS_KEY") || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Fatalf("%v", err)
	}
}

func tokenRequest(body string) *exchange {
	r := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth("BI_KEY", biKeyValue)
	return &exchange{r: r, w: httptest.NewRecorder()}
}

// TestIssuedTokensRouting: auth sends a token to the service's verifier
// only when its header is one the service writes.
func TestIssuedTokensRouting(t *testing.T) {
	ts, a, err := tokenTestService(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := ts.decide(tokenRequest("grant_type=client_credentials"))
	if d.Status != 200 {
		t.Fatalf("%+v %s", d, d.Body)
	}
	tok := string(d.Body[strings.Index(string(d.Body), `"access_token":"`)+16:])
	tok = tok[:strings.IndexByte(tok, '"')]
	if !a.issued.owns(tok) {
		t.Fatal("an issued token is not routed to the service's verifier")
	}
	id, err := a.issued.verifier.Verify(tok, time.Now())
	if err != nil || id.subject != "BI_KEY" || id.joined != "nl-query:read" {
		t.Fatalf("%+v %v", id, err)
	}
	// Another header with the same kid (a forged typ) is not routed.
	forged := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"sub": "x"})
	forged.Header["kid"] = ts.signer.kid
	s, _ := forged.SignedString(ts.signer.key)
	if a.issued.owns(s) {
		t.Fatal("a token with a header the service never writes was routed to it")
	}
}

// BenchmarkTokenIssue is the cost of one client-credentials exchange
// (parse, client authentication, sign) against bare signing in the same run.
func BenchmarkTokenIssue(b *testing.B) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, k := range []struct {
		name string
		key  crypto.Signer
	}{{"ES256", p256}, {"EdDSA", ed}} {
		env := authTestEnv(b, time.Now, map[string]string{"BI_KEY": biKeyValue, "TS_KEY": pemOf(b, k.key, "PRIVATE KEY")})
		a := &Auth{APIKeys: []APIKey{{Secret: "BI_KEY", Scopes: []string{"nl-query:read"}}}}
		a.provision(env)
		ts := &TokenService{Issuer: "https://edge.example.com", Audience: []string{"api"}, SigningKeys: []string{"TS_KEY"}}
		env.auth = a
		if err := ts.provision(env); err != nil {
			b.Fatal(err)
		}
		b.Run(k.name+"/exchange", func(b *testing.B) {
			// The server's work only: one request, its body rewound each time.
			ex := tokenRequest("")
			const body = "grant_type=client_credentials"
			b.ReportAllocs()
			for b.Loop() {
				ex.r.Body = io.NopCloser(strings.NewReader(body))
				if d := ts.decide(ex); d.Status != 200 {
					b.Fatal(d.Status)
				}
			}
		})
		b.Run(k.name+"/bare-sign", func(b *testing.B) {
			b.ReportAllocs()
			signing := ts.signer.header + ".eyJpc3MiOiJodHRwczovL2VkZ2UuZXhhbXBsZS5jb20iLCJzdWIiOiJCSV9LRVkifQ"
			for b.Loop() {
				if _, err := ts.signer.method.Sign(signing, ts.signer.key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIssuedTokenVerifyCached is auth's cost for a repeated issued
// token: routing by header prefix, then the verified-token cache.
func BenchmarkIssuedTokenVerifyCached(b *testing.B) {
	ts, a, err := tokenTestService(b, nil)
	if err != nil {
		b.Fatal(err)
	}
	d := ts.decide(tokenRequest("grant_type=client_credentials"))
	body := string(d.Body)
	tok := body[strings.Index(body, `"access_token":"`)+16:]
	tok = tok[:strings.IndexByte(tok, '"')]
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if !a.issued.owns(tok) {
			b.Fatal("not owned")
		}
		if _, err := a.issued.verifier.Verify(tok, now); err != nil {
			b.Fatal(err)
		}
	}
}
