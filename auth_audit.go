package sechard

import (
	"go.uber.org/zap/zapcore"
)

// Refusal reasons of the auth gate (credError values carry their own).
const (
	reasonAuthMissing = "auth_missing"
	reasonAuthInvalid = "auth_invalid"
	reasonAuthScope   = "auth_insufficient_scope"
)

// authAudit is the auth gate's audit entry for one decision. It never holds
// a token or key value: only the holder's name, the subject, scopes and jti.
// Handler.conclude writes it, adding "enforced" to denials.
type authAudit struct {
	ex      *exchange
	level   zapcore.Level
	verdict string // allow or deny
	reason  string
	method  string // the credential presented: jwt, api_key, mtls, or ""
	id      *identity
	cerr    *credError
	needed  string // the scopes a refused rule required
}

var _ auditRecord = (*authAudit)(nil)

// auditAuth fills the exchange's audit record: one per request, so that
// recording a decision allocates nothing.
func (ex *exchange) auditAuth(lvl zapcore.Level, verdict, reason, method string, id *identity, cerr *credError, needed string) *authAudit {
	a := &ex.scratch().audit
	*a = authAudit{ex: ex, level: lvl, verdict: verdict, reason: reason, method: method, id: id, cerr: cerr, needed: needed}
	return a
}

func (a *authAudit) entry() (string, zapcore.Level) { return "auth decision", a.level }

func (a *authAudit) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	r := a.ex.r
	path := r.URL.Path
	if len(path) > 256 {
		path = path[:256]
	}
	enc.AddString("decision", a.verdict)
	enc.AddString("reason", a.reason)
	enc.AddString("path", path)
	enc.AddString("client_ip", clientIP(r))
	enc.AddString("request_id", a.ex.requestID)
	if a.method != "" {
		enc.AddString("method", a.method)
	}
	if id := a.id; id != nil {
		switch id.method {
		case authMethodAPIKey:
			enc.AddString("key", id.subject)
		case authMethodMTLS:
			enc.AddString("subject", id.subject)
		default:
			enc.AddString("subject", id.subject)
			enc.AddString("jti", id.jti)
		}
		if id.full {
			enc.AddBool("full_access", true)
		} else {
			enc.AddString("scopes", id.joined)
		}
	}
	if a.cerr != nil && a.cerr.desc != "" {
		enc.AddString("detail", a.cerr.desc)
	}
	if a.cerr == errTokenBinding && a.id != nil && a.id.bound != nil {
		// Which certificate the token wanted, and which one came (absent:
		// none, or plain HTTP): thumbprints, never the token.
		enc.AddString("expected_x5t_s256", a.id.bound.x5t)
		if leaf := verifiedLeaf(r.TLS); leaf != nil {
			enc.AddString("presented_x5t_s256", x5tS256(leaf))
		}
	}
	if a.needed != "" {
		enc.AddString("required_scopes", a.needed)
	}
	return nil
}
