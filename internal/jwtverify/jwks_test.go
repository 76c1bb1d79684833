package jwtverify

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sechard/sechard/internal/jwttest"
	"go.uber.org/zap"
)

func TestParseJWKSSkipsUnusableKeys(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bad := jwttest.UnusableJWKs(t)
	set := []string{jwttest.ECP256JWK(&ec.PublicKey, "good"), jwttest.ECP256JWK(&ec.PublicKey, "")}
	for _, k := range bad {
		set = append(set, k)
	}
	keys, skipped, err := ParseJWKS([]byte(`{"keys":[` + strings.Join(set, ",") + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].KID != "good" || keys[1].KID != Thumbprint(&ec.PublicKey) {
		t.Fatalf("keys %+v", keys)
	}
	if len(skipped) != len(bad) {
		t.Fatalf("skipped %+v", skipped)
	}
	for _, s := range skipped {
		if _, ok := bad[s.KID]; !ok || set[s.Index] != bad[s.KID] || s.Reason == "" {
			t.Errorf("skipped %+v", s)
		}
	}
	if _, skipped, err := ParseJWKS([]byte(`{"keys":[` + bad["bad-x25519"] + `]}`)); err == nil || len(skipped) != 1 {
		t.Fatalf("a set of unusable keys: %v %v", err, skipped)
	}
}

// FuzzParseJWKS: no JWK Set document panics the parser, a set without a
// usable key is an error, and every key returned is one the verifier can
// use (checked independently of CheckKey).
func FuzzParseJWKS(f *testing.F) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	good, ed := jwttest.ECP256JWK(&ec.PublicKey, "good"), jwttest.Ed25519JWK(edPub, "ed")
	var bad []string
	for _, k := range jwttest.UnusableJWKs(f) {
		bad = append(bad, k)
		f.Add(`{"keys":[` + k + `]}`)
	}
	f.Add(`{"keys":[` + good + `,` + ed + `,` + strings.Join(bad, ",") + `]}`)
	f.Add(`{"keys":[` + good + `]}`)
	f.Add(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"},{"kty":"RSA","n":"AQ","e":"AQAB"}]}`)
	f.Add(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA","alg":"ES256"},` + ed + `]}`)
	f.Add(`{"keys":[{"kty":"RSA","n":7,"e":"AQAB","kid":"typed"},` + good + `]}`)
	n2048 := jwttest.Base64URL(new(big.Int).Lsh(big.NewInt(3), 2046).Bytes()) // 2048 bits, even
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	f.Add(`{"keys":[{"kty":"RSA","kid":"e1","n":"` + jwttest.Base64URL(rk.N.Bytes()) + `","e":"AQ"},{"kty":"RSA","kid":"even","n":"` + n2048 + `","e":"AQAB"},` + ed + `]}`)
	f.Add(`{"keys":{}}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, doc string) {
		keys, _, err := ParseJWKS([]byte(doc))
		if (err == nil) != (len(keys) > 0) {
			t.Fatalf("err %v with %d keys", err, len(keys))
		}
		for _, k := range keys {
			if k.KID == "" {
				t.Fatal("key without kid")
			}
			if k.Alg != "" && !slices.Contains(Algorithms, k.Alg) {
				t.Fatalf("alg %q", k.Alg)
			}
			switch pub := k.Public.(type) {
			case *rsa.PublicKey:
				if pub.N.BitLen() < 2048 || pub.N.Bit(0) == 0 || pub.E < 3 || pub.E&1 == 0 {
					t.Fatalf("unusable RSA key: %d bits, e=%d", pub.N.BitLen(), pub.E)
				}
			case *ecdsa.PublicKey:
				if pub.Curve != elliptic.P256() && pub.Curve != elliptic.P384() && pub.Curve != elliptic.P521() {
					t.Fatalf("curve %v", pub.Curve.Params().Name)
				}
				if _, err := pub.ECDH(); err != nil {
					t.Fatalf("unusable EC key: %v", err)
				}
			case ed25519.PublicKey:
				if len(pub) != ed25519.PublicKeySize {
					t.Fatalf("Ed25519 key of %d bytes", len(pub))
				}
			default:
				t.Fatalf("key type %T", pub)
			}
		}
	})
}

// A Verifier with a JWKS URL: the first fetch at New, a refetch when a
// token names an unknown kid (at most one per 30 s), and every fetch
// reported to Fetched.
func TestRemoteFetchesAndRefetchesUnknownKID(t *testing.T) {
	var mu sync.Mutex
	var hits atomic.Int32
	edPub := jwttest.Keys().Signers["ed"].Public().(ed25519.PublicKey)
	body := `{"keys":[` + jwttest.Ed25519JWK(edPub, "ed") + `]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		mu.Lock()
		defer mu.Unlock()
		w.Write([]byte(body))
	}))
	defer srv.Close()
	var fetches, failures atomic.Int32
	clock := time.Unix(1_800_000_000, 0)
	v := newTestVerifier(t, clock, func(c *Config) {
		c.Keys, c.Algorithms = nil, []string{"EdDSA", "ES256"}
		c.JWKS = &RemoteConfig{URL: srv.URL, Refresh: time.Hour, Logger: zap.NewNop(), Fetched: func(err error) {
			fetches.Add(1)
			if err != nil {
				failures.Add(1)
			}
		}}
	})
	if _, err := v.Verify(jwttest.Sign("ed", jwttest.Claims(clock, nil), nil), clock); err != nil {
		t.Fatal(err)
	}
	// A new key is published: a token naming it brings it in.
	ecPub := jwttest.Keys().Signers["es256"].Public().(*ecdsa.PublicKey)
	mu.Lock()
	body = `{"keys":[` + jwttest.Ed25519JWK(edPub, "ed") + `,` + jwttest.ECP256JWK(ecPub, "es256") + `]}`
	mu.Unlock()
	if _, err := v.Verify(jwttest.Sign("es256", jwttest.Claims(clock, nil), nil), clock); err != nil {
		t.Fatalf("token of a newly published key: %v", err)
	}
	// Within 30 s, another unknown kid causes no fetch.
	if _, err := v.Verify(jwttest.Sign("es256", jwttest.Claims(clock, nil), map[string]any{"kid": "x"}), clock); !errors.Is(err, &Error{Kind: UnknownKey}) {
		t.Fatalf("unknown kid: %v", err)
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	if fetches.Load() != 2 || failures.Load() != 0 {
		t.Fatalf("Fetched saw %d fetches, %d failures", fetches.Load(), failures.Load())
	}
	// A failed fetch keeps the last good set.
	mu.Lock()
	body = "not json"
	mu.Unlock()
	if err := v.Remote().Fetch(); err == nil || failures.Load() != 1 {
		t.Fatalf("bad set: %v, %d failures", err, failures.Load())
	}
	if _, err := v.Verify(jwttest.Sign("es256", jwttest.Claims(clock, map[string]any{"jti": "2"}), nil), clock); err != nil {
		t.Fatalf("last good set lost: %v", err)
	}
}

func TestRemoteFirstFetchFailure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	defer srv.Close()
	remote := &RemoteConfig{URL: srv.URL, Refresh: time.Hour, Logger: zap.NewNop()}
	c := Config{Algorithms: []string{"ES256"}, Now: time.Now, JWKS: remote}
	if _, err := New(t.Context(), c, testAccept); err == nil || !strings.Contains(err.Error(), "first fetch failed") {
		t.Fatalf("no other keys: %v", err)
	}
	c.Keys = []*Key{testKey("es256")}
	if _, err := New(t.Context(), c, testAccept); err != nil {
		t.Fatalf("with a static key: %v", err)
	}
}
