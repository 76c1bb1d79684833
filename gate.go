package sechard

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// gate is one stage of the request path that may let a request go on,
// answer it, or refuse it. Every gate (paths, cors, rate_limit,
// token_service, auth, the identity budgets) implements it; adding one is
// its file, a Handler field and its appendGate line, a Caddyfile case and
// one line in ServeHTTP.
//
// Methods are safe on a nil receiver (a gate that is not configured), which
// lets everything.
type gate interface {
	// name is the gate's name in config errors, logs and events.
	name() string
	// provision compiles the gate's config once, so decide only reads.
	provision(env *provisionEnv) error
	// mode is modeEnforce, modeReport or "" (enforce).
	mode() string
	// reasons lists every Reason decide can give, so each metric series
	// exists (at 0) from the first scrape.
	reasons() []string
	// decide looks at the request and returns what to do with it. It may
	// change the request it passes on (paths' rewrite, auth's identity
	// headers), set the headers every response carries, and leave what
	// later gates read (ex.identity); conclude does the rest:
	// logs, metrics, events, report mode, the response.
	decide(ex *exchange) decision
}

// Optional gate methods, for gates that hold resources or name secrets.
type (
	cleaner interface{ cleanup() error }
	// secretUser names the secrets a gate needs, so they are resolved (and
	// required) before any gate is provisioned.
	secretUser interface{ requiredSecrets() []string }
)

// decision is what a gate says about a request: go on (the zero value),
// answer it here, or refuse it.
type decision struct {
	// Status is 0 to let the request go on; otherwise the response status.
	Status int
	// Answer is true when sechard writes this response itself (Status,
	// Header and Body) rather than returning an error for Caddy's error
	// handling: an allowed CORS preflight, or the token service's responses,
	// whose RFC 6749 bodies clients read.
	Answer bool
	// Body is written with an Answer.
	Body []byte
	// Reason is a short, low-cardinality name for a refusal, such as
	// "rate_limited"; it goes into logs, metrics and events. A decision with
	// a Reason is a refusal (in report mode: a would-be refusal).
	Reason string
	// Detail says more for logs and the error value; never a secret.
	Detail string
	// Header holds headers sent only with this answer or refusal (e.g.
	// Retry-After, WWW-Authenticate). Headers for every response are set by
	// the gate directly.
	Header http.Header
	// Audit, when set, is the decision's entry on the audit logger (who,
	// with which credential), written in place of the generic refusal
	// entry; allowed decisions may carry one too.
	Audit auditRecord
	// Instead is what report mode does in place of this refusal: nil lets
	// the request go on; a preflight is answered as if allowed, since the
	// upstream must never see one.
	Instead *decision
	// Event is the Caddy event a refusal emits (nil: none), with EventValue
	// as its one gate-specific field.
	Event      *eventKind
	EventValue string
	// Count is a counter this decision adds one to besides the rejection
	// counter: an authenticated request, an issued token. Gates resolve it
	// at provision; nil counts nothing.
	Count prometheus.Counter
}

// allow is the decision to let a request go on.
var allow = decision{}

// auditRecord is a gate's account of one decision for the audit logger
// (http.handlers.sechard.audit): its fields, message and level.
type auditRecord interface {
	zapcore.ObjectMarshaler
	entry() (message string, level zapcore.Level)
}

// eventKind names a Caddy event and its gate-specific field.
type eventKind struct{ name, key string }

const (
	modeEnforce = "enforce"
	modeReport  = "report"
)

// checkMode is the one rule for every gate's `mode`.
func checkMode(m string) error {
	if m != "" && m != modeEnforce && m != modeReport {
		return fmt.Errorf("mode must be %s or %s, got %q", modeEnforce, modeReport, m)
	}
	return nil
}

// parseMode reads a `mode` line's single argument for the named block.
func parseMode(d *caddyfile.Dispenser, block string) (string, error) {
	var m string
	if !d.AllArgs(&m) {
		return "", d.ArgErr()
	}
	if err := checkMode(m); err != nil {
		return "", d.Errf("%s %v", block, err)
	}
	return m, nil
}

// conclude applies a gate's decision. It reports done when the request must
// not go further, with the error to return from ServeHTTP. It is the one
// place where decisions become log entries, metrics, events and responses,
// and where report mode decides what happens instead.
func (h *Handler) conclude(ex *exchange, g gate, d decision) (done bool, err error) {
	if d.Status == 0 && d.Audit == nil && d.Count == nil {
		return false, nil // the common case: nothing to record
	}
	return h.apply(ex, g, d)
}

func (h *Handler) apply(ex *exchange, g gate, d decision) (done bool, err error) {
	if d.Count != nil {
		d.Count.Inc()
	}
	refusal := d.Reason != ""
	mode := modeEnforce
	if refusal && g.mode() == modeReport {
		mode = modeReport
	}
	if refusal {
		h.metrics.reject(mode, d.Reason)
		if d.Event != nil {
			h.metrics.refused(ex, d.Event, mode, d.Reason, d.EventValue)
		}
	}
	h.record(ex, g, d, refusal, mode)
	if d.Status == 0 {
		return false, nil
	}
	if mode == modeReport {
		// Decided exactly as in enforcement and recorded, not applied.
		if d.Instead == nil {
			return false, nil
		}
		d = *d.Instead
	}
	hdr := ex.w.Header()
	for k, v := range d.Header {
		hdr[k] = v
	}
	if d.Answer {
		ex.w.WriteHeader(d.Status)
		if len(d.Body) > 0 {
			ex.w.Write(d.Body)
		}
		return true, nil
	}
	msg := d.Reason
	if d.Detail != "" {
		msg += ": " + d.Detail
	}
	return true, caddyhttp.Error(d.Status, errors.New(msg))
}

// record writes a decision's log entry: its audit entry when it has one
// (with "enforced" on refusals, so select(.enforced == false) finds exactly
// what report mode let through), else, for a refusal, the gate's refusal
// entry: at debug when enforced (Caddy's error log has the response too),
// at warn when report mode did not apply it. Both modes carry the same
// fields, so they can be compared line for line.
func (h *Handler) record(ex *exchange, g gate, d decision, refusal bool, mode string) {
	enforced := mode != modeReport
	if d.Audit != nil {
		msg, lvl := d.Audit.entry()
		if c := checkLog(h.audit, lvl, msg); c != nil {
			if refusal {
				c.Write(zap.Inline(d.Audit), zap.Bool("enforced", enforced))
			} else {
				c.Write(zap.Inline(d.Audit))
			}
		}
		return
	}
	if !refusal || d.Answer {
		return
	}
	lvl, msg := zapcore.DebugLevel, "refused request"
	if !enforced {
		lvl, msg = zapcore.WarnLevel, "would refuse request"
	}
	if c := checkLog(h.stageLoggers[g.name()], lvl, msg); c != nil {
		c.Write(zap.String("stage", g.name()), zap.String("reason", d.Reason), zap.String("detail", d.Detail),
			zap.Int("status", d.Status), zap.String("request_id", ex.requestID), zap.Bool("enforced", enforced))
	}
}

// checkLog is logger.Check that tolerates a nil logger (a handler that was
// never provisioned, in unit tests).
func checkLog(logger *zap.Logger, lvl zapcore.Level, msg string) *zapcore.CheckedEntry {
	if logger == nil {
		return nil
	}
	return logger.Check(lvl, msg)
}

// quoteForLog quotes an attacker-controlled value for a log detail,
// truncated so a huge header cannot bloat logs.
func quoteForLog(s string) string {
	const maxLen = 64
	if len(s) > maxLen {
		return strconv.Quote(s[:maxLen]) + "..."
	}
	return strconv.Quote(s)
}

// Interface guards: the optional methods are found by type assertion, so a
// misspelt one would be skipped without a word.
var (
	_ gate       = (*pathStage)(nil)
	_ gate       = (*CORS)(nil)
	_ gate       = (*RateLimit)(nil)
	_ gate       = (*TokenService)(nil)
	_ gate       = (*Auth)(nil)
	_ gate       = (*identityGate)(nil)
	_ cleaner    = (*RateLimit)(nil)
	_ cleaner    = (*Auth)(nil)
	_ secretUser = (*RateLimit)(nil)
	_ secretUser = (*Auth)(nil)
	_ secretUser = (*TokenService)(nil)
)
