package revocation

import (
	"strconv"
	"strings"
	"testing"
)

// formatRevocationLine writes an entry as a revocation-file line.
func formatRevocationLine(e Entry) string {
	if e.JTI != "" {
		return e.JTI
	}
	line := "sub:" + e.Sub
	if e.Before != nil {
		line += " " + strconv.FormatInt(*e.Before, 10)
	}
	return line
}

// Subjects may hold spaces (mTLS `cn:` identities do); the last field is the
// time only when it is all digits.
func TestParseRevocationFileSubjectsWithSpaces(t *testing.T) {
	for _, tc := range []struct{ line, want, bad string }{
		{line: "sub:cn:Service BI", want: "sub:cn:Service BI"},
		{line: "sub:cn:Service BI 1796000000", want: "sub:cn:Service BI 1796000000"},
		{line: "  sub:cn:Service BI\t1796000000  # rotated", want: "sub:cn:Service BI 1796000000"},
		{line: "sub:cn:Service BI # comment", want: "sub:cn:Service BI"},
		{line: "sub:cn:Service  Two  Spaces", want: "sub:cn:Service  Two  Spaces"},
		{line: "sub:cn:Team 7 1796000000", want: "sub:cn:Team 7 1796000000"},
		{line: "sub:12345", want: "sub:12345"},
		{line: "sub:cn:Service BI 0", bad: "unix seconds"},
		{line: "sub:cn:Service BI 99999999999999999999", bad: "unix seconds"},
		{line: "sub: cn:Service BI", bad: "subject"},
		{line: "sub:", bad: "empty subject"},
		{line: "jti with spaces", bad: "one jti per line"},
		{line: "# sub:cn:Service BI"},
		{line: "   # only a comment"},
	} {
		list, bad, err := ParseFile(strings.NewReader(tc.line + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case tc.bad != "":
			if len(list) != 0 || len(bad) != 1 || !strings.Contains(bad[0].Problem, tc.bad) {
				t.Errorf("%q: entries %+v, bad %+v; want one problem saying %q", tc.line, list, bad, tc.bad)
			}
		case tc.want == "":
			if len(list) != 0 || len(bad) != 0 {
				t.Errorf("%q: entries %+v, bad %+v; want nothing", tc.line, list, bad)
			}
		default:
			if len(bad) != 0 || len(list) != 1 || formatRevocationLine(list[0]) != tc.want {
				t.Errorf("%q: entries %+v, bad %+v; want %q", tc.line, list, bad, tc.want)
			}
		}
	}
}

// FuzzParseRevocationFile: no panic; every entry comes from a line that is
// not a comment, has a subject or a jti, and reads back the same when
// written as a line; the file parses as its lines do one by one.
func FuzzParseRevocationFile(f *testing.F) {
	for _, s := range []string{
		"jti-1\nsub:svc\nsub:svc 1796000000\n",
		"sub:cn:Service BI 1796000000 # rotated\n# comment\n  \t# indented\n",
		"sub:cn:Team 7\nsub:x 1 2\nsub: x\nsub:\nodd#jti\r\n\v#x\n",
		"sub:a\u00a012\nsub:\u0085x\nsub:a\xff 3\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, content string) {
		list, bad, err := ParseFile(strings.NewReader(content))
		if err != nil {
			return // a line over the scanner's limit
		}
		var perLine []Entry
		nBad := 0
		for _, line := range strings.Split(content, "\n") {
			line = strings.TrimSuffix(line, "\r")
			l, b, err := ParseFile(strings.NewReader(line))
			if err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			if trimmed := strings.TrimLeft(line, " \t"); (trimmed == "" || trimmed[0] == '#') && len(l)+len(b) != 0 {
				t.Fatalf("comment-only line %q gave %+v %+v", line, l, b)
			}
			perLine = append(perLine, l...)
			nBad += len(b)
		}
		if len(list) != len(perLine) || len(bad) != nBad {
			t.Fatalf("file: %d entries %d bad; line by line: %d entries %d bad", len(list), len(bad), len(perLine), nBad)
		}
		for i, e := range list {
			if (e.JTI == "") == (e.Sub == "") || e.Source != "file" || e.Expires != 0 {
				t.Fatalf("entry %+v", e)
			}
			if e.JTI != "" && e.Before != nil {
				t.Fatalf("jti with a time: %+v", e)
			}
			line := formatRevocationLine(e)
			again, b, err := ParseFile(strings.NewReader(line))
			if err != nil || len(b) != 0 || len(again) != 1 || !sameRevocationEntry(again[0], e) || !sameRevocationEntry(e, perLine[i]) {
				t.Fatalf("entry %+v written as %q reads back as %+v %+v %v", e, line, again, b, err)
			}
		}
	})
}

func sameRevocationEntry(a, b Entry) bool {
	if a.JTI != b.JTI || a.Sub != b.Sub || a.Exp != b.Exp || a.Source != b.Source || (a.Before == nil) != (b.Before == nil) {
		return false
	}
	return a.Before == nil || *a.Before == *b.Before
}
