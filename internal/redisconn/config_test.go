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
