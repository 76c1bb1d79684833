package redisconn

import (
	"strings"
	"testing"
)

// TestRedisURLRedacted: passwords in user info or in the query never
// reach logs and errors.
func TestRedisURLRedacted(t *testing.T) {
	for _, u := range []string{"redis://:pw-1@h:1/0", "redis://u:pw-1@s:26379?master_name=m&password=pw-1&addr=s2:1"} {
		if got := RedactURL(u); strings.Contains(got, "pw-1") {
			t.Errorf("RedactURL(%q) = %q", u, got)
		}
		rc := Config{Topology: Sentinel, URL: u}
		if strings.Contains(rc.String(), "pw-1") {
			t.Errorf("%q", rc.String())
		}
	}
}

// TestParseArgs: the three forms and their options; mistakes say what is
// wrong without quoting a password.
func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args string
		want Config
	}{
		{"redis://127.0.0.1:6379/0", Config{URL: "redis://127.0.0.1:6379/0"}},
		{"redis://h:1/0 password_secret REDIS_PW", Config{URL: "redis://h:1/0", PasswordSecret: "REDIS_PW"}},
		{"cluster redis://a:7001?addr=b:7002 username sechard password_secret PW",
			Config{Topology: Cluster, URL: "redis://a:7001?addr=b:7002", Username: "sechard", PasswordSecret: "PW"}},
		{"sentinel rediss://s1:26379?master_name=m tls_ca /etc/ca.pem",
			Config{Topology: Sentinel, URL: "rediss://s1:26379?master_name=m", TLSCA: "/etc/ca.pem"}},
	} {
		got, err := ParseArgs("redis", strings.Fields(tc.args))
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v %v, want %+v", tc.args, got, err, tc.want)
		}
		if err == nil && got.Validate() != nil {
			t.Errorf("%s: parsed but does not validate: %v", tc.args, got.Validate())
		}
	}
	for _, tc := range []struct{ args, want string }{
		{"", "usage: store redis [cluster|sentinel] <url>"},
		{"sentinel", "usage"},
		{"redis://h:1/0 password_secret", "usage"},
		{"redis://h:1/0 tls_ca ca.pem", "tls_ca needs a rediss:// URL, got redis://h:1/0"},
		{"redis://h:1/0 passwort_secret X", `unknown option "passwort_secret" (want password_secret, username or tls_ca)`},
		{"redis://h:1/0 username a username b", "username given twice"},
		{"redis://h:1/0 password_secret bad-name", `invalid secret name "bad-name"`},
		{"sentinel redis://s:26379", "redis sentinel redis://s:26379: invalid URL (missing ?master_name=)"},
		{"http://:pw-in-url@h:1/0", "invalid URL"},
		{"cluster redis://h:1?bogus=1", "invalid URL"},
	} {
		_, err := ParseArgs("store redis", strings.Fields(tc.args))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.args, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "pw-in-url") {
			t.Errorf("error quotes the password: %v", err)
		}
	}
}

// TestValidateJSONConfig: a JSON config gets the checks the Caddyfile makes.
func TestValidateJSONConfig(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{Topology: "ring", URL: "redis://h:1"}, `unknown redis topology "ring"`},
		{Config{}, "a redis URL is required"},
		{Config{URL: "redis://:pw-1@h:1/0", TLSCA: "ca.pem"}, "tls_ca needs a rediss:// URL"},
	} {
		err := tc.c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "pw-1") {
			t.Errorf("%+v: %v, want %q", tc.c, err, tc.want)
		}
		if _, err := tc.c.Prepare(Params{}, ""); err == nil {
			t.Errorf("%+v: Prepare accepted what Validate refuses", tc.c)
		}
	}
}
