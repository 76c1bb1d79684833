package redisconn

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestPrepareKey(t *testing.T) {
	base := Config{URL: "redis://h:1/0"}
	p := Params{Timeout: time.Second, PoolSize: 4}
	key := func(c Config, p Params, pw string) string {
		t.Helper()
		prepared, err := c.Prepare(p, pw)
		if err != nil {
			t.Fatal(err)
		}
		return prepared.Key()
	}
	k := key(base, p, "pw-secret")
	if k != key(base, p, "pw-secret") {
		t.Fatal("equal configurations, different keys")
	}
	if strings.Contains(k, "pw-secret") {
		t.Fatalf("key %q holds the password", k)
	}
	for name, other := range map[string]string{
		"password": key(base, p, "other"),
		"params":   key(base, Params{Timeout: time.Second, PoolSize: 5}, "pw-secret"),
		"user":     key(Config{URL: base.URL, Username: "u"}, p, "pw-secret"),
		"topology": key(Config{URL: base.URL, Topology: Cluster}, p, "pw-secret"),
	} {
		if other == k {
			t.Errorf("a different %s gives the same key", name)
		}
	}
}

func TestPrepareTLSCA(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		filepath.Join(dir, "absent.pem"): "tls_ca: open",
		notPEM:                           "no PEM certificate found",
	} {
		_, err := Config{URL: "rediss://:pw-1@h:1/0", TLSCA: file}.Prepare(Params{}, "")
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "pw-1") {
			t.Errorf("tls_ca %s: %v, want %q", file, err, want)
		}
	}
}

// TestNewClientOptions: a client for a request path never retries and
// bounds every wait by the timeout, whatever go-redis's defaults are
// (it stores "no retries", -1, as 0).
func TestNewClientOptions(t *testing.T) {
	prepared, err := Config{URL: "redis://h:1/0", Username: "u"}.Prepare(Params{Timeout: 200 * time.Millisecond, PoolSize: 8, MinIdle: 2}, "pw")
	if err != nil {
		t.Fatal(err)
	}
	c, err := prepared.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o := c.(*redis.Client).Options()
	if o.MaxRetries > 0 || !o.ContextTimeoutEnabled || o.Protocol != 2 || !o.DisableIdentity ||
		o.ReadTimeout != 200*time.Millisecond || o.WriteTimeout != 200*time.Millisecond || o.PoolTimeout != 200*time.Millisecond ||
		o.DialTimeout != 500*time.Millisecond || o.PoolSize != 8 || o.MinIdleConns != 2 || o.Username != "u" || o.Password != "pw" {
		t.Fatalf("options %+v", o)
	}
}

func TestErrorHint(t *testing.T) {
	for msg, want := range map[string]string{
		"MOVED 3999 127.0.0.1:6381": "redis cluster",
		"READONLY You can't write":  "replica",
		"NOPERM this user":          "ACL",
		"connection refused":        "",
	} {
		if got := ErrorHint(errors.New(msg)); (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("%q: hint %q, want one mentioning %q", msg, got, want)
		}
	}
}
