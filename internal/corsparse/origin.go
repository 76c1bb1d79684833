package corsparse

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// OriginError says why an origin allowlist entry was rejected.
type OriginError struct {
	Entry  string // the entry as configured
	Reason string // why it was rejected, for a log line or config error
}

func (e *OriginError) Error() string {
	return fmt.Sprintf("origin %q rejected: %s", e.Entry, e.Reason)
}

// MaxOriginBytes is the longest origin entry accepted: a 253-byte host name,
// "https://" and ":65535".
const MaxOriginBytes = len("https://") + 253 + len(":65535")

// ParseOrigin checks one allowlist entry and returns it normalised: scheme and
// host lower-cased, a default port (80 for http, 443 for https) dropped, one
// trailing "/" dropped. Only "http://host[:port]" and "https://host[:port]"
// are accepted; an IPv6 host is written in brackets and returned in its
// canonical form, as browsers serialise it.
func ParseOrigin(entry string) (string, error) {
	reject := func(reason string) (string, error) {
		return "", &OriginError{Entry: entry, Reason: reason}
	}
	switch {
	case entry == "":
		return reject("empty")
	case len(entry) > MaxOriginBytes+1: // +1: a trailing slash
		return reject("too long")
	case strings.Contains(entry, "*"):
		return reject("wildcards are not allowed; list each origin")
	case strings.EqualFold(entry, "null"):
		return reject(`"null" is not allowed: sandboxed documents and file: pages all send it`)
	}
	for _, c := range entry {
		if c <= ' ' || c == 0x7f || isUnicodeSpace(c) {
			return reject("contains whitespace or control characters")
		}
		if c >= 0x80 {
			return reject("non-ASCII; write an internationalised host in its xn-- (punycode) form")
		}
	}
	scheme, rest, ok := strings.Cut(entry, "://")
	if !ok {
		if s, after, hasColon := strings.Cut(entry, ":"); hasColon && isScheme(s) && !isDigits(after) &&
			!strings.EqualFold(s, "http") && !strings.EqualFold(s, "https") {
			return reject(fmt.Sprintf("scheme %q is not allowed; only http and https", strings.ToLower(s)+":"))
		}
		return reject("not of the form http(s)://host[:port]")
	}
	scheme = strings.ToLower(scheme)
	if scheme != "http" && scheme != "https" {
		return reject(fmt.Sprintf("scheme %q is not allowed; only http and https", scheme+":"))
	}
	rest = strings.TrimSuffix(rest, "/")
	switch {
	case strings.ContainsRune(rest, '@'):
		return reject("user info is not allowed")
	case strings.ContainsRune(rest, '#'):
		return reject("a fragment is not allowed")
	case strings.ContainsRune(rest, '?'):
		return reject("a query is not allowed")
	case strings.ContainsAny(rest, `/\`):
		return reject("a path is not allowed")
	case rest == "":
		return reject("no host")
	}

	host, port := rest, ""
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return reject("unterminated IPv6 address")
		}
		addr, err := netip.ParseAddr(rest[1:end])
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return reject("invalid IPv6 address")
		}
		host = "[" + addr.String() + "]"
		switch after := rest[end+1:]; {
		case after == "":
		case after[0] == ':':
			port = after[1:]
			if port == "" {
				return reject("empty port")
			}
		default:
			return reject("invalid host")
		}
	} else {
		if h, p, hasPort := strings.Cut(rest, ":"); hasPort {
			if p == "" {
				return reject("empty port")
			}
			host, port = h, p
		}
		host = strings.ToLower(host)
		if reason := checkHostName(host); reason != "" {
			return reject(reason)
		}
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '+' || port[0] == '-' {
			return reject("invalid port")
		}
		if (scheme == "http" && n == 80) || (scheme == "https" && n == 443) {
			port = "" // the default port: browsers leave it out of Origin
		} else {
			port = strconv.Itoa(n) // leading zeros dropped, as browsers do
		}
	}
	out := scheme + "://" + host
	if port != "" {
		out += ":" + port
	}
	return out, nil
}

// checkHostName checks a lower-cased host name or IPv4 address, returning
// why it is invalid or "".
func checkHostName(host string) string {
	if host == "" {
		return "no host"
	}
	if len(host) > 253 {
		return "host name too long"
	}
	labels := strings.Split(host, ".")
	for _, l := range labels {
		if l == "" {
			return "empty label in host name"
		}
		if len(l) > 63 {
			return "host name label longer than 63 bytes"
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Sprintf("invalid character %q in host", c)
			}
		}
	}
	// A host whose last label is numeric is an IPv4 address to a browser
	// (WHATWG URL "ends in a number"), which it serialises as a dotted quad;
	// only that form can ever match an Origin header.
	last := labels[len(labels)-1]
	if isDigits(last) || strings.HasPrefix(last, "0x") {
		if a, err := netip.ParseAddr(host); err != nil || !a.Is4() {
			return "invalid IPv4 address (write it as a dotted quad without leading zeros)"
		}
	}
	return ""
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// isScheme reports whether s is an RFC 3986 scheme.
func isScheme(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlpha(c) && !(c >= '0' && c <= '9') && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

func isUnicodeSpace(r rune) bool {
	switch r {
	case 0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000, 0xfeff:
		return true
	}
	return r >= 0x2000 && r <= 0x200b
}

// SplitOriginList splits a list of origins separated by commas, spaces or
// tabs (as in ALLOWED_ORIGINS), dropping empty elements. Other whitespace
// stays inside an element, where ParseOrigin rejects it.
func SplitOriginList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}
