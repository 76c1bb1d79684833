package sechard

import (
	"bufio"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func TestPathsCaddyfile(t *testing.T) {
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("sechard {\n\tpaths normalize\n}")); err != nil {
		t.Fatal(err)
	}
	if h.Paths != "normalize" {
		t.Fatalf("Paths = %q", h.Paths)
	}
	if _, err := newPathStage(&provisionEnv{logger: zap.NewNop()}, "clean"); err == nil {
		t.Fatal("bad JSON paths value accepted")
	}
}

// requestFromWire parses raw as Go's server would, or returns nil.
func requestFromWire(target string) *http.Request {
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: edge\r\n\r\n")))
	if err != nil {
		return nil
	}
	return r
}

func TestPathsStageDecides(t *testing.T) {
	env := &provisionEnv{logger: zap.NewNop()}
	for _, tc := range []struct {
		action, target string
		status         int
		path, uri      string // after the stage, when allowed
	}{
		{"reject", "/nl-query/a.b", 0, "/nl-query/a.b", "/nl-query/a.b"},
		{"reject", "/nl-query/..%2Fhealthz", 400, "", ""},
		{"reject", "/a//b", 400, "", ""},
		{"normalize", "/nl-query/..%2Fhealthz?x=%2F", 0, "/healthz", "/healthz?x=%2F"},
		{"normalize", "/a/%2e%2E/b%20c/%41", 0, "/b c/A", "/b%20c/A"},
		{"normalize", "/a/%3f/../%3F", 0, "/a/?", "/a/%3F"},
		{"normalize", "/a%00/..", 400, "", ""},
		{"allow", "/a/..%2Fb", 0, "/a/../b", "/a/..%2Fb"},
	} {
		r := requestFromWire(tc.target)
		stage, err := newPathStage(env, tc.action)
		if err != nil {
			t.Fatal(err)
		}
		d := stage.decide(&exchange{r: r})
		if d.Status != tc.status {
			t.Errorf("%s %q: status %d, want %d", tc.action, tc.target, d.Status, tc.status)
			continue
		}
		if d.Status == 0 && (r.URL.Path != tc.path || r.URL.RequestURI() != tc.uri || r.RequestURI != tc.uri) {
			t.Errorf("%s %q: passed on Path %q, URI %q, RequestURI %q; want %q, %q", tc.action, tc.target, r.URL.Path, r.URL.RequestURI(), r.RequestURI, tc.path, tc.uri)
		}
		if d.Status == 400 && d.Reason != reasonAmbiguousPath {
			t.Errorf("%s %q: reason %q", tc.action, tc.target, d.Reason)
		}
	}
}

func TestPathsStageAllowedPathAllocatesNothing(t *testing.T) {
	stage, _ := newPathStage(&provisionEnv{logger: zap.NewNop()}, "reject")
	ex := &exchange{r: requestFromWire("/nl-query/tables%20by%20month/x.y?q=%2F")}
	if n := testing.AllocsPerRun(100, func() { stage.decide(ex) }); n != 0 {
		t.Fatalf("paths stage allocates %v times on an unambiguous path", n)
	}
}

// FuzzPathsStage: for any raw path the stage lets through (reject and
// normalize), the path every later stage matches is the path the next
// handler receives: Caddy's path matcher cleans nothing away from it, and
// the upstream, decoding what reverse_proxy sends, gets the same path.
func FuzzPathsStage(f *testing.F) {
	for _, s := range []string{"/", "/nl-query/..%2Fhealthz", "/a/%2e%2e/b", `/a\b`, "//x//y/", "/a;b/..;c/d", "/%41%2f%5C%00", "/a/./b/../c?x=%2F", "/b%20c/%3F"} {
		f.Add(s)
	}
	env := &provisionEnv{logger: zap.NewNop()}
	reject, _ := newPathStage(env, pathsReject)
	normalize, _ := newPathStage(env, pathsNormalize)
	f.Fuzz(func(t *testing.T, target string) {
		for _, stage := range []*pathStage{reject, normalize} {
			r := requestFromWire(target)
			if r == nil || r.URL.Opaque != "" || r.URL.Host != "" {
				return // Go's server refuses it, or not origin-form
			}
			if stage.decide(&exchange{r: r}).Status != 0 {
				continue
			}
			matched := r.URL.Path
			if !strings.HasPrefix(matched, "/") {
				continue
			}
			if c := caddyhttp.CleanPath(matched, true); c != matched {
				t.Fatalf("%s %q: stages match %q, which Caddy's matcher reads as %q", stage.action, target, matched, c)
			}
			sent := r.URL.EscapedPath() // what reverse_proxy puts on the wire
			up, err := url.ParseRequestURI(sent)
			if err != nil {
				t.Fatalf("%s %q: forwards %q, which does not parse: %v", stage.action, target, sent, err)
			}
			if up.Path != matched {
				t.Fatalf("%s %q: stages matched %q, upstream receives %q (decoded %q)", stage.action, target, matched, sent, up.Path)
			}
			if l := strings.ToLower(sent); strings.Contains(l, "%2f") || strings.Contains(l, "%5c") {
				t.Fatalf("%s %q: forwards an encoded separator: %q", stage.action, target, sent)
			}
		}
	})
}

// BenchmarkPathsStageAllowed is the cost the paths stage adds to every
// request whose path is not ambiguous.
func BenchmarkPathsStageAllowed(b *testing.B) {
	stage, _ := newPathStage(&provisionEnv{logger: zap.NewNop()}, "reject")
	ex := &exchange{r: requestFromWire("/nl-query/tables/orders/summary%20by%20month?q=1")}
	b.ReportAllocs()
	for b.Loop() {
		stage.decide(ex)
	}
}

// newPathStage is a provisioned paths gate, as Handler.Provision makes one.
func newPathStage(env *provisionEnv, action string) (*pathStage, error) {
	p := &pathStage{action: action}
	if err := p.provision(env); err != nil {
		return nil, err
	}
	return p, nil
}
