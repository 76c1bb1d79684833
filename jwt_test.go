package sechard

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/sechard/sechard/internal/jwtverify"
	"github.com/sechard/sechard/internal/secrets"
)

// testIssuer holds real keys generated for the test run, one per
// algorithm, and signs tokens with them for real.
type testIssuer struct {
	dir  string
	keys map[string]crypto.Signer // by kid
	algs map[string]string        // kid -> alg
	// other is an ES256 key nobody configured (a forged signature's key).
	other *ecdsa.PrivateKey
}

var (
	issuerOnce sync.Once
	issuerKeys map[string]crypto.Signer
	issuerAlgs map[string]string
	otherKey   *ecdsa.PrivateKey
)

// newTestIssuer generates the keys once per process (RSA generation is
// slow) and writes their public halves as PEM files under a fresh dir.
func newTestIssuer(t testing.TB) *testIssuer {
	t.Helper()
	issuerOnce.Do(func() {
		issuerKeys = map[string]crypto.Signer{}
		issuerAlgs = map[string]string{}
		gen := func(kid, alg string, k crypto.Signer, err error) {
			if err != nil {
				panic(err)
			}
			issuerKeys[kid], issuerAlgs[kid] = k, alg
		}
		k256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		gen("es256", "ES256", k256, err)
		k384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		gen("es384", "ES384", k384, err)
		k521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		gen("es512", "ES512", k521, err)
		_, ked, err := ed25519.GenerateKey(rand.Reader)
		gen("ed", "EdDSA", ked, err)
		krsa, err := rsa.GenerateKey(rand.Reader, 2048)
		gen("rs", "RS256", krsa, err)
		otherKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	})
	ti := &testIssuer{dir: t.TempDir(), keys: issuerKeys, algs: issuerAlgs, other: otherKey}
	for kid, k := range ti.keys {
		writePublicPEM(t, ti.pemPath(kid), k.Public())
	}
	return ti
}

func (ti *testIssuer) pemPath(kid string) string { return filepath.Join(ti.dir, kid+".pub.pem") }

func writePublicPEM(t testing.TB, path string, pub crypto.PublicKey) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// jwtBlock is the Caddyfile jwt block trusting every test key.
func (ti *testIssuer) jwtBlock(extra string) string {
	var b strings.Builder
	b.WriteString("jwt {\n")
	for _, kid := range []string{"es256", "es384", "es512", "ed", "rs"} {
		fmt.Fprintf(&b, "\t\t\t\tpublic_key %s %s\n", ti.pemPath(kid), kid)
	}
	b.WriteString("\t\t\t\talgorithms ES256 ES384 ES512 EdDSA RS256\n")
	b.WriteString(extra)
	b.WriteString("\t\t\t}\n")
	return b.String()
}

func jwtB64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func jwtJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// claims returns a valid claim set issued now, plus overrides (a nil value
// deletes the claim).
func testClaims(now time.Time, over map[string]any) map[string]any {
	c := map[string]any{
		"sub":    "service-bi",
		"iss":    "https://auth.test",
		"aud":    "nl-query-api",
		"iat":    now.Unix(),
		"exp":    now.Add(time.Minute).Unix(),
		"jti":    "jti-" + fmt.Sprint(now.UnixNano()),
		"scopes": []string{"nl-query:read", "schema:read"},
	}
	for k, v := range over {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// sign builds a compact JWS over the exact header and payload bytes given,
// signed for real with the key kid using alg.
func (ti *testIssuer) signRaw(alg string, key any, header, payload []byte) string {
	signing := jwtB64(header) + "." + jwtB64(payload)
	sig, err := jwt.GetSigningMethod(alg).Sign(signing, key)
	if err != nil {
		panic(err)
	}
	return signing + "." + jwtB64(sig)
}

// sign signs claims with the key kid (and its algorithm), adding header
// members from hdr.
func (ti *testIssuer) sign(kid string, c map[string]any, hdr map[string]any) string {
	alg := ti.algs[kid]
	h := map[string]any{"alg": alg, "typ": "JWT", "kid": kid}
	for k, v := range hdr {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	return ti.signRaw(alg, ti.keys[kid], jwtJSON(h), jwtJSON(c))
}

// authTestEnv is a provisionEnv for unit tests, with a controllable clock.
func authTestEnv(t testing.TB, now func() time.Time, values map[string]string) *provisionEnv {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	sv := secrets.Values{}
	for k, v := range values {
		sv[k] = secrets.New(v)
	}
	return &provisionEnv{Context: ctx, logger: zap.NewNop(), secrets: sv, now: now}
}

// TestJWTClaimRulesMapToCredErrors: the jwt block's settings reach the
// verifier, and each refusal becomes the 401 description it always had
// (jwtverify's own tests cover the rules themselves).
func TestJWTClaimRulesMapToCredErrors(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Unix(1_800_000_000, 0)
	j := &JWT{Issuer: "https://auth.test", Audience: "nl-query-api", Algorithms: []string{"ES256", "ES384", "ES512", "EdDSA", "RS256"}}
	for _, kid := range []string{"es256", "es384", "es512", "ed", "rs"} {
		j.PublicKeys = append(j.PublicKeys, PublicKey{File: ti.pemPath(kid), KID: kid})
	}
	v, err := j.newVerifier(authTestEnv(t, func() time.Time { return now }, nil))
	if err != nil {
		t.Fatal(err)
	}
	s := func(over map[string]any) string { return ti.sign("es256", testClaims(now, over), nil) }
	tests := []struct {
		name  string
		token string
		want  *credError
	}{
		{"valid", s(nil), nil},
		{"expired 20s ago passes with 30s leeway", s(map[string]any{"iat": now.Add(-80 * time.Second).Unix(), "exp": now.Add(-20 * time.Second).Unix()}), nil},
		{"expired 40s ago fails", s(map[string]any{"iat": now.Add(-100 * time.Second).Unix(), "exp": now.Add(-40 * time.Second).Unix()}), errTokenExpired},
		{"exp zero is expired, not missing", s(map[string]any{"exp": 0}), errTokenExpired},
		{"nbf 20s ahead passes", s(map[string]any{"nbf": now.Add(20 * time.Second).Unix()}), nil},
		{"nbf 40s ahead fails", s(map[string]any{"nbf": now.Add(40 * time.Second).Unix()}), errTokenNotYet},
		{"iat 40s ahead fails", s(map[string]any{"iat": now.Add(40 * time.Second).Unix(), "exp": now.Add(90 * time.Second).Unix()}), errTokenIAT},
		{"missing exp", s(map[string]any{"exp": nil}), errTokenNoExp},
		{"missing iat", s(map[string]any{"iat": nil}), errTokenNoIAT},
		{"lifetime of exactly max_ttl passes", s(map[string]any{"exp": now.Add(5 * time.Minute).Unix()}), nil},
		{"lifetime over max_ttl fails", s(map[string]any{"exp": now.Add(5*time.Minute + time.Second).Unix()}), errTokenTTL},
		{"wrong issuer", s(map[string]any{"iss": "https://evil.test"}), errTokenIssuer},
		{"missing issuer", s(map[string]any{"iss": nil}), errTokenIssuer},
		{"wrong audience", s(map[string]any{"aud": "other-api"}), errTokenAudience},
		{"audience in a list", s(map[string]any{"aud": []string{"x", "nl-query-api"}}), nil},
		{"scopes as a string is refused", s(map[string]any{"scopes": "a b"}), errTokenMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(tt.token, now)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if got := tokenError(err); got != tt.want {
				t.Fatalf("want %v, got %v", tt.want, got)
			}
		})
	}
}

func TestTokenErrorsCoverEveryKind(t *testing.T) {
	for k := jwtverify.TooLarge; k <= jwtverify.UnsupportedConfirmation; k++ {
		ce := tokenErrors[k]
		if ce == nil || ce.reason != "auth_invalid" || ce.desc != k.String() {
			t.Errorf("kind %d (%s): %+v", k, k, ce)
		}
		if tokenError(&jwtverify.Error{Kind: k}) != ce {
			t.Errorf("kind %d: tokenError is not the shared credError", k)
		}
	}
}

// TestJWTIdentityFromClaims: what auth makes of a verified token.
func TestJWTIdentityFromClaims(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Unix(1_800_000_000, 0)
	v, err := (&JWT{PublicKeys: []PublicKey{{File: ti.pemPath("ed")}}}).newVerifier(authTestEnv(t, func() time.Time { return now }, nil))
	if err != nil {
		t.Fatal(err)
	}
	// A single configured key without kid: the token needs no kid.
	id, err := v.Verify(ti.sign("ed", testClaims(now, map[string]any{"scopes": []string{"a"}, "scope": "b a", "jti": "j"}), map[string]any{"kid": nil}), now)
	if err != nil {
		t.Fatal(err)
	}
	if id.method != "jwt" || id.subject != "service-bi" || id.jti != "j" || !id.iat.Equal(now) || id.bound != nil ||
		id.joined != "a b" || !id.has("a") || !id.has("b") || id.has("a b") || id.boxedSubject != "service-bi" {
		t.Fatalf("%+v", id)
	}
}

// FuzzAuthCredential feeds arbitrary Authorization and API-key header
// values through credential extraction and token verification: nothing may
// panic, and nothing unsigned may ever be accepted.
func FuzzAuthCredential(f *testing.F) {
	ti := newTestIssuer(f)
	now := time.Unix(1_800_000_000, 0)
	good := ti.sign("es256", testClaims(now, nil), nil)
	f.Add("Bearer "+good, "")
	f.Add("bearer "+good+".x", "")
	f.Add("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "")
	f.Add("Basic dXNlcjpwYXNz", "k")
	f.Add("", "the-key")
	f.Add("Bearer "+strings.Repeat("A", 9000), "")
	// Bound tokens (RFC 8705) and other cnf forms: never accepted here (no
	// TLS, and jkt is refused), whatever the mutation.
	f.Add("Bearer "+ti.sign("es256", testClaims(now, map[string]any{"cnf": map[string]any{"x5t#S256": strings.Repeat("A", 43)}}), nil), "")
	f.Add("Bearer "+ti.sign("es256", testClaims(now, map[string]any{"cnf": map[string]any{"jkt": "x"}}), nil), "")
	a := fuzzAuth(f, ti, now)
	f.Fuzz(func(t *testing.T, authz, key string) {
		ex := newAuthExchange("/x")
		if authz != "" {
			ex.r.Header["Authorization"] = []string{authz}
		}
		if key != "" {
			ex.r.Header["X-Api-Key"] = []string{key}
		}
		d := a.decide(ex)
		if d.Status == 0 {
			// Only the real token or (with no bearer) the real key may pass.
			tok, isBearer := bearerToken(authz)
			if !(isBearer && tok == good) && !(!isBearer && key == "the-key") {
				t.Fatalf("accepted %q / %q", authz, key)
			}
		}
		if ex.r.Header.Get("X-Api-Key") != "" {
			t.Fatal("API key header left on the request")
		}
	})
}

func fuzzAuth(tb testing.TB, ti *testIssuer, now time.Time) *Auth {
	a := &Auth{
		APIKeys: []APIKey{{Secret: "K", Scopes: []string{"x"}}},
		JWT:     &JWT{PublicKeys: []PublicKey{{File: ti.pemPath("es256"), KID: "es256"}, {File: ti.pemPath("ed"), KID: "ed"}}},
	}
	if err := a.provision(authTestEnv(tb, func() time.Time { return now }, map[string]string{"K": "the-key"})); err != nil {
		tb.Fatal(err)
	}
	return a
}
