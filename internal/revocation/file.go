package revocation

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// BadLine is a malformed line of a revocation file.
type BadLine struct {
	Line    int // from 1
	Problem string
}

// ParseFile parses the file format: `<jti>`, `sub:<subject>` or
// `sub:<subject> <unix seconds>`, with `#` comments. Entries come with
// Source "file"; malformed lines are returned apart, the rest applies.
func ParseFile(r io.Reader) ([]Entry, []BadLine, error) {
	var list []Entry
	var bad []BadLine
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := commentStart(line); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		e, problem := parseLine(line)
		if problem != "" {
			bad = append(bad, BadLine{n, problem})
			continue
		}
		e.Source = "file"
		list = append(list, e)
	}
	return list, bad, sc.Err()
}

// commentStart returns where a comment begins: a '#' at the start of the
// line or after whitespace; -1 if none. Whitespace is what TrimSpace trims,
// so a '#' that starts a trimmed entry is always a comment.
func commentStart(line string) int {
	for i, c := range line {
		if c == '#' {
			if prev, _ := utf8.DecodeLastRuneInString(line[:i]); i == 0 || unicode.IsSpace(prev) {
				return i
			}
		}
	}
	return -1
}

// parseLine parses a trimmed line without its comment. Subjects may hold
// spaces (mTLS `cn:` names do): the last field is the time only when it is
// all digits, and only after a subject.
func parseLine(line string) (Entry, string) {
	sub, isSub := strings.CutPrefix(line, "sub:")
	if !isSub {
		if strings.ContainsFunc(line, unicode.IsSpace) {
			return Entry{}, "want one jti per line, or sub:<subject> [<unix seconds>]"
		}
		return Entry{JTI: line}, ""
	}
	if sub == "" {
		return Entry{}, "empty subject after sub:"
	}
	if first, _ := utf8.DecodeRuneInString(sub); unicode.IsSpace(first) {
		return Entry{}, "the subject must follow sub: without a space"
	}
	i := strings.LastIndexFunc(sub, unicode.IsSpace)
	if i < 0 {
		return Entry{Sub: sub}, ""
	}
	_, size := utf8.DecodeRuneInString(sub[i:])
	last := sub[i+size:]
	if strings.ContainsFunc(last, func(r rune) bool { return r < '0' || r > '9' }) {
		return Entry{Sub: sub}, ""
	}
	before, err := strconv.ParseInt(last, 10, 64)
	if err != nil || before <= 0 {
		return Entry{}, "the time after the subject must be unix seconds"
	}
	return Entry{Sub: strings.TrimRightFunc(sub[:i], unicode.IsSpace), Before: &before}, ""
}
