package jwtverify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testKeys are real keys generated once per test process (RSA generation
// is slow), one per algorithm, by kid; other is an ES256 key nobody
// configured (a forged signature's key).
var testKeys = sync.OnceValue(func() (k struct {
	signers map[string]crypto.Signer
	algs    map[string]string
	other   *ecdsa.PrivateKey
}) {
	k.signers, k.algs = map[string]crypto.Signer{}, map[string]string{}
	add := func(kid, alg string, s crypto.Signer, err error) {
		if err != nil {
			panic(err)
		}
		k.signers[kid], k.algs[kid] = s, alg
	}
	k256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	add("es256", "ES256", k256, err)
	k384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	add("es384", "ES384", k384, err)
	k521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	add("es512", "ES512", k521, err)
	_, ked, err := ed25519.GenerateKey(rand.Reader)
	add("ed", "EdDSA", ked, err)
	krsa, err := rsa.GenerateKey(rand.Reader, 2048)
	add("rs", "RS256", krsa, err)
	k.other, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return k
})

// testKey is the public Key of kid, as a configured static key.
func testKey(kid string) *Key {
	return &Key{KID: kid, Public: testKeys().signers[kid].Public()}
}

// testIdentity stands for the caller's identity: built once per verified
// token, as the root package's is (one allocation, strings boxed once).
type testIdentity struct {
	subject, jti, joined string
	scopes               []string
	iat                  time.Time
	cert                 CertBinding
	boxed                [3]any
}

func testAccept(c Claims) *testIdentity {
	id := &testIdentity{subject: c.Subject, jti: c.ID, scopes: c.Scopes, iat: c.IssuedAt, cert: c.Cert}
	id.joined = strings.Join(c.Scopes, " ")
	id.boxed = [3]any{id.subject, id.joined, id.jti}
	return id
}

// newTestVerifier is a Verifier of the given static kids (all five when
// none is given), accepting their algorithms, at the fixed time now.
func newTestVerifier(t testing.TB, now time.Time, edit func(*Config), kids ...string) *Verifier[*testIdentity] {
	t.Helper()
	if len(kids) == 0 {
		kids = []string{"es256", "es384", "es512", "ed", "rs"}
	}
	c := Config{Leeway: 30 * time.Second, MaxTTL: 5 * time.Minute, Now: func() time.Time { return now }}
	for _, kid := range kids {
		c.Keys = append(c.Keys, testKey(kid))
		c.Algorithms = append(c.Algorithms, testKeys().algs[kid])
	}
	if edit != nil {
		edit(&c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := New(ctx, c, testAccept)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// testClaims returns a valid claim set issued at now, plus overrides (a nil
// value deletes the claim).
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

// signRaw builds a compact JWS over the exact header and payload bytes
// given, signed for real.
func signRaw(alg string, key any, header, payload []byte) string {
	signing := b64(header) + "." + b64(payload)
	sig, err := jwt.GetSigningMethod(alg).Sign(signing, key)
	if err != nil {
		panic(err)
	}
	return signing + "." + b64(sig)
}

// sign signs claims with the key kid (and its algorithm), adding header
// members from hdr (a nil value deletes one).
func sign(kid string, c map[string]any, hdr map[string]any) string {
	alg := testKeys().algs[kid]
	h := map[string]any{"alg": alg, "typ": "JWT", "kid": kid}
	for k, v := range hdr {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	return signRaw(alg, testKeys().signers[kid], mustJSON(h), mustJSON(c))
}

// ecJWK renders a P-256 public key as a JWK.
func ecJWK(pub *ecdsa.PublicKey, kid string) string {
	raw, _ := pub.Bytes()
	m := map[string]any{"kty": "EC", "crv": "P-256", "x": b64(raw[1:33]), "y": b64(raw[33:]), "use": "sig"}
	if kid != "" {
		m["kid"] = kid
	}
	return string(mustJSON(m))
}

// okpJWK renders an Ed25519 public key as a JWK.
func okpJWK(pub ed25519.PublicKey, kid string) string {
	return string(mustJSON(map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64(pub), "kid": kid, "alg": "EdDSA"}))
}

// badJWKs are keys a Verifier cannot use, by kid.
func badJWKs(t testing.TB) map[string]string {
	t.Helper()
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := ec.PublicKey.Bytes()
	x32 := b64(make([]byte, 32))
	return map[string]string{
		"bad-x25519": `{"kty":"OKP","crv":"X25519","x":"` + x32 + `","kid":"bad-x25519"}`,
		"bad-rsa1024": string(mustJSON(map[string]any{"kty": "RSA", "kid": "bad-rsa1024",
			"n": b64(rsa1024.N.Bytes()), "e": b64(big.NewInt(int64(rsa1024.E)).Bytes())})),
		"bad-kty": `{"kty":"XYZ","kid":"bad-kty","x":"` + x32 + `"}`,
		"bad-enc": string(mustJSON(map[string]any{"kty": "EC", "crv": "P-256", "kid": "bad-enc", "use": "enc",
			"x": b64(raw[1:33]), "y": b64(raw[33:])})),
		"bad-curve": `{"kty":"EC","crv":"secp256k1","kid":"bad-curve","x":"` + x32 + `","y":"` + x32 + `"}`,
	}
}

// kindOf is the Kind of a Verify error, 0 for nil.
func kindOf(t testing.TB, err error) Kind {
	t.Helper()
	if err == nil {
		return 0
	}
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("error %T %v is not an *Error", err, err)
	}
	return e.Kind
}
