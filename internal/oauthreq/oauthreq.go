package oauthreq

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// MaxBody bounds the bytes read from a token request's body.
const MaxBody = 8 << 10

// Error is an RFC 6749 §5.2 error response.
type Error struct {
	Status      int
	Code        string // invalid_request, invalid_client, unsupported_grant_type, invalid_scope, …
	Description string // for humans; never a secret
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

// JSON is the response body.
func (e *Error) JSON() []byte {
	b, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{e.Code, e.Description})
	return b
}

// Errors the caller may return too.
func InvalidRequest(desc string) *Error {
	return &Error{http.StatusBadRequest, "invalid_request", desc}
}
func InvalidClient(desc string) *Error {
	return &Error{http.StatusUnauthorized, "invalid_client", desc}
}
func InvalidScope(desc string) *Error { return &Error{http.StatusBadRequest, "invalid_scope", desc} }

// Client authentication methods (RFC 7591 names).
const (
	ClientSecretBasic = "client_secret_basic"
	ClientSecretPost  = "client_secret_post"
	TLSClientAuth     = "tls_client_auth" // RFC 8705 §2; the caller decides it from the connection
)

// Request is a parsed client-credentials token request.
type Request struct {
	ClientID     string
	ClientSecret string
	// AuthMethod is ClientSecretBasic or ClientSecretPost when a secret was
	// sent, "" when none was (the caller may then try the TLS certificate).
	AuthMethod string
	// Scopes requested, distinct, in the order sent; nil when no scope
	// parameter was sent.
	Scopes []string
}

// Parse reads a token request. It does not authenticate the client.
func Parse(r *http.Request) (*Request, *Error) {
	if r.Method != http.MethodPost {
		return nil, &Error{http.StatusMethodNotAllowed, "invalid_request", "the token endpoint takes POST"}
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, InvalidRequest("the body must be application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return nil, InvalidRequest("reading the body failed")
	}
	if len(body) > MaxBody {
		return nil, InvalidRequest("the body is too large")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, InvalidRequest("malformed form body")
	}
	for name, vals := range form {
		if len(vals) > 1 {
			return nil, InvalidRequest("parameter " + strings.ToValidUTF8(name, "?") + " sent more than once")
		}
	}
	switch gt := form.Get("grant_type"); gt {
	case "client_credentials":
	case "":
		return nil, InvalidRequest("grant_type is required")
	default:
		return nil, &Error{http.StatusBadRequest, "unsupported_grant_type", "only client_credentials is supported"}
	}
	req := &Request{}
	if v, ok := form["scope"]; ok {
		if req.Scopes, err = parseScope(v[0]); err != nil {
			return nil, InvalidScope(err.Error())
		}
	}

	id, secret := form.Get("client_id"), form.Get("client_secret")
	if auth := r.Header.Values("Authorization"); len(auth) > 0 {
		if len(auth) > 1 {
			return nil, InvalidRequest("more than one Authorization header")
		}
		bid, bsecret, err := basicCredentials(auth[0])
		if err != nil {
			return nil, InvalidClient(err.Error())
		}
		if secret != "" {
			return nil, InvalidRequest("client credentials sent both in Authorization and in the body")
		}
		if id != "" && id != bid {
			return nil, InvalidRequest("client_id in the body differs from the Basic credentials")
		}
		req.ClientID, req.ClientSecret, req.AuthMethod = bid, bsecret, ClientSecretBasic
		return req, nil
	}
	req.ClientID = id
	if secret != "" {
		if id == "" {
			return nil, InvalidRequest("client_secret without client_id")
		}
		req.ClientSecret, req.AuthMethod = secret, ClientSecretPost
	}
	return req, nil
}

// basicCredentials decodes an `Authorization: Basic` value. RFC 6749
// §2.3.1: client_id and secret are form-urlencoded before Basic encoding.
func basicCredentials(v string) (id, secret string, err error) {
	const scheme = "basic "
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", "", errors.New("only Basic client authentication is accepted here")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimLeft(v[len(scheme):], " "))
	if err != nil {
		return "", "", errors.New("malformed Basic credentials")
	}
	encID, encSecret, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", errors.New("malformed Basic credentials")
	}
	if id, err = url.QueryUnescape(encID); err != nil {
		return "", "", errors.New("malformed Basic credentials")
	}
	if secret, err = url.QueryUnescape(encSecret); err != nil {
		return "", "", errors.New("malformed Basic credentials")
	}
	if id == "" || secret == "" {
		return "", "", errors.New("empty client_id or secret")
	}
	return id, secret, nil
}

// parseScope splits a scope parameter (RFC 6749 §3.3: scope-tokens of
// %x21 / %x23-5B / %x5D-7E separated by single spaces; repeated spaces are
// tolerated).
func parseScope(s string) ([]string, error) {
	scopes := []string{}
	for tok := range strings.SplitSeq(s, " ") {
		if tok == "" {
			continue
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
				return nil, errors.New("scope holds a character RFC 6749 §3.3 does not allow")
			}
		}
		if !slices.Contains(scopes, tok) {
			scopes = append(scopes, tok)
		}
	}
	return scopes, nil
}
