package jwttest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"testing"
)

// ECP256JWK renders a P-256 public key as a JWK with "use": "sig" (and kid,
// unless empty).
func ECP256JWK(pub *ecdsa.PublicKey, kid string) string {
	raw, _ := pub.Bytes()
	m := map[string]any{"kty": "EC", "crv": "P-256", "x": Base64URL(raw[1:33]), "y": Base64URL(raw[33:]), "use": "sig"}
	if kid != "" {
		m["kid"] = kid
	}
	return string(MustJSON(m))
}

// Ed25519JWK renders an Ed25519 public key as a JWK with "alg": "EdDSA".
func Ed25519JWK(pub ed25519.PublicKey, kid string) string {
	return string(MustJSON(map[string]any{"kty": "OKP", "crv": "Ed25519", "x": Base64URL(pub), "kid": kid, "alg": "EdDSA"}))
}

// UnusableJWKs are keys a verifier cannot use, by kid (which each JWK
// carries): bad-x25519 (an X25519 key), bad-rsa1024 (RSA, 1024 bits),
// bad-kty (an unknown kty), bad-enc (P-256 with "use": "enc") and
// bad-curve (secp256k1).
func UnusableJWKs(t testing.TB) map[string]string {
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
	x32 := Base64URL(make([]byte, 32))
	return map[string]string{
		"bad-x25519": `{"kty":"OKP","crv":"X25519","x":"` + x32 + `","kid":"bad-x25519"}`,
		"bad-rsa1024": string(MustJSON(map[string]any{"kty": "RSA", "kid": "bad-rsa1024",
			"n": Base64URL(rsa1024.N.Bytes()), "e": Base64URL(big.NewInt(int64(rsa1024.E)).Bytes())})),
		"bad-kty": `{"kty":"XYZ","kid":"bad-kty","x":"` + x32 + `"}`,
		"bad-enc": string(MustJSON(map[string]any{"kty": "EC", "crv": "P-256", "kid": "bad-enc", "use": "enc",
			"x": Base64URL(raw[1:33]), "y": Base64URL(raw[33:])})),
		"bad-curve": `{"kty":"EC","crv":"secp256k1","kid":"bad-curve","x":"` + x32 + `","y":"` + x32 + `"}`,
	}
}
