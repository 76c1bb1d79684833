package corsparse

import (
	"net/url"
	"strings"
	"testing"
)

func TestParseOriginNormalisesAcceptedEntries(t *testing.T) {
	for entry, want := range map[string]string{
		"https://app.example.com":         "https://app.example.com",
		"https://app.example.com/":        "https://app.example.com",
		"HTTPS://APP.Example.COM":         "https://app.example.com",
		"https://app.example.com:443":     "https://app.example.com",
		"http://app.example.com:80/":      "http://app.example.com",
		"http://app.example.com:443":      "http://app.example.com:443",
		"https://app.example.com:80":      "https://app.example.com:80",
		"https://app.example.com:08443":   "https://app.example.com:8443",
		"http://localhost:3000":           "http://localhost:3000",
		"http://127.0.0.1:8080":           "http://127.0.0.1:8080",
		"http://[::1]:8080":               "http://[::1]:8080",
		"http://[0:0:0:0:0:0:0:1]":        "http://[::1]",
		"https://[2001:DB8::1]:443":       "https://[2001:db8::1]",
		"https://xn--bcher-kva.example":   "https://xn--bcher-kva.example",
		"https://under_score.example.com": "https://under_score.example.com",
	} {
		got, err := ParseOrigin(entry)
		if err != nil || got != want {
			t.Errorf("ParseOrigin(%q) = %q, %v; want %q", entry, got, err, want)
		}
	}
}

func TestParseOriginRejectsWithReason(t *testing.T) {
	for entry, reason := range map[string]string{
		"*":                                   "wildcard",
		"https://*.example.com":               "wildcard",
		"https://app.example.com*":            "wildcard",
		"null":                                "null",
		"NULL":                                "null",
		"ftp://bad.com":                       `scheme "ftp:"`,
		"file:///etc/passwd":                  `scheme "file:"`,
		"javascript:alert(1)":                 `scheme "javascript:"`,
		"ws://app.example.com":                `scheme "ws:"`,
		"app.example.com":                     "not of the form",
		"localhost:8080":                      "not of the form",
		"//app.example.com":                   "not of the form",
		"":                                    "empty",
		"https://app.example.com/path":        "path",
		"https://app.example.com//":           "path",
		`https://app.example.com\`:            "path",
		"https://app.example.com?q=1":         "query",
		"https://app.example.com/?q=1":        "query",
		"https://app.example.com#frag":        "fragment",
		"https://user:pw@app.example.com":     "user info",
		"https://@app.example.com":            "user info",
		" https://app.example.com":            "whitespace",
		"https://app.example.com\t":           "whitespace",
		"https://app .example.com":            "whitespace",
		"https://app.example.com\u00a0":       "whitespace",
		"https://app.example.com\r\n":         "whitespace",
		"https://bücher.example":              "non-ASCII",
		"https://":                            "no host",
		"https:///":                           "no host",
		"https://app.example.com:":            "empty port",
		"https://app.example.com:0":           "invalid port",
		"https://app.example.com:65536":       "invalid port",
		"https://app.example.com:-1":          "invalid port",
		"https://app.example.com:+8":          "invalid port",
		"https://app.example.com:http":        "invalid port",
		"https://app..example.com":            "empty label",
		"https://app.example.com.":            "empty label",
		"https://.example.com":                "empty label",
		"https://app.exa$mple.com":            "invalid character",
		"https://[::1":                        "unterminated",
		"https://[fe80::1%25eth0]":            "IPv6",
		"https://[127.0.0.1]":                 "IPv6",
		"https://[::1]x":                      "invalid host",
		"https://127.1":                       "IPv4",
		"https://0x7f.0.0.1":                  "IPv4",
		"https://127.000.0.1":                 "IPv4",
		"https://" + strings.Repeat("a", 300): "too long",
	} {
		got, err := ParseOrigin(entry)
		oe, ok := err.(*OriginError)
		if !ok {
			t.Errorf("ParseOrigin(%q) = %q, %v; want rejection (%s)", entry, got, err, reason)
			continue
		}
		if oe.Entry != entry || !strings.Contains(oe.Reason, reason) {
			t.Errorf("ParseOrigin(%q) rejected with %q; want reason containing %q", entry, oe.Reason, reason)
		}
	}
}

func TestSplitOriginList(t *testing.T) {
	got := SplitOriginList("https://a.com,*, ftp://bad.com ,,\thttps://b.com\n")
	want := []string{"https://a.com", "*", "ftp://bad.com", "https://b.com\n"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// FuzzParseOrigin checks that whatever ParseOrigin accepts is a browser
// origin serialisation: a fixed point, lower-case, scheme://host[:port] with
// no default port, and read the same way by net/url.
func FuzzParseOrigin(f *testing.F) {
	for _, s := range []string{
		"https://app.example.com", "HTTP://A.B:80/", "https://[::1]:443", "*", "null",
		"ftp://bad.com", "https://a.com/p?q#f", "https://u@a.com", "http://127.0.0.1:8080",
		"https://app.example.com.evil.com", "https://a.com:0080", "javascript:alert(1)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, entry string) {
		got, err := ParseOrigin(entry)
		if err != nil {
			if got != "" {
				t.Fatalf("rejected %q but returned %q", entry, got)
			}
			return
		}
		again, err := ParseOrigin(got)
		if err != nil || again != got {
			t.Fatalf("not a fixed point: %q -> %q -> %q, %v", entry, got, again, err)
		}
		_, hostport, _ := strings.Cut(got, "://")
		if got != strings.ToLower(got) || strings.ContainsAny(hostport, "*@?#/\\ \t") {
			t.Fatalf("%q -> %q: not normalised", entry, got)
		}
		u, err := url.Parse(got)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.Opaque != "" {
			t.Fatalf("%q -> %q: net/url reads %#v, %v", entry, got, u, err)
		}
		if u.Scheme+"://"+u.Host != got {
			t.Fatalf("%q -> %q: net/url reads %q", entry, got, u.Scheme+"://"+u.Host)
		}
		if (u.Scheme == "http" && u.Port() == "80") || (u.Scheme == "https" && u.Port() == "443") {
			t.Fatalf("%q -> %q: default port kept", entry, got)
		}
	})
}
