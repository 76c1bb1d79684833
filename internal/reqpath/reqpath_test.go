package reqpath

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want Problem
	}{
		{"/", None},
		{"", None},
		{"*", None},
		{"/nl-query/a.b", None},
		{"/nl-query/%41", None},
		{"/nl-query/...", None},
		{"/nl-query/.hidden", None},
		{"/a/", None},
		{"/a%20b/%3F/%25", None},
		{"/a;x=1/b", None},
		{"/nl-query/..%2Fhealthz", EncodedSlash},
		{"/nl-query/..%2fhealthz", EncodedSlash},
		{"/a%5Cb", EncodedSlash},
		{"/a%5cb", EncodedSlash},
		{`/a\b`, Backslash},
		{"/a%00", ControlByte},
		{"/a%1f", ControlByte},
		{"/a%7F", ControlByte},
		{"/a\x01", ControlByte},
		{"/a%", BadEscape},
		{"/a%4", BadEscape},
		{"/a%zz", BadEscape},
		{"/nl-query/../healthz", DotSegment},
		{"/nl-query/./x", DotSegment},
		{"/nl-query/..", DotSegment},
		{"/nl-query/.", DotSegment},
		{"/nl-query/%2e%2e/healthz", DotSegment},
		{"/nl-query/%2E%2E/healthz", DotSegment},
		{"/nl-query/.%2E/healthz", DotSegment},
		{"/nl-query/%2e./healthz", DotSegment},
		{"/nl-query/%2e/x", DotSegment},
		{"/nl-query/..;/healthz", DotSegment},
		{"/nl-query/..;jsessionid=1/healthz", DotSegment},
		{"//healthz", EmptySegment},
		{"/nl-query//x", EmptySegment},
	} {
		if got := Check(tc.raw); got != tc.want {
			t.Errorf("Check(%q) = %v, want %v", tc.raw, got, tc.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		raw, want string
		ok        bool
	}{
		{"/nl-query/a.b", "/nl-query/a.b", true},
		{"/nl-query/%41", "/nl-query/%41", true}, // not ambiguous: passed on as sent
		{"/nl-query/..%2Fhealthz", "/healthz", true},
		{"/nl-query/%2e%2e%2fhealthz", "/healthz", true},
		{"/nl-query/%2E%2E%2Fschema", "/schema", true},
		{`/nl-query\..\healthz`, "/healthz", true},
		{"/nl-query/..%5chealthz", "/healthz", true},
		{"//nl-query///x/", "/nl-query/x/", true},
		{"/nl-query/./x", "/nl-query/x", true},
		{"/a/%41%7e/../b%3f%2b", "/a/b%3F%2B", true},
		{"/..%2F..%2F..", "/", true},
		{"/a/b/../", "/a/", true},
		{"/a%00/../b", "", false},
		{"/a/..;/b/./c", "", false},
		{"/a/%zz/./b", "", false},
	} {
		got, ok := Normalize(tc.raw)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Normalize(%q) = %q, %v; want %q, %v", tc.raw, got, ok, tc.want, tc.ok)
		}
	}
}

func TestCheckAllocatesNothing(t *testing.T) {
	raw := "/nl-query/some/ordinary/path%20with%20spaces/a.b"
	if n := testing.AllocsPerRun(100, func() { Check(raw) }); n != 0 {
		t.Fatalf("Check allocates %v times", n)
	}
}

// FuzzNormalize: whatever comes in, what Normalize lets out is accepted by
// Check, is a fixed point, and reads the same decoded whole or by segment,
// before and after cleaning.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"/", "/nl-query/..%2Fhealthz", "/a/%2e%2e/b", `/a\b`, "//x//y/", "/a;b/..;c/d", "/%41%2f%5C%00", "/a/./b/../c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		out, ok := Normalize(raw)
		if !ok {
			return
		}
		if p := Check(out); p != None {
			t.Fatalf("Normalize(%q) = %q, which has a %v", raw, out, p)
		}
		if again, _ := Normalize(out); again != out {
			t.Fatalf("Normalize not idempotent: %q -> %q -> %q", raw, out, again)
		}
		assertUnambiguous(t, out)
	})
}

// FuzzCheck: every path Check accepts decodes the same whole and by
// segment, and cleaning does not change it.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/a%2Fb", "/a/%2e%2E/b", "/%41/", "/a..b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if Check(raw) != None {
			return
		}
		assertUnambiguous(t, raw)
	})
}

func assertUnambiguous(t *testing.T, raw string) {
	t.Helper()
	whole, err := url.PathUnescape(raw)
	if err != nil {
		t.Fatalf("%q accepted but does not decode: %v", raw, err)
	}
	segs := strings.Split(raw, "/")
	for i, s := range segs {
		if segs[i], err = url.PathUnescape(s); err != nil {
			t.Fatal(err)
		}
	}
	if bySeg := strings.Join(segs, "/"); bySeg != whole {
		t.Fatalf("%q decodes to %q whole but %q by segment", raw, whole, bySeg)
	}
	if strings.HasPrefix(whole, "/") {
		clean := path.Clean(whole)
		if clean != "/" && strings.HasSuffix(whole, "/") {
			clean += "/"
		}
		if clean != whole {
			t.Fatalf("%q decodes to %q, which cleans to %q", raw, whole, clean)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	raw := "/nl-query/tables/orders/summary%20by%20month"
	b.ReportAllocs()
	for b.Loop() {
		Check(raw)
	}
}
