package jwtverify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sechard/sechard/internal/jwttest"
)

func TestVerifierClaimRules(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v := newTestVerifier(t, now, func(c *Config) {
		c.Issuer, c.Audience = "https://auth.test", []string{"nl-query-api"}
	})
	s := func(over map[string]any) string { return jwttest.Sign("es256", jwttest.Claims(now, over), nil) }
	tests := []struct {
		name  string
		token string
		want  Kind // 0: valid
	}{
		{"valid", s(nil), 0},
		{"expired 20s ago passes with 30s leeway", s(map[string]any{"iat": now.Add(-80 * time.Second).Unix(), "exp": now.Add(-20 * time.Second).Unix()}), 0},
		{"expired 40s ago fails", s(map[string]any{"iat": now.Add(-100 * time.Second).Unix(), "exp": now.Add(-40 * time.Second).Unix()}), Expired},
		{"exp zero is expired, not missing", s(map[string]any{"exp": 0}), Expired},
		{"nbf 20s ahead passes", s(map[string]any{"nbf": now.Add(20 * time.Second).Unix()}), 0},
		{"nbf 40s ahead fails", s(map[string]any{"nbf": now.Add(40 * time.Second).Unix()}), NotYetValid},
		{"iat 40s ahead fails", s(map[string]any{"iat": now.Add(40 * time.Second).Unix(), "exp": now.Add(90 * time.Second).Unix()}), IssuedInFuture},
		{"missing exp", s(map[string]any{"exp": nil}), NoExpiry},
		{"missing exp and iss", s(map[string]any{"exp": nil, "iss": nil}), NoExpiry},
		{"missing iat", s(map[string]any{"iat": nil}), NoIssuedAt},
		{"lifetime of exactly max_ttl passes", s(map[string]any{"exp": now.Add(5 * time.Minute).Unix()}), 0},
		{"lifetime over max_ttl fails", s(map[string]any{"exp": now.Add(5*time.Minute + time.Second).Unix()}), LifetimeTooLong},
		{"wrong issuer", s(map[string]any{"iss": "https://evil.test"}), WrongIssuer},
		{"missing issuer", s(map[string]any{"iss": nil}), WrongIssuer},
		{"missing issuer and audience", s(map[string]any{"iss": nil, "aud": nil}), WrongIssuer},
		{"wrong audience", s(map[string]any{"aud": "other-api"}), WrongAudience},
		{"missing audience", s(map[string]any{"aud": nil}), WrongAudience},
		{"empty audience", s(map[string]any{"aud": ""}), WrongAudience},
		{"audience in a list", s(map[string]any{"aud": []string{"x", "nl-query-api"}}), 0},
		{"expired and wrong issuer: expiry first", s(map[string]any{"iat": now.Add(-100 * time.Second).Unix(), "exp": now.Add(-40 * time.Second).Unix(), "iss": "x"}), Expired},
		{"scopes as a string is refused", s(map[string]any{"scopes": "a b"}), Malformed},
		{"too large", strings.Repeat("a", MaxTokenSize+1), TooLarge},
		{"two segments", "a.b", Malformed},
		{"four segments", s(nil) + ".x", Malformed},
		{"padded base64url", strings.Replace(s(nil), ".", "=.", 1), Malformed},
		{"duplicate header member", jwttest.SignRaw("ES256", jwttest.Keys().Signers["es256"], []byte(`{"alg":"ES256","kid":"es256","kid":"x"}`), jwttest.MustJSON(jwttest.Claims(now, nil))), DuplicateMember},
		{"header not an object", jwttest.Base64URL([]byte(`[1]`)) + "." + jwttest.Base64URL(jwttest.MustJSON(jwttest.Claims(now, nil))) + ".AA", Malformed},
		{"crit header", jwttest.Sign("es256", jwttest.Claims(now, nil), map[string]any{"crit": []string{"exp"}}), CriticalHeader},
		{"alg none", jwttest.Base64URL([]byte(`{"alg":"none","kid":"es256"}`)) + "." + jwttest.Base64URL(jwttest.MustJSON(jwttest.Claims(now, nil))) + ".", AlgorithmRefused},
		{"alg HS256", jwttest.SignRaw("HS256", []byte("secret"), []byte(`{"alg":"HS256","kid":"es256"}`), jwttest.MustJSON(jwttest.Claims(now, nil))), AlgorithmRefused},
		{"alg unknown", jwttest.Base64URL([]byte(`{"alg":"XX999","kid":"es256"}`)) + "." + jwttest.Base64URL(jwttest.MustJSON(jwttest.Claims(now, nil))) + ".AA", AlgorithmRefused},
		{"alg not allowed, with crit", jwttest.SignRaw("PS256", jwttest.Keys().Signers["rs"], []byte(`{"alg":"PS256","kid":"rs","crit":["x"]}`), jwttest.MustJSON(jwttest.Claims(now, nil))), AlgorithmRefused},
		{"alg not the key's", jwttest.SignRaw("ES384", jwttest.Keys().Signers["es384"], []byte(`{"alg":"ES384","kid":"es256"}`), jwttest.MustJSON(jwttest.Claims(now, nil))), AlgorithmRefused},
		{"no kid with several keys", jwttest.Sign("es256", jwttest.Claims(now, nil), map[string]any{"kid": nil}), NoKeyID},
		{"unknown kid", jwttest.Sign("es256", jwttest.Claims(now, nil), map[string]any{"kid": "nobody"}), UnknownKey},
		{"kid not a string", jwttest.Sign("es256", jwttest.Claims(now, nil), map[string]any{"kid": 7}), UnknownKey},
		{"forged signature", jwttest.SignRaw("ES256", jwttest.Keys().Other, []byte(`{"alg":"ES256","kid":"es256"}`), jwttest.MustJSON(jwttest.Claims(now, nil))), BadSignature},
		{"each algorithm: ES384", jwttest.Sign("es384", jwttest.Claims(now, nil), nil), 0},
		{"each algorithm: ES512", jwttest.Sign("es512", jwttest.Claims(now, nil), nil), 0},
		{"each algorithm: EdDSA", jwttest.Sign("ed", jwttest.Claims(now, nil), nil), 0},
		{"each algorithm: RS256", jwttest.Sign("rs", jwttest.Claims(now, nil), nil), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for round := range 2 { // verified, then (when valid) cached
				_, err := v.Verify(tt.token, now)
				if got := kindOf(t, err); got != tt.want {
					t.Fatalf("round %d: kind %v (%d), want %v (%d)", round, got, got, tt.want, tt.want)
				}
				if err != nil && !errors.Is(err, &Error{Kind: tt.want}) {
					t.Fatalf("errors.Is does not find the kind in %v", err)
				}
			}
		})
	}
}

func TestVerifierScopeForms(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v := newTestVerifier(t, now, nil, "ed")
	for name, over := range map[string]map[string]any{
		"scopes array":  {"scopes": []string{"a", "b"}},
		"scope string":  {"scopes": nil, "scope": "a b"},
		"scp array":     {"scopes": nil, "scp": []string{"a", "b"}},
		"scp string":    {"scopes": nil, "scp": "a  b"},
		"forms combine": {"scopes": []string{"a"}, "scope": "b"},
		"duplicates":    {"scopes": []string{"a", "", "b", "a"}, "scp": "b a"},
	} {
		t.Run(name, func(t *testing.T) {
			// A single configured key without kid: the token needs no kid.
			id, err := v.Verify(jwttest.Sign("ed", jwttest.Claims(now, over), map[string]any{"kid": nil}), now)
			if err != nil {
				t.Fatal(err)
			}
			if id.joined != "a b" {
				t.Fatalf("scopes %q", id.joined)
			}
		})
	}
}

func TestVerifierClaimsReachAccept(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v := newTestVerifier(t, now, nil)
	id, err := v.Verify(jwttest.Sign("rs", jwttest.Claims(now, map[string]any{"jti": "j1"}), nil), now)
	if err != nil {
		t.Fatal(err)
	}
	if id.subject != "service-bi" || id.jti != "j1" || !id.iat.Equal(now) || id.cert.X5tS256 != "" {
		t.Fatalf("%+v", id)
	}
}

// Claim names are matched exactly, and names differing only in case are
// duplicates: encoding/json would match them case-insensitively, last one
// winning.
func TestVerifierClaimNamesExactAndCaseDuplicates(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v := newTestVerifier(t, now, nil, "es256")
	s := func(over map[string]any) string { return jwttest.Sign("es256", jwttest.Claims(now, over), nil) }
	for name, over := range map[string]map[string]any{
		"sub and SUB":       {"SUB": "admin"},
		"scopes and Scopes": {"Scopes": []string{"admin:write"}},
		"sub and ſub":       {"ſub": "admin"}, // U+017F folds to s
		"exp and Exp":       {"Exp": now.Add(time.Hour).Unix()},
	} {
		if _, err := v.Verify(s(over), now); kindOf(t, err) != DuplicateMember {
			t.Errorf("%s: want %v, got %v", name, DuplicateMember, err)
		}
	}
	// Alone, a case variant is just an unknown claim.
	id, err := v.Verify(s(map[string]any{"sub": nil, "SUB": "admin", "scopes": nil, "Scopes": []string{"admin:write"}}), now)
	if err != nil {
		t.Fatal(err)
	}
	if id.subject != "" || len(id.scopes) != 0 {
		t.Fatalf("SUB/Scopes read as sub/scopes: subject %q scopes %q", id.subject, id.joined)
	}
	if _, err := v.Verify(s(map[string]any{"exp": nil, "EXP": now.Add(time.Minute).Unix()}), now); kindOf(t, err) != NoExpiry {
		t.Fatalf("EXP alone: want %v, got %v", NoExpiry, err)
	}
}

// RFC 7519 NumericDate is a JSON number; a string is a malformed token.
func TestVerifierNumericDatesMustBeNumbers(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v := newTestVerifier(t, now, nil, "es256")
	for _, claim := range []string{"exp", "iat", "nbf"} {
		val := now.Unix()
		if claim == "exp" {
			val += 60
		}
		tok := jwttest.Sign("es256", jwttest.Claims(now, map[string]any{claim: strconv.FormatInt(val, 10)}), nil)
		if _, err := v.Verify(tok, now); kindOf(t, err) != Malformed {
			t.Errorf("%s as a string: want %v, got %v", claim, Malformed, err)
		}
	}
	// Numbers, including fractions, still pass.
	if _, err := v.Verify(jwttest.Sign("es256", jwttest.Claims(now, map[string]any{"nbf": float64(now.Unix()) - 0.5}), nil), now); err != nil {
		t.Fatalf("numeric nbf: %v", err)
	}
}

func TestConfirmationClaimForms(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v := newTestVerifier(t, now, nil, "es256")
	sum := sha256.Sum256([]byte("a client certificate's DER"))
	thumb := base64.RawURLEncoding.EncodeToString(sum[:])
	const jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
	for _, tc := range []struct {
		name string
		cnf  any // nil: no cnf claim
		raw  string
		want Kind // 0: accepted
	}{
		{name: "no cnf: a plain bearer token"},
		{name: "x5t#S256", cnf: map[string]any{"x5t#S256": thumb}},
		{name: "DPoP jkt", cnf: map[string]any{"jkt": jkt}, want: UnsupportedConfirmation},
		{name: "x5t#S256 and jkt", cnf: map[string]any{"x5t#S256": thumb, "jkt": jkt}, want: UnsupportedConfirmation},
		{name: "raw jwk", cnf: map[string]any{"jwk": map[string]any{"kty": "EC"}}, want: UnsupportedConfirmation},
		{name: "empty object", cnf: map[string]any{}, want: UnsupportedConfirmation},
		{name: "null", raw: `null`, want: UnsupportedConfirmation},
		{name: "a string", cnf: thumb, want: UnsupportedConfirmation},
		{name: "an array", cnf: []string{thumb}, want: UnsupportedConfirmation},
		{name: "thumbprint not a string", cnf: map[string]any{"x5t#S256": 42}, want: UnsupportedConfirmation},
		{name: "name in another case", cnf: map[string]any{"X5T#S256": thumb}, want: UnsupportedConfirmation},
		{name: "SHA-1 x5t (RFC 7515), not RFC 8705", cnf: map[string]any{"x5t": thumb}, want: UnsupportedConfirmation},
		{name: "padded base64url", cnf: map[string]any{"x5t#S256": thumb + "="}, want: UnsupportedConfirmation},
		{name: "standard base64", cnf: map[string]any{"x5t#S256": strings.NewReplacer("-", "+", "_", "/").Replace(thumb) + "+"}, want: UnsupportedConfirmation},
		{name: "too short", cnf: map[string]any{"x5t#S256": thumb[:40]}, want: UnsupportedConfirmation},
		{name: "empty thumbprint", cnf: map[string]any{"x5t#S256": ""}, want: UnsupportedConfirmation},
		{name: "duplicate member in cnf", raw: `{"x5t#S256":"` + thumb + `","X5T#s256":"` + thumb + `"}`, want: DuplicateMember},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := jwttest.Claims(now, nil)
			var tok string
			switch {
			case tc.raw != "":
				payload := string(jwttest.MustJSON(c))
				payload = payload[:len(payload)-1] + `,"cnf":` + tc.raw + `}`
				tok = jwttest.SignRaw("ES256", jwttest.Keys().Signers["es256"], jwttest.MustJSON(map[string]any{"alg": "ES256", "kid": "es256"}), []byte(payload))
			case tc.cnf != nil:
				c["cnf"] = tc.cnf
				tok = jwttest.Sign("es256", c, nil)
			default:
				tok = jwttest.Sign("es256", c, nil)
			}
			for round := range 2 { // verified, then (when accepted) cached
				id, err := v.Verify(tok, now)
				if got := kindOf(t, err); got != tc.want {
					t.Fatalf("round %d: err %v, want %v", round, err, tc.want)
				}
				if err != nil {
					continue
				}
				switch {
				case tc.cnf == nil && id.cert != (CertBinding{}):
					t.Fatalf("unbound token got binding %+v", id.cert)
				case tc.cnf != nil && (id.cert.X5tS256 != thumb || id.cert.SHA256 != sum):
					t.Fatalf("binding %+v, want %s", id.cert, thumb)
				}
			}
		})
	}
	// A forged signature is refused as such before cnf is looked at.
	c := jwttest.Claims(now, map[string]any{"cnf": map[string]any{"jkt": jkt}})
	if _, err := v.Verify(jwttest.SignRaw("ES256", jwttest.Keys().Other, jwttest.MustJSON(map[string]any{"alg": "ES256", "kid": "es256"}), jwttest.MustJSON(c)), now); kindOf(t, err) != BadSignature {
		t.Fatalf("forged: %v", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for name, c := range map[string]Config{
		"HS256":   {Algorithms: []string{"HS256"}, Keys: []*Key{testKey("es256")}},
		"none":    {Algorithms: []string{"none"}, Keys: []*Key{testKey("es256")}},
		"no keys": {Algorithms: []string{"ES256"}},
	} {
		if _, err := New(t.Context(), c, testAccept); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestErrorKindsHaveDescriptions(t *testing.T) {
	seen := map[string]Kind{}
	for k := TooLarge; k <= UnsupportedConfirmation; k++ {
		d := k.String()
		if d == "" || d == "invalid token" {
			t.Errorf("kind %d has no description", k)
		}
		if other, dup := seen[d]; dup {
			t.Errorf("kinds %d and %d share %q", other, k, d)
		}
		seen[d] = k
		if refuse(k).Kind != k || refuse(k) != refuse(k) {
			t.Errorf("refuse(%d) is not the shared value of its kind", k)
		}
	}
}

func TestThumbprintRFC7638Example(t *testing.T) {
	// RFC 7638 §3.1's example key and thumbprint.
	n, _ := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}
	if got := Thumbprint(pub); got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Fatalf("thumbprint %s", got)
	}
}

// BenchmarkJWTVerify compares the full uncached verification (size check,
// duplicate-member scan, golang-jwt parse with every option, keyfunc, claim
// rules, building the caller's value) with the bare signature check on the
// same bytes: the physical limit. Run with -benchmem.
func BenchmarkJWTVerify(b *testing.B) {
	now := time.Now()
	v := newTestVerifier(b, now, func(c *Config) {
		c.Issuer, c.Audience = "https://auth.test", []string{"nl-query-api"}
	}, "es256", "ed", "rs")
	for _, kid := range []string{"es256", "ed", "rs"} {
		alg := jwttest.Keys().Algs[kid]
		token := jwttest.Sign(kid, jwttest.Claims(now, nil), nil)
		signing := token[:strings.LastIndexByte(token, '.')]
		sig, _ := base64.RawURLEncoding.DecodeString(token[len(signing)+1:])
		b.Run("uncached/"+alg, func(b *testing.B) {
			v.cache = nil
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(token, now); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("bare/"+alg, func(b *testing.B) {
			b.ReportAllocs()
			switch k := jwttest.Keys().Signers[kid].Public().(type) {
			case *ecdsa.PublicKey:
				r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
				for b.Loop() {
					h := sha256.Sum256([]byte(signing))
					if !ecdsa.Verify(k, h[:], r, s) {
						b.Fatal("bad")
					}
				}
			case ed25519.PublicKey:
				for b.Loop() {
					if !ed25519.Verify(k, []byte(signing), sig) {
						b.Fatal("bad")
					}
				}
			case *rsa.PublicKey:
				for b.Loop() {
					h := sha256.Sum256([]byte(signing))
					if rsa.VerifyPKCS1v15(k, crypto.SHA256, h[:], sig) != nil {
						b.Fatal("bad")
					}
				}
			}
		})
	}
}

// FuzzVerify: no token panics the verifier, and only the one token the
// configured key signed is ever accepted, whatever the mutation.
func FuzzVerify(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	v := newTestVerifier(f, now, nil, "es256", "ed")
	good := jwttest.Sign("es256", jwttest.Claims(now, nil), nil)
	f.Add(good)
	f.Add(good + ".x")
	f.Add(jwttest.Sign("ed", jwttest.Claims(now, map[string]any{"cnf": map[string]any{"jkt": "x"}}), nil))
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add(strings.Repeat("A", MaxTokenSize+1))
	f.Add(jwttest.SignRaw("ES256", jwttest.Keys().Other, []byte(`{"alg":"ES256","kid":"es256"}`), jwttest.MustJSON(jwttest.Claims(now, nil))))
	f.Fuzz(func(t *testing.T, token string) {
		_, err := v.Verify(token, now)
		if err == nil && token != good {
			t.Fatalf("accepted %q", token)
		}
		if err != nil {
			kindOf(t, err)
		}
	})
}
