package sechard

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sechard/sechard/internal/reqpath"
)

// What the paths stage does with an ambiguous request path.
const (
	pathsReject    = "reject"
	pathsNormalize = "normalize"
	pathsAllow     = "allow"
)

const reasonAmbiguousPath = "ambiguous_path"

// pathStage makes every later stage judge the path the upstream will
// receive. Caddy's path matcher decodes and cleans the path before matching,
// while reverse_proxy forwards it as sent; a path that reads differently the
// two ways (/nl-query/..%2Fhealthz) would be judged as one path and served
// as another. See internal/reqpath for what counts as ambiguous.
type pathStage struct {
	action string // pathsReject, pathsNormalize or pathsAllow
	logger *zap.Logger
}

// parsePathsAction reads the argument of `paths` (Caddyfile) or the
// `paths` JSON field; empty means the default, reject.
func parsePathsAction(v string) (string, error) {
	switch v {
	case "", pathsReject:
		return pathsReject, nil
	case pathsNormalize, pathsAllow:
		return v, nil
	}
	return "", fmt.Errorf("paths must be %s, %s or %s, got %q", pathsReject, pathsNormalize, pathsAllow, v)
}

func unmarshalPathsCaddyfile(d *caddyfile.Dispenser) (string, error) {
	var v string
	if !d.Args(&v) || d.NextArg() {
		return "", d.Errf("paths takes one argument: %s, %s or %s", pathsReject, pathsNormalize, pathsAllow)
	}
	if _, err := parsePathsAction(v); err != nil {
		return "", d.Err(err.Error())
	}
	if d.NextBlock(d.Nesting()) {
		return "", d.Err("paths takes no block")
	}
	return v, nil
}

func (p *pathStage) name() string { return "paths" }

// mode is always enforce: passing an ambiguous path on is the bypass itself.
func (p *pathStage) mode() string      { return modeEnforce }
func (p *pathStage) reasons() []string { return []string{reasonAmbiguousPath} }

func (p *pathStage) provision(env *provisionEnv) error {
	a, err := parsePathsAction(p.action)
	if err != nil {
		return err
	}
	p.action, p.logger = a, env.logger.Named("paths")
	return nil
}

// decide refuses (reject) or rewrites (normalize) an ambiguous path; a path
// that is not ambiguous costs one scan and no allocation.
// A nil stage (a handler that was never provisioned) rejects, the default.
func (p *pathStage) decide(ex *exchange) decision {
	action := pathsReject
	if p != nil {
		action = p.action
	}
	if action == pathsAllow {
		return allow
	}
	u := ex.r.URL
	// RawPath is the path as sent when that differs from Path's default
	// encoding. When it is empty, Path without a '%' reads the same as its
	// escaped form (escaping changes no '/' or '.'; "\" and control bytes
	// are refused either way), so it is checked without escaping it.
	raw := u.RawPath
	if raw == "" {
		raw = u.Path
		if strings.IndexByte(raw, '%') >= 0 {
			raw = u.EscapedPath()
		}
	}
	problem := reqpath.Check(raw)
	if problem == reqpath.None {
		return allow
	}
	if action == pathsNormalize {
		if u.RawPath == "" {
			raw = u.EscapedPath()
		}
		if clean, ok := reqpath.Normalize(raw); ok {
			if decoded, err := url.PathUnescape(clean); err == nil {
				p.rewrite(ex, raw, clean, decoded)
				return allow
			}
		}
	}
	return decision{Status: http.StatusBadRequest, Reason: reasonAmbiguousPath, Detail: problem.String()}
}

// rewrite makes clean the path every later stage and the upstream see, as
// Caddy's own rewrite handler does: in place, RequestURI included (the
// {http.request.uri} placeholder reads it).
func (p *pathStage) rewrite(ex *exchange, raw, clean, decoded string) {
	u := ex.r.URL
	u.Path, u.RawPath = decoded, ""
	if u.EscapedPath() != clean {
		u.RawPath = clean
	}
	ex.r.RequestURI = clean
	if u.RawQuery != "" {
		ex.r.RequestURI += "?" + u.RawQuery
	}
	if c := p.logger.Check(zapcore.DebugLevel, "normalized ambiguous path"); c != nil {
		c.Write(zap.String("from", quoteForLog(raw)), zap.String("to", clean), zap.String("request_id", ex.requestID))
	}
}
