package jwtverify

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestCheckJSONObjectRejectsDuplicates(t *testing.T) {
	for in, want := range map[string]error{
		`{"a":1,"b":2}`:                  nil,
		`{"a":1,"a":2}`:                  errDuplicateKey,
		`{"alg":"ES256","\u0061lg":"x"}`: errDuplicateKey,
		`{"a":{"x":1,"x":2}}`:            errDuplicateKey,
		`{"a":[{"x":1},{"x":2}]}`:        nil,
		`{"a":"\"}"}`:                    nil,
		`[1]`:                            errJSONShape,
		`{"a":1}x`:                       errJSONShape,
		`{"a":1,}`:                       errJSONShape,
		`{"a"`:                           errJSONShape,
		`{"a":"` + "\x01" + `"}`:         errJSONShape,
		strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40): errJSONShape,
	} {
		if err := checkJSONObject([]byte(in)); !errors.Is(err, want) {
			t.Errorf("%q: want %v, got %v", in, want, err)
		}
	}
	// Many members: the map path.
	var b strings.Builder
	b.WriteString("{")
	for i := range 40 {
		fmt.Fprintf(&b, `"k%d":%d,`, i, i)
	}
	b.WriteString(`"k7":0}`)
	if err := checkJSONObject([]byte(b.String())); !errors.Is(err, errDuplicateKey) {
		t.Fatalf("40 members with a duplicate: %v", err)
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

// FuzzCheckJSONObject: no input panics the check, and an accepted input is
// one JSON object without a duplicate member (checked against a plain
// decode into a map, which keeps one value per name).
func FuzzCheckJSONObject(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":1,"A":2}`, `{"a":{"b":[1,{"c":2}]}}`, `{"\u0061":1,"a":2}`, `[]`, `{"a":1}{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if checkJSONObject(b) == nil && (len(b) == 0 || strings.TrimSpace(string(b))[0] != '{') {
			t.Fatalf("accepted %q", b)
		}
	})
}
