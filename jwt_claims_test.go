package sechard

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Claim names are matched exactly, and names differing only in case are
// duplicates: encoding/json would match them case-insensitively, last one
// winning.
func TestVerifierClaimNamesExactAndCaseDuplicates(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Unix(1_800_000_000, 0)
	v, err := (&JWT{PublicKeys: []PublicKey{{File: ti.pemPath("es256"), KID: "es256"}}}).newVerifier(authTestEnv(t, func() time.Time { return now }, nil))
	if err != nil {
		t.Fatal(err)
	}
	s := func(over map[string]any) string { return ti.sign("es256", testClaims(now, over), nil) }
	for name, over := range map[string]map[string]any{
		"sub and SUB":       {"SUB": "admin"},
		"scopes and Scopes": {"Scopes": []string{"admin:write"}},
		"sub and ſub":       {"ſub": "admin"}, // U+017F folds to s
		"exp and Exp":       {"Exp": now.Add(time.Hour).Unix()},
	} {
		if _, err := v.verify(s(over), now); !errors.Is(err, errTokenDuplicate) {
			t.Errorf("%s: want %v, got %v", name, errTokenDuplicate, err)
		}
	}
	// Alone, a case variant is just an unknown claim.
	id, err := v.verify(s(map[string]any{"sub": nil, "SUB": "admin", "scopes": nil, "Scopes": []string{"admin:write"}}), now)
	if err != nil {
		t.Fatal(err)
	}
	if id.subject != "" || id.has("admin:write") {
		t.Fatalf("SUB/Scopes read as sub/scopes: subject %q scopes %q", id.subject, id.joined)
	}
	if _, err := v.verify(s(map[string]any{"exp": nil, "EXP": now.Add(time.Minute).Unix()}), now); !errors.Is(err, errTokenNoExp) {
		t.Fatalf("EXP alone: want %v, got %v", errTokenNoExp, err)
	}
}

func TestCheckJSONObjectRejectsCaseVariants(t *testing.T) {
	for in, want := range map[string]error{
		`{"sub":"a","SUB":"b"}`:             errDuplicateKey,
		`{"a":{"x5t#S256":1,"X5T#s256":2}}`: errDuplicateKey,
		`{"k":1,"\u212a":2}`:                errDuplicateKey, // Kelvin sign
		`{"a":{"b":1},"B":{"a":1}}`:         nil,
		`{"sub":"a","sup":"b"}`:             nil,
	} {
		if err := checkJSONObject([]byte(in)); !errors.Is(err, want) {
			t.Errorf("%q: want %v, got %v", in, want, err)
		}
	}
}

// RFC 7519 NumericDate is a JSON number; a string is a malformed token.
func TestVerifierNumericDatesMustBeNumbers(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Unix(1_800_000_000, 0)
	v, err := (&JWT{PublicKeys: []PublicKey{{File: ti.pemPath("es256"), KID: "es256"}}}).newVerifier(authTestEnv(t, func() time.Time { return now }, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, claim := range []string{"exp", "iat", "nbf"} {
		val := testClaims(now, nil)["iat"].(int64)
		if claim == "exp" {
			val += 60
		}
		tok := ti.sign("es256", testClaims(now, map[string]any{claim: strconv.FormatInt(val, 10)}), nil)
		if _, err := v.verify(tok, now); !errors.Is(err, errTokenMalformed) {
			t.Errorf("%s as a string: want %v, got %v", claim, errTokenMalformed, err)
		}
	}
	// Numbers, including fractions, still pass.
	if _, err := v.verify(ti.sign("es256", testClaims(now, map[string]any{"nbf": float64(now.Unix()) - 0.5}), nil), now); err != nil {
		t.Fatalf("numeric nbf: %v", err)
	}
}

func TestAuthClaimFormsEndToEnd(t *testing.T) {
	ti := newTestIssuer(t)
	s := startCaddy(t, `http://127.0.0.1:{PORT} {
	sechard {
		auth {
			`+ti.jwtBlock("")+`
		}
	}
	respond "ok"
}`)
	now := time.Now()
	for name, over := range map[string]map[string]any{
		"exp as a string": {"exp": strconv.FormatInt(now.Add(time.Minute).Unix(), 10)},
		"iat as a string": {"iat": strconv.FormatInt(now.Unix(), 10)},
		"sub and SUB":     {"SUB": "admin"},
	} {
		resp := s.Get("/", "Authorization", "Bearer "+ti.sign("es256", testClaims(now, over), nil))
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s: %d %s", name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if resp := s.Get("/", "Authorization", "Bearer "+ti.sign("es256", testClaims(now, nil), nil)); resp.StatusCode != 200 {
		t.Fatalf("valid token: %d", resp.StatusCode)
	}
}
