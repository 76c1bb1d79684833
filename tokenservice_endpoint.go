package sechard

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sechard/sechard/internal/oauthreq"
)

// decide answers the service's own paths and lets every other request go
// on. Its answers are written by conclude; they are never report-mode
// decisions, so a refused client credential is refused in every mode.
func (t *TokenService) name() string { return "token_service" }

// mode is always enforce: a wrong client credential is refused even when
// auth only reports.
func (t *TokenService) mode() string { return modeEnforce }

func (t *TokenService) reasons() []string {
	return []string{reasonTokenInvalidRequest, reasonTokenInvalidClient, reasonTokenInvalidScope, reasonTokenGrantType}
}

func (t *TokenService) decide(ex *exchange) decision {
	if t == nil {
		return allow
	}
	switch ex.r.URL.Path {
	case t.path:
		return t.token(ex)
	case t.jwksPath:
		return publicDocument(ex, t.jwksBody, "application/jwk-set+json")
	case t.metadataPath:
		return publicDocument(ex, t.metadataBody, "application/json")
	}
	return allow
}

// publicDocument answers GET or HEAD with a cacheable JSON document.
func publicDocument(ex *exchange, body []byte, contentType string) decision {
	h := http.Header{"Cache-Control": {tokenMetadataCache}}
	if m := ex.r.Method; m != http.MethodGet && m != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		return decision{Status: http.StatusMethodNotAllowed, Answer: true, Header: h}
	}
	h.Set("Content-Type", contentType)
	if ex.r.Method == http.MethodHead {
		body = nil
	}
	return decision{Status: http.StatusOK, Answer: true, Header: h, Body: body}
}

// tokenResponseHeader is the header of every token endpoint response:
// JSON, never cached (RFC 6749 §5.1).
func tokenResponseHeader() http.Header {
	return http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}, "Pragma": {"no-cache"}}
}

// tokenResponse is RFC 6749 §5.1's success body.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// token runs the client-credentials grant.
func (t *TokenService) token(ex *exchange) decision {
	req, oerr := oauthreq.Parse(ex.r)
	if oerr != nil {
		return t.refuse(ex, oerr, "", "")
	}
	id, method, oerr := t.authenticateClient(ex, req)
	if oerr != nil {
		return t.refuse(ex, oerr, req.ClientID, method)
	}
	scopes := id.scopes
	if req.Scopes != nil {
		for _, s := range req.Scopes {
			if !id.has(s) {
				return t.refuse(ex, oauthreq.InvalidScope("scope "+s+" is not granted to this client"), id.subject, method)
			}
		}
		scopes = req.Scopes
	} else if id.full {
		return t.refuse(ex, oauthreq.InvalidScope("this client's key has no scopes configured; request the scopes it needs"), id.subject, method)
	}

	now := t.now()
	joined := strings.Join(scopes, " ")
	claims := issuedClaims{
		Issuer: t.Issuer, Subject: id.subject, Audience: t.audience, ClientID: id.subject, Scope: joined,
		IssuedAt: now.Unix(), Expires: now.Add(t.ttl).Unix(),
	}
	if method == oauthreq.TLSClientAuth {
		// RFC 8705 §3.1: bound to the certificate the client just
		// authenticated with (the one Caddy verified), so the token is
		// useless without that certificate's private key.
		claims.Cnf = &issuedCnf{X5tS256: x5tS256(verifiedLeaf(ex.r.TLS))}
	}
	token, jti, err := t.signer.sign(claims)
	if err != nil {
		t.audit.Error("signing an access token failed", zap.Error(err), zap.String("request_id", ex.requestID))
		return decision{Status: http.StatusInternalServerError, Reason: "token_signing_failed", Detail: err.Error()}
	}
	body, _ := json.Marshal(tokenResponse{AccessToken: token, TokenType: "Bearer", ExpiresIn: int64(t.ttl / time.Second), Scope: joined})
	h := tokenResponseHeader()
	if method != oauthreq.TLSClientAuth && t.auth.Phase == phaseJWTRollout {
		// Trading a key for a token is an API-key use like any other.
		h.Set("Deprecation", t.auth.depHeader)
		if t.auth.sunsetHeader != "" {
			h.Set("Sunset", t.auth.sunsetHeader)
		}
	}
	rec := &tokenAudit{ex: ex, issued: true, client: id.subject, method: method, scopes: joined, jti: jti, exp: claims.Expires}
	if claims.Cnf != nil {
		rec.cnf = claims.Cnf.X5tS256
	}
	return decision{Status: http.StatusOK, Answer: true, Header: h, Body: body, Audit: rec, Count: t.issued[id.subject]}
}

// authenticateClient finds the client: a secret (an API key, named by its
// client_id) when one was sent, else a verified, mapped client certificate.
func (t *TokenService) authenticateClient(ex *exchange, req *oauthreq.Request) (*identity, string, *oauthreq.Error) {
	if req.AuthMethod != "" {
		if len(req.ClientSecret) > maxTokenSize {
			return nil, req.AuthMethod, oauthreq.InvalidClient("unknown client or wrong secret")
		}
		id := t.auth.apiKeys.match(req.ClientSecret) // constant time over every key
		if id == nil || id.subject != req.ClientID {
			return nil, req.AuthMethod, oauthreq.InvalidClient("unknown client or wrong secret")
		}
		if t.auth.Phase == phaseJWTOnly {
			return nil, req.AuthMethod, oauthreq.InvalidClient("API keys are no longer accepted; use a client certificate")
		}
		return id, req.AuthMethod, nil
	}
	id, cerr := t.auth.authenticateCert(ex.r.TLS)
	switch {
	case id != nil && cerr == nil:
		if req.ClientID != "" && req.ClientID != id.subject {
			return nil, oauthreq.TLSClientAuth, oauthreq.InvalidClient("client_id does not match the client certificate")
		}
		return id, oauthreq.TLSClientAuth, nil
	case cerr != nil:
		return nil, oauthreq.TLSClientAuth, oauthreq.InvalidClient(cerr.desc)
	}
	return nil, "", oauthreq.InvalidClient("client authentication required")
}

// refuse answers with an RFC 6749 §5.2 error.
func (t *TokenService) refuse(ex *exchange, e *oauthreq.Error, client, method string) decision {
	reason := reasonTokenInvalidRequest
	switch e.Code {
	case "invalid_client":
		reason = reasonTokenInvalidClient
	case "invalid_scope":
		reason = reasonTokenInvalidScope
	case "unsupported_grant_type":
		reason = reasonTokenGrantType
	}
	h := tokenResponseHeader()
	switch e.Status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Basic realm="sechard"`)
	case http.StatusMethodNotAllowed:
		h.Set("Allow", http.MethodPost)
	}
	return decision{Status: e.Status, Answer: true, Header: h, Body: e.JSON(), Reason: reason, Detail: e.Description,
		Audit: &tokenAudit{ex: ex, reason: reason, code: e.Code, detail: e.Description, client: quoteForLog(client), method: method}}
}

// tokenAudit is the token service's audit entry for an issuance or a
// refusal: the client, never its secret or the token.
type tokenAudit struct {
	ex                   *exchange
	issued               bool
	reason, code, detail string // a refusal's
	client, method       string
	scopes, jti, cnf     string // an issuance's
	exp                  int64
}

var _ auditRecord = (*tokenAudit)(nil)

func (a *tokenAudit) entry() (string, zapcore.Level) {
	if a.issued {
		return "token issued", zapcore.InfoLevel
	}
	return "token refused", zapcore.WarnLevel
}

func (a *tokenAudit) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	if a.issued {
		enc.AddString("decision", "issue")
		enc.AddString("client", a.client)
		enc.AddString("method", a.method)
		enc.AddString("scopes", a.scopes)
		enc.AddString("jti", a.jti)
		enc.AddInt64("exp", a.exp)
	} else {
		enc.AddString("decision", "deny")
		enc.AddString("reason", a.reason)
		enc.AddString("error", a.code)
		enc.AddString("detail", a.detail)
		enc.AddString("client", a.client)
		enc.AddString("method", a.method)
	}
	enc.AddString("client_ip", clientIP(a.ex.r))
	enc.AddString("request_id", a.ex.requestID)
	if a.cnf != "" {
		enc.AddString("cnf_x5t_s256", a.cnf)
	}
	return nil
}
