package corsparse

import (
	"strings"
	"testing"
	"time"
)

var testAllowed = map[string]struct{}{
	"authorization": {}, "content-type": {}, "x-api-key": {}, "x-request-id": {},
}

func TestCheckHeaderList(t *testing.T) {
	for _, tc := range []struct {
		list string
		ok   bool
		bad  string
	}{
		{"", true, ""},
		{"authorization", true, ""},
		{"authorization,content-type,x-request-id", true, ""},
		{"Authorization, Content-Type ,\tX-Request-ID", true, ""},
		{"AUTHORIZATION", true, ""},
		{",,authorization,,", true, ""},
		{" , ", true, ""},
		{"authorization,x-evil", false, "x-evil"},
		{"x-api-key-2", false, "x-api-key-2"},
		{"x-api", false, "x-api"},
		{"authorization content-type", false, "authorization content-type"},
		{"cookie", false, "cookie"},
		{"\u212aey", false, "\u212aey"}, // Kelvin sign: not folded to k
		{strings.Repeat("a", MaxNameBytes+1), false, strings.Repeat("a", MaxNameBytes+1)},
		{strings.Repeat(",", MaxListBytes+1), false, ""},
		{strings.Repeat("x-api-key,", MaxListElements+1), false, ""},
		{strings.Repeat("x-api-key,", MaxListElements), true, ""},
	} {
		bad, ok := CheckHeaderList(tc.list, testAllowed)
		if ok != tc.ok || bad != tc.bad {
			name := tc.list
			if len(name) > 40 {
				name = name[:40] + "..."
			}
			t.Errorf("CheckHeaderList(%q) = %q, %v; want %q, %v", name, bad, ok, tc.bad, tc.ok)
		}
	}
}

// TestCheckHeaderListIsBounded: a megabyte of commas (rs/cors #170) is
// refused in constant time and without allocating.
func TestCheckHeaderListIsBounded(t *testing.T) {
	huge := strings.Repeat(",", 1<<20)
	start := time.Now()
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok := CheckHeaderList(huge, testAllowed); ok {
			t.Fatal("a megabyte of commas was accepted")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per call", allocs)
	}
	if el := time.Since(start); el > 100*time.Millisecond {
		t.Errorf("101 calls took %v", el)
	}
	// Just under the byte bound, all commas: scanned, but cheap and allocation-free.
	under := strings.Repeat(",", MaxListBytes)
	if allocs := testing.AllocsPerRun(100, func() { CheckHeaderList(under, testAllowed) }); allocs != 0 {
		t.Errorf("%v allocations per call", allocs)
	}
}

// naiveCheck is the obvious reference implementation, unbounded.
func naiveCheck(s string, allowed map[string]struct{}) bool {
	n := 0
	for _, e := range strings.Split(s, ",") {
		e = strings.Trim(e, " \t")
		if e == "" {
			continue
		}
		n++
		lower := []byte(e)
		for i, c := range lower {
			if c >= 'A' && c <= 'Z' {
				lower[i] = c + 32
			}
		}
		if _, ok := allowed[string(lower)]; !ok {
			return false
		}
	}
	return n <= MaxListElements
}

// FuzzCheckHeaderList compares CheckHeaderList with the naive reference
// within the bounds, and checks it never accepts anything beyond them.
func FuzzCheckHeaderList(f *testing.F) {
	for _, s := range []string{
		"", "authorization", "Authorization, Content-Type", ",,,", "x-evil", "a,b,c",
		"authorization,x-request-id,content-type", " \tx-api-key\t ", strings.Repeat(",", 5000),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		bad, ok := CheckHeaderList(s, testAllowed)
		if len(s) > MaxListBytes {
			if ok {
				t.Fatalf("accepted a %d-byte list", len(s))
			}
			return
		}
		if want := naiveCheck(s, testAllowed); ok != want {
			t.Fatalf("CheckHeaderList(%q) = %v (bad %q), reference says %v", s, ok, bad, want)
		}
		if ok && bad != "" || !ok && bad != "" && !strings.Contains(s, bad) {
			t.Fatalf("CheckHeaderList(%q) = %q, %v", s, bad, ok)
		}
	})
}

func BenchmarkCheckHeaderList(b *testing.B) {
	for name, s := range map[string]string{
		"browser":       "authorization,content-type,x-request-id",
		"megabyte":      strings.Repeat(",", 1<<20),
		"maxlen_commas": strings.Repeat(",", MaxListBytes),
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				CheckHeaderList(s, testAllowed)
			}
		})
	}
}
