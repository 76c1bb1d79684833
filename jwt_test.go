package sechard

import (
	"strings"
	"testing"
	"time"

	"github.com/sechard/sechard/internal/jwttest"
	"github.com/sechard/sechard/internal/jwtverify"
)

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
	s := func(over map[string]any) string { return ti.sign("es256", jwttest.Claims(now, over), nil) }
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
	id, err := v.Verify(ti.sign("ed", jwttest.Claims(now, map[string]any{"scopes": []string{"a"}, "scope": "b a", "jti": "j"}), map[string]any{"kid": nil}), now)
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
	good := ti.sign("es256", jwttest.Claims(now, nil), nil)
	f.Add("Bearer "+good, "")
	f.Add("bearer "+good+".x", "")
	f.Add("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "")
	f.Add("Basic dXNlcjpwYXNz", "k")
	f.Add("", "the-key")
	f.Add("Bearer "+strings.Repeat("A", 9000), "")
	// Bound tokens (RFC 8705) and other cnf forms: never accepted here (no
	// TLS, and jkt is refused), whatever the mutation.
	f.Add("Bearer "+ti.sign("es256", jwttest.Claims(now, map[string]any{"cnf": map[string]any{"x5t#S256": strings.Repeat("A", 43)}}), nil), "")
	f.Add("Bearer "+ti.sign("es256", jwttest.Claims(now, map[string]any{"cnf": map[string]any{"jkt": "x"}}), nil), "")
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
