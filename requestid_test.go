package sechard

import (
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/google/uuid"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestRequestIDValidator(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   string
		max  int
		want bool
	}{
		{"exactly 64 chars kept", strings.Repeat("a", 64), 64, true},
		{"65 chars replaced", strings.Repeat("a", 65), 64, false},
		{"every allowed byte", "AZaz09_-", 64, true},
		{"one char", "x", 64, true},
		{"uuid", "3f8e2a4c-5b1d-4e7f-9a0b-1c2d3e4f5a6b", 64, true},
		{"empty", "", 64, false},
		{"space", "abc def", 64, false},
		{"leading space", " abc", 64, false},
		{"dot", "abc.def", 64, false},
		{"slash", "abc/def", 64, false},
		{"colon", "abc:def", 64, false},
		{"plus", "abc+def", 64, false},
		{"non-ASCII", "abcé", 64, false},
		{"non-ASCII lookalike dash", "abc\u2010def", 64, false},
		{"CR", "abc\rdef", 64, false},
		{"LF", "abc\ndef", 64, false},
		{"CRLF injection", "abc\r\nX-Admin: true", 64, false},
		{"NUL", "abc\x00", 64, false},
		{"high byte", "abc\xff", 64, false},
		{"10 KB", strings.Repeat("a", 10<<10), 64, false},
		{"max_length smaller: at limit kept", "abcdefgh", 8, true},
		{"max_length smaller: one over replaced", "abcdefghi", 8, false},
		{"max_length 1", "a", 1, true},
		{"max_length 1, two chars", "ab", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := validRequestID(tc.id, tc.max); got != tc.want {
				t.Errorf("validRequestID(%q, %d) = %v, want %v", tc.id, tc.max, got, tc.want)
			}
		})
	}
}

// FuzzRequestIDValid checks the byte loop against the contract's regular
// expression, ^[A-Za-z0-9_-]{1,max}$, written out independently.
func FuzzRequestIDValid(f *testing.F) {
	for _, s := range []string{
		"", "a", "abc-DEF_123", strings.Repeat("z", 64), strings.Repeat("z", 65),
		"a b", "a.b", "a/b", "é", "\r\n", "\x00", "\xff\xfe", "550e8400-e29b-41d4-a716-446655440000",
	} {
		f.Add(s, 64)
		f.Add(s, 8)
	}
	f.Fuzz(func(t *testing.T, id string, max int) {
		if max < 1 || max > maxRequestIDLength {
			max = maxRequestIDLength
		}
		want := len(id) >= 1 && len(id) <= max
		for _, r := range id { // ranging over runes: any non-ASCII byte fails too
			ok := r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_'
			if !ok {
				want = false
			}
		}
		if got := validRequestID(id, max); got != want {
			t.Fatalf("validRequestID(%q, %d) = %v, want %v", id, max, got, want)
		}
	})
}

func provisionedRequestID(t testing.TB, c *RequestID) (*RequestID, *observer.ObservedLogs) {
	t.Helper()
	env, logs := newTestEnv(t)
	if err := c.provision(env); err != nil {
		t.Fatal(err)
	}
	return c, logs
}

func TestRequestIDAssign(t *testing.T) {
	off := false
	long := strings.Repeat("a", 10<<10)
	for _, tc := range []struct {
		name       string
		cfg        RequestID
		inbound    []string // X-Request-ID values sent
		wantKept   bool
		wantReason string // "" = no warning
	}{
		{name: "missing: new ID, silently", inbound: nil},
		{name: "empty: new ID, silently", inbound: []string{""}},
		{name: "valid: kept", inbound: []string{"client-abc_123"}, wantKept: true},
		{name: "64 chars: kept", inbound: []string{strings.Repeat("b", 64)}, wantKept: true},
		{name: "65 chars: replaced", inbound: []string{strings.Repeat("b", 65)}, wantReason: "too_long"},
		{name: "10 KB: replaced", inbound: []string{long}, wantReason: "too_long"},
		{name: "space: replaced", inbound: []string{"a b"}, wantReason: "invalid_byte"},
		{name: "dot: replaced", inbound: []string{"a.b"}, wantReason: "invalid_byte"},
		{name: "non-ASCII: replaced", inbound: []string{"idé"}, wantReason: "invalid_byte"},
		{name: "two values: replaced", inbound: []string{"abc", "def"}, wantReason: "multiple_values"},
		{name: "max_length 8: 9 chars replaced", cfg: RequestID{MaxLength: 8}, inbound: []string{"abcdefghi"}, wantReason: "too_long"},
		{name: "max_length 8: 8 chars kept", cfg: RequestID{MaxLength: 8}, inbound: []string{"abcdefgh"}, wantKept: true},
		{name: "accept_inbound off: valid ID ignored silently", cfg: RequestID{AcceptInbound: &off}, inbound: []string{"client-abc"}},
		{name: "accept_inbound off: bad ID ignored silently", cfg: RequestID{AcceptInbound: &off}, inbound: []string{"a b"}},
		{name: "custom header", cfg: RequestID{Header: "x-correlation-id"}, inbound: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, logs := provisionedRequestID(t, &tc.cfg)
			hdr := c.headerName()
			var pairs []string
			for _, v := range tc.inbound {
				pairs = append(pairs, hdr, v)
			}
			r, extra := newTestRequest(pairs...)
			ex := &exchange{r: r}
			c.assign(ex)

			id := ex.requestID
			if tc.wantKept {
				if id != tc.inbound[0] {
					t.Fatalf("ID = %q, want the inbound %q kept", id, tc.inbound[0])
				}
			} else if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
				t.Fatalf("ID = %q, want a new UUID", id)
			}
			if got := r.Header[hdr]; len(got) != 1 || got[0] != id {
				t.Errorf("request header %s = %q, want exactly [%q]", hdr, got, id)
			}
			if got := caddyhttp.GetVar(r.Context(), "request_id"); got != id {
				t.Errorf("{http.vars.request_id} = %v, want %q", got, id)
			}
			if got := extraLogField(t, extra, "request_id"); got != id {
				t.Errorf("access log request_id = %q, want %q", got, id)
			}

			warns := logs.FilterLevelExact(zapcore.WarnLevel).All()
			if tc.wantReason == "" {
				if len(warns) != 0 {
					t.Fatalf("unexpected warnings: %v", warns)
				}
				return
			}
			if len(warns) != 1 {
				t.Fatalf("got %d warnings, want 1", len(warns))
			}
			f := warns[0].ContextMap()
			if f["reason"] != tc.wantReason || f["request_id"] != id || f["client_ip"] != "192.0.2.1" || f["remote_addr"] != "192.0.2.1:1234" {
				t.Errorf("warning fields = %v", f)
			}
			if warns[0].LoggerName != "request_id" {
				t.Errorf("logger name = %q", warns[0].LoggerName)
			}
		})
	}
}

func TestRequestIDUUID7(t *testing.T) {
	c, _ := provisionedRequestID(t, &RequestID{Generate: "uuid7"})
	r, _ := newTestRequest()
	ex := &exchange{r: r}
	c.assign(ex)
	u, err := uuid.Parse(ex.requestID)
	if err != nil || u.Version() != 7 {
		t.Fatalf("ID %q: version %d, err %v; want a v7 UUID", ex.requestID, u.Version(), err)
	}
	c, _ = provisionedRequestID(t, &RequestID{})
	r, _ = newTestRequest()
	ex = &exchange{r: r}
	c.assign(ex)
	if u, _ := uuid.Parse(ex.requestID); u.Version() != 4 {
		t.Fatalf("default generator made version %d, want 4", u.Version())
	}
}

// TestRequestIDMalformedLoggedEscapedAndTruncated: a bad value never reaches
// the log raw (CWE-117), and a huge one is cut to 64 bytes before escaping.
func TestRequestIDMalformedLoggedEscapedAndTruncated(t *testing.T) {
	for _, tc := range []struct {
		name, bad, wantValue string
		wantTrunc            bool
	}{
		{"CRLF and quote escaped", "a\r\nb\"c", `"a\r\nb\"c"`, false},
		{"non-UTF-8 escaped", "id\xff", `"id\xff"`, false},
		{"unicode escaped as is", "idé", `"idé"`, false},
		{"10 KB truncated to 64 bytes", strings.Repeat("x", 10<<10) + "\n", strconv.Quote(strings.Repeat("x", 64)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, logs := provisionedRequestID(t, &RequestID{})
			r, _ := newTestRequest()
			r.Header["X-Request-Id"] = []string{tc.bad}
			ex := &exchange{r: r}
			c.assign(ex)
			warns := logs.FilterLevelExact(zapcore.WarnLevel).All()
			if len(warns) != 1 {
				t.Fatalf("got %d warnings, want 1", len(warns))
			}
			f := warns[0].ContextMap()
			if f["value"] != tc.wantValue || f["truncated"] != tc.wantTrunc || f["length"] != int64(len(tc.bad)) {
				t.Errorf("value=%v truncated=%v length=%v; want %s %v %d", f["value"], f["truncated"], f["length"], tc.wantValue, tc.wantTrunc, len(tc.bad))
			}
			if strings.ContainsAny(f["value"].(string), "\r\n") {
				t.Error("raw CR/LF in the log value")
			}
			if r.Header.Get("X-Request-Id") == tc.bad {
				t.Error("malformed ID passed on to the upstream")
			}
		})
	}
}

func TestRequestIDConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  RequestID
		want string
	}{
		{"max_length 65", RequestID{MaxLength: 65}, "max_length must be from 1 to 64"},
		{"max_length negative", RequestID{MaxLength: -1}, "max_length must be from 1 to 64"},
		{"unknown generator", RequestID{Generate: "uuid1"}, "generate must be uuid4 or uuid7"},
		{"bad header name", RequestID{Header: "X Request"}, "invalid header field name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, _ := newTestEnv(t)
			err := tc.cfg.provision(env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestRequestIDNilStage: a nil stage still gives every request an ID.
func TestRequestIDNilStage(t *testing.T) {
	var c *RequestID
	r, _ := newTestRequest("X-Request-ID", "keep-me")
	ex := &exchange{r: r}
	c.assign(ex)
	if _, err := uuid.Parse(ex.requestID); err != nil {
		t.Fatalf("nil stage ID %q is not a UUID", ex.requestID)
	}
}

// extraLogField reads a string field from Caddy's ExtraLogFields. They
// expose no getter, so this reads the unexported slice by reflection
// (read-only); the end-to-end tests check the real access log line.
func extraLogField(t testing.TB, extra *caddyhttp.ExtraLogFields, key string) string {
	t.Helper()
	fields := reflect.ValueOf(extra).Elem().FieldByName("fields")
	for i := 0; i < fields.Len(); i++ {
		if f := fields.Index(i); f.FieldByName("Key").String() == key {
			return f.FieldByName("String").String()
		}
	}
	return ""
}
