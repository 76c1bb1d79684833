package jwtverify

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sechard/sechard/internal/jwttest"
)

// testKey is the public Key of kid, as a configured static key.
func testKey(kid string) *Key {
	return &Key{KID: kid, Public: jwttest.Keys().Signers[kid].Public()}
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
		c.Algorithms = append(c.Algorithms, jwttest.Keys().Algs[kid])
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
