package sechard

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The CLI tests run the built binary and check its output with the standard
// library only: no code from command.go (or golang-jwt) verifies it.

// rfc7638 computes a thumbprint by hand: the required members of the key
// type, in lexicographic order, no whitespace (RFC 7638 section 3.2; OKP
// members from RFC 8037 section 2).
func rfc7638(k testJWK) string {
	var canonical string
	switch k.Kty {
	case "EC":
		canonical = `{"crv":"` + k.Crv + `","kty":"EC","x":"` + k.X + `","y":"` + k.Y + `"}`
	case "OKP":
		canonical = `{"crv":"` + k.Crv + `","kty":"OKP","x":"` + k.X + `"}`
	case "RSA":
		canonical = `{"e":"` + k.E + `","kty":"RSA","n":"` + k.N + `"}`
	}
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func readPublicKey(t *testing.T, name string) crypto.PublicKey {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" || len(strings.TrimSpace(string(rest))) != 0 {
		t.Fatalf("%s is not one PKIX PUBLIC KEY PEM block", name)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func b64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64url %q: %v", s, err)
	}
	return b
}

func TestCLIKeygenWritesKeysAndJWKS(t *testing.T) {
	for _, tc := range []struct{ alg, kty, crv string }{
		{"ES256", "EC", "P-256"},
		{"EdDSA", "OKP", "Ed25519"},
		{"RS256", "RSA", ""},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			priv, pubFile, jwk := keygen(t, tc.alg)
			fi, err := os.Stat(priv)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s mode %v, want 0600", priv, fi.Mode().Perm())
			}
			data, _ := os.ReadFile(priv)
			block, _ := pem.Decode(data)
			if block == nil || block.Type != "PRIVATE KEY" {
				t.Fatal("private key is not a PKCS#8 PRIVATE KEY PEM block")
			}
			key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			pub := readPublicKey(t, pubFile)
			if !key.(interface{ Public() crypto.PublicKey }).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
				t.Fatal("key.pub.pem is not the public half of key.pem")
			}

			if jwk.Kty != tc.kty || jwk.Crv != tc.crv || jwk.Alg != tc.alg || jwk.Use != "sig" {
				t.Errorf("JWK kty %q crv %q alg %q use %q", jwk.Kty, jwk.Crv, jwk.Alg, jwk.Use)
			}
			// The JWK's members are the public key's.
			switch k := pub.(type) {
			case *ecdsa.PublicKey:
				x, y := new(big.Int).SetBytes(b64(t, jwk.X)), new(big.Int).SetBytes(b64(t, jwk.Y))
				want, _ := k.Bytes()
				if len(b64(t, jwk.X)) != 32 || len(b64(t, jwk.Y)) != 32 ||
					string(append(append([]byte{4}, x.FillBytes(make([]byte, 32))...), y.FillBytes(make([]byte, 32))...)) != string(want) {
					t.Error("JWK x/y are not the key's coordinates (32 bytes each)")
				}
			case ed25519.PublicKey:
				if string(b64(t, jwk.X)) != string(k) {
					t.Error("JWK x is not the Ed25519 key")
				}
			case *rsa.PublicKey:
				if new(big.Int).SetBytes(b64(t, jwk.N)).Cmp(k.N) != 0 || new(big.Int).SetBytes(b64(t, jwk.E)).Int64() != int64(k.E) {
					t.Error("JWK n/e are not the RSA key's")
				}
				if k.N.BitLen() < 2048 {
					t.Errorf("RSA key has %d bits", k.N.BitLen())
				}
			}
			if want := rfc7638(jwk); jwk.Kid != want {
				t.Errorf("kid %q, want the RFC 7638 thumbprint %q", jwk.Kid, want)
			}

			// Never overwrites a key.
			before, _ := os.ReadFile(priv)
			if out, err := runCaddy(t, nil, "sechard", "keygen", "--alg", tc.alg, "--out", priv); err == nil {
				t.Errorf("keygen over an existing key succeeded:\n%s", out)
			}
			if after, _ := os.ReadFile(priv); string(after) != string(before) {
				t.Error("the existing key was changed")
			}
		})
	}
	if out, err := runCaddy(t, nil, "sechard", "keygen", "--alg", "HS256", "--out", filepath.Join(t.TempDir(), "k.pem")); err == nil ||
		!strings.Contains(out, "ES256, EdDSA or RS256") {
		t.Errorf("keygen --alg HS256: %v\n%s", err, out)
	}
}

func TestCLITokenVerifiesIndependently(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			priv, pubFile, jwk := keygen(t, alg)
			pub := readPublicKey(t, pubFile)
			start := time.Now().Unix()
			out, err := runCaddy(t, nil, "sechard", "token", "--key", priv, "--sub", "service-bi",
				"--scopes", "nl-query:read, schema:read", "--ttl", "3m", "--iss", "https://auth.internal", "--aud", "nl-query-api")
			if err != nil {
				t.Fatalf("token: %v\n%s", err, out)
			}
			token := strings.TrimSpace(out)
			parts := strings.Split(token, ".")
			if len(parts) != 3 {
				t.Fatalf("not a compact JWS: %q", token)
			}
			var header map[string]any
			if err := json.Unmarshal(b64(t, parts[0]), &header); err != nil {
				t.Fatal(err)
			}
			if header["alg"] != alg || header["kid"] != jwk.Kid || header["typ"] != "JWT" {
				t.Errorf("header %v: want alg %s, kid %s (the thumbprint), typ JWT", header, alg, jwk.Kid)
			}
			for _, h := range []string{"jku", "jwk", "x5u", "x5c", "crit"} {
				if _, ok := header[h]; ok {
					t.Errorf("header carries %q", h)
				}
			}

			// The signature, checked with crypto/* directly.
			signed := []byte(parts[0] + "." + parts[1])
			sig := b64(t, parts[2])
			digest := sha256.Sum256(signed)
			var ok bool
			switch k := pub.(type) {
			case *ecdsa.PublicKey: // JWS ES256: R || S, 32 bytes each (RFC 7518 section 3.4)
				ok = len(sig) == 64 && ecdsa.Verify(k, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
			case ed25519.PublicKey:
				ok = ed25519.Verify(k, signed, sig)
			case *rsa.PublicKey:
				ok = rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) == nil
			}
			if !ok {
				t.Fatal("signature does not verify with key.pub.pem")
			}
			tampered := []byte(parts[0] + "." + parts[1] + "x")
			if d := sha256.Sum256(tampered); alg == "RS256" && rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, d[:], sig) == nil {
				t.Fatal("the verifier accepts anything")
			}

			var claims struct {
				Sub    string   `json:"sub"`
				Iss    string   `json:"iss"`
				Aud    any      `json:"aud"`
				Scopes []string `json:"scopes"`
				Iat    *int64   `json:"iat"`
				Exp    *int64   `json:"exp"`
				JTI    string   `json:"jti"`
			}
			if err := json.Unmarshal(b64(t, parts[1]), &claims); err != nil {
				t.Fatal(err)
			}
			if claims.Sub != "service-bi" || claims.Iss != "https://auth.internal" {
				t.Errorf("sub %q iss %q", claims.Sub, claims.Iss)
			}
			if fmt.Sprint(claims.Aud) != "[nl-query-api]" && claims.Aud != "nl-query-api" {
				t.Errorf("aud %v", claims.Aud)
			}
			if fmt.Sprint(claims.Scopes) != "[nl-query:read schema:read]" {
				t.Errorf("scopes %q", claims.Scopes)
			}
			if claims.Iat == nil || claims.Exp == nil {
				t.Fatal("iat or exp missing")
			}
			if *claims.Iat < start-1 || *claims.Iat > time.Now().Unix()+1 {
				t.Errorf("iat %d is not now (%d)", *claims.Iat, start)
			}
			if *claims.Exp-*claims.Iat != 180 {
				t.Errorf("exp - iat = %d, want 180 (--ttl 3m)", *claims.Exp-*claims.Iat)
			}
			if raw := b64(t, claims.JTI); len(raw) != 16 {
				t.Errorf("jti %q decodes to %d bytes, want 16 (128 bits)", claims.JTI, len(raw))
			}

			// Two tokens never share a jti.
			out2, err := runCaddy(t, nil, "sechard", "token", "--key", priv, "--sub", "service-bi")
			if err != nil {
				t.Fatal(err)
			}
			var c2 struct {
				JTI    string   `json:"jti"`
				Scopes []string `json:"scopes"`
			}
			json.Unmarshal(b64(t, strings.Split(strings.TrimSpace(out2), ".")[1]), &c2)
			if c2.JTI == claims.JTI || c2.JTI == "" {
				t.Errorf("second token jti %q, first %q", c2.JTI, claims.JTI)
			}
		})
	}
}

func TestCLITokenKidAndErrors(t *testing.T) {
	priv, _, _ := keygen(t, "ES256")
	out, err := runCaddy(t, nil, "sechard", "token", "--key", priv, "--sub", "s", "--kid", "2026-11")
	if err != nil {
		t.Fatal(err, out)
	}
	var header map[string]any
	json.Unmarshal(b64(t, strings.Split(strings.TrimSpace(out), ".")[0]), &header)
	if header["kid"] != "2026-11" {
		t.Errorf("--kid: header kid %v", header["kid"])
	}
	for name, args := range map[string][]string{
		"no sub":      {"--key", priv},
		"no key":      {"--sub", "s"},
		"missing key": {"--key", priv + ".absent", "--sub", "s"},
		"public key":  {"--key", strings.TrimSuffix(priv, ".pem") + ".pub.pem", "--sub", "s"},
		"zero ttl":    {"--key", priv, "--sub", "s", "--ttl", "0s"},
	} {
		if out, err := runCaddy(t, nil, append([]string{"sechard", "token"}, args...)...); err == nil {
			t.Errorf("%s: succeeded:\n%s", name, out)
		}
	}
}

func TestCLIRevokePostsToTheAdminAPI(t *testing.T) {
	addr := startInProcessAdmin(t)
	env, _ := newTestEnv(t)
	rv := provisionRevocation(t, env, &Revocation{})
	now := time.Now()

	out, err := runCaddy(t, nil, "sechard", "revoke", "--address", addr, "--jti", "cli-jti", "--exp", fmt.Sprint(now.Unix()+300))
	if err != nil {
		t.Fatalf("revoke --jti: %v\n%s", err, out)
	}
	if !rv.revoked("cli-jti", "", now) {
		t.Fatalf("the running list does not honour the CLI's revocation; output:\n%s", out)
	}

	// --token: jti and exp read from a token the operator holds.
	priv, _, _ := keygen(t, "EdDSA")
	tok, err := runCaddy(t, nil, "sechard", "token", "--key", priv, "--sub", "leaky")
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		JTI string `json:"jti"`
	}
	json.Unmarshal(b64(t, strings.Split(strings.TrimSpace(tok), ".")[1]), &claims)
	if out, err := runCaddy(t, nil, "sechard", "revoke", "--address", addr, "--token", strings.TrimSpace(tok)); err != nil {
		t.Fatalf("revoke --token: %v\n%s", err, out)
	}
	if !rv.revoked(claims.JTI, "", now) {
		t.Fatal("--token did not revoke the token's jti")
	}

	// --sub with and without --before.
	if out, err := runCaddy(t, nil, "sechard", "revoke", "--address", addr, "--sub", "cli-client", "--before", fmt.Sprint(now.Unix())); err != nil {
		t.Fatalf("revoke --sub: %v\n%s", err, out)
	}
	if !rv.revoked("x", "cli-client", now.Add(-time.Second)) || rv.revoked("x", "cli-client", now.Add(time.Second)) {
		t.Fatal("--sub --before not honoured exactly")
	}
	if out, err := runCaddy(t, nil, "sechard", "revoke", "--address", addr, "--sub", "cli-client-2"); err != nil {
		t.Fatalf("revoke --sub: %v\n%s", err, out)
	}
	if !rv.revoked("x", "cli-client-2", now.Add(-time.Second)) {
		t.Fatal("--sub without --before does not revoke tokens issued until now")
	}

	for name, args := range map[string][]string{
		"nothing":          {},
		"jti without exp":  {"--jti", "x"},
		"jti and sub":      {"--jti", "x", "--exp", "9999999999", "--sub", "y"},
		"token not a jwt":  {"--token", "nope"},
		"server says no":   {"--jti", "x", "--exp", "1"},
		"no admin there":   {"--jti", "x", "--exp", "9999999999", "--address", fmt.Sprintf("127.0.0.1:%d", freePort(t))},
		"default unlisted": {"--jti", "x", "--exp", "9999999999", "--address", ""},
	} {
		full := append([]string{"sechard", "revoke"}, args...)
		if !strings.Contains(strings.Join(args, " "), "--address") {
			full = append(full, "--address", addr)
		}
		env := []string{"CADDY_ADMIN=127.0.0.1:" + fmt.Sprint(freePort(t))} // never a real local Caddy
		if out, err := runCaddy(t, env, full...); err == nil {
			t.Errorf("%s: succeeded:\n%s", name, out)
		}
	}
}

func TestCLIRevokeReachesARealCaddy(t *testing.T) {
	// The binary's admin endpoint has sechard's admin module loaded. Until
	// the auth stage provisions a revocation list, it answers 409.
	s := startCaddy(t, "http://127.0.0.1:{PORT} {\n\tsechard\n\trespond ok\n}")
	out, err := runCaddy(t, nil, "sechard", "revoke", "--address", s.AdminAddr, "--jti", "x", "--exp", fmt.Sprint(time.Now().Unix()+60))
	if err == nil || !strings.Contains(out, "HTTP 409") || !strings.Contains(out, "no revocation list is configured") {
		t.Fatalf("revoke against a Caddy without a revocation list: %v\n%s", err, out)
	}
	// And CADDY_ADMIN names the default address, as for Caddy's own commands.
	out, err = runCaddy(t, []string{"CADDY_ADMIN=" + s.AdminAddr}, "sechard", "revoke", "--jti", "x", "--exp", fmt.Sprint(time.Now().Unix()+60))
	if err == nil || !strings.Contains(out, "HTTP 409") {
		t.Fatalf("revoke with CADDY_ADMIN: %v\n%s", err, out)
	}
	resp, err := noRedirectClient.Get("http://" + s.AdminAddr + "/sechard/revocations")
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(resp)
	if resp.StatusCode != 200 || strings.TrimSpace(body) != `{"instances":0,"revocations":[]}` {
		t.Fatalf("GET: %d %s", resp.StatusCode, body)
	}
}
