package reqpath

import (
	"path"
	"strings"
)

// Problem names what makes a raw path ambiguous; None means it is not.
type Problem uint8

const (
	None         Problem = iota
	EncodedSlash         // %2F or %5C, any case
	Backslash            // a literal "\"
	ControlByte          // an encoded or literal byte 0x00–0x1F or 0x7F
	BadEscape            // "%" not followed by two hex digits
	DotSegment           // a "." or ".." segment, plain or encoded, with or without ";params"
	EmptySegment         // "//" (an empty segment other than the trailing one)
)

var problemNames = [...]string{"none", "encoded slash", "backslash", "control byte", "malformed escape", "dot segment", "empty segment"}

// String names the problem for logs.
func (p Problem) String() string {
	if int(p) < len(problemNames) {
		return problemNames[p]
	}
	return "unknown"
}

// Check returns the first problem in raw, the escaped request path as sent
// (without the query). A raw path that does not start with "/" (the "*" of
// OPTIONS *, an empty path) has no segments and no problem unless it holds a
// forbidden byte.
func Check(raw string) Problem {
	segStart := 0
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == '/':
			if p := checkSegment(raw, segStart, i, false); p != None {
				return p
			}
			segStart = i + 1
		case c == '\\':
			return Backslash
		case c < 0x20 || c == 0x7f:
			return ControlByte
		case c == '%':
			v, ok := unhex(raw, i)
			if !ok {
				return BadEscape
			}
			switch {
			case v == '/' || v == '\\':
				return EncodedSlash
			case v < 0x20 || v == 0x7f:
				return ControlByte
			}
			i += 2
		}
	}
	return checkSegment(raw, segStart, len(raw), true)
}

// checkSegment judges raw[start:end]. The text before the first "/" is not a
// segment (start == 0) and neither is an empty last one (a trailing slash).
func checkSegment(raw string, start, end int, last bool) Problem {
	if start == 0 {
		return None
	}
	if start == end {
		if last {
			return None
		}
		return EmptySegment
	}
	if isDotSegment(raw[start:end]) {
		return DotSegment
	}
	return None
}

// isDotSegment reports whether seg, up to its first ";", is one or two dots,
// each either "." or "%2E" in any case.
func isDotSegment(seg string) bool {
	if i := strings.IndexByte(seg, ';'); i >= 0 {
		seg = seg[:i]
	}
	dots := 0
	for len(seg) > 0 {
		switch {
		case seg[0] == '.':
			seg = seg[1:]
		case len(seg) >= 3 && seg[0] == '%' && seg[1] == '2' && (seg[2] == 'e' || seg[2] == 'E'):
			seg = seg[3:]
		default:
			return false
		}
		dots++
	}
	return dots == 1 || dots == 2
}

// Normalize rewrites raw into the clean form described in the package
// documentation. It returns raw itself when Check accepts it.
func Normalize(raw string) (string, bool) {
	if Check(raw) == None {
		return raw, true
	}
	if raw == "" || raw[0] != '/' {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '\\':
			b.WriteByte('/')
		case c < 0x20 || c == 0x7f:
			return "", false
		case c == '%':
			v, ok := unhex(raw, i)
			if !ok || v < 0x20 || v == 0x7f {
				return "", false
			}
			switch {
			case v == '/' || v == '\\':
				b.WriteByte('/')
			case unreserved(v):
				b.WriteByte(v)
			default:
				b.WriteByte('%')
				b.WriteByte(upperHex[v>>4])
				b.WriteByte(upperHex[v&0xf])
			}
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	decoded := b.String()
	// Dots are literal now; a dot segment with ";params" has no clean form.
	for _, seg := range strings.Split(decoded, "/") {
		if strings.IndexByte(seg, ';') >= 0 && isDotSegment(seg) {
			return "", false
		}
	}
	clean := path.Clean(decoded)
	if clean != "/" && strings.HasSuffix(decoded, "/") {
		clean += "/"
	}
	return clean, true
}

const upperHex = "0123456789ABCDEF"

// unhex decodes the escape at raw[i] == '%'.
func unhex(raw string, i int) (byte, bool) {
	if i+2 >= len(raw) {
		return 0, false
	}
	hi, ok1 := hexVal(raw[i+1])
	lo, ok2 := hexVal(raw[i+2])
	return hi<<4 | lo, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unreserved reports RFC 3986 §2.3 unreserved characters, whose escapes
// mean the same as the characters themselves.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
