package corsparse

// Bounds on an Access-Control-Request-Headers list. Browsers send the
// non-safelisted header names of one request, lower-cased, sorted and
// deduplicated (Fetch §4.8 "CORS-preflight fetch"), so real lists are a few
// dozen bytes. Longer lists are refused, which keeps a preflight's cost
// constant whatever its size (rs/cors #170, golang/vulndb#2883).
const (
	MaxListBytes    = 4096
	MaxListElements = 64
)

// MaxNameBytes is the longest header name CheckHeaderList can match.
const MaxNameBytes = 128

// CheckHeaderList reports whether every element of the comma-separated list
// s is a key of allowed (whose keys must be lower-case). Names compare
// case-insensitively (ASCII); optional whitespace (SP, HTAB) around elements
// and empty elements are ignored (RFC 9110 §5.6.1). When it returns false,
// bad is the first element not allowed, or "" when the list broke a bound.
// It never allocates and reads at most MaxListBytes bytes.
func CheckHeaderList(s string, allowed map[string]struct{}) (bad string, ok bool) {
	if len(s) > MaxListBytes {
		return "", false
	}
	var buf [MaxNameBytes]byte
	elems := 0
	for len(s) > 0 {
		var elem string
		i := 0
		for i < len(s) && s[i] != ',' {
			i++
		}
		elem, s = s[:i], s[min(i+1, len(s)):]
		elem = trimOWS(elem)
		if elem == "" {
			continue
		}
		if elems++; elems > MaxListElements {
			return "", false
		}
		if len(elem) > MaxNameBytes {
			return elem, false
		}
		n := copy(buf[:], elem)
		for j := 0; j < n; j++ {
			if c := buf[j]; c >= 'A' && c <= 'Z' {
				buf[j] = c + ('a' - 'A')
			}
		}
		if _, found := allowed[string(buf[:n])]; !found {
			return elem, false
		}
	}
	return "", true
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// IsToken reports whether s is an RFC 9110 token (a valid field name or
// method).
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlpha(c) || c >= '0' && c <= '9' {
			continue
		}
		switch c {
		case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
			continue
		}
		return false
	}
	return true
}
