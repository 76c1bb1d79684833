package sechard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves sechard's operator endpoints on Caddy's admin API, so they
// get its access controls (listen address, origins, remote admin identities):
//
//	POST /sechard/revocations  {"jti": "...", "exp": <unix>} or {"sub": "...", "before": <unix>}
//	GET  /sechard/revocations  the local view of every active revocation list
//
// Caddy loads every registered admin.api.* module with its admin endpoint;
// no configuration is needed.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.sechard",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes returns sechard's admin routes.
func (a *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{
		Pattern: "/sechard/revocations",
		Handler: caddy.AdminHandlerFunc(a.handleRevocations),
	}}
}

// revocationRequest is the body of POST /sechard/revocations.
type revocationRequest struct {
	// JTI revokes one token; Exp is its exp claim (unix seconds): the
	// revocation is forgotten once leeway has passed after it.
	JTI string `json:"jti,omitempty"`
	Exp int64  `json:"exp,omitempty"`
	// Sub revokes a subject's tokens issued before Before (unix seconds;
	// default: every token issued until now, this second included).
	Sub    string `json:"sub,omitempty"`
	Before *int64 `json:"before,omitempty"`
}

// maxRevocationField bounds a jti or subject: they become map keys and Redis
// keys.
const maxRevocationField = 1024

func (a *adminAPI) handleRevocations(w http.ResponseWriter, r *http.Request) error {
	switch r.Method {
	case http.MethodGet:
		return a.listRevocations(w)
	case http.MethodPost:
		return a.addRevocation(w, r)
	}
	return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed,
		Err: fmt.Errorf("method not allowed: %s", r.Method)}
}

func (a *adminAPI) listRevocations(w http.ResponseWriter) error {
	type key struct{ kind, value, source string }
	seen := make(map[key]bool)
	out := struct {
		Instances   int               `json:"instances"`
		Revocations []revocationEntry `json:"revocations"`
	}{Revocations: []revocationEntry{}}
	for _, rv := range activeRevocations() {
		out.Instances++
		for _, e := range rv.entries() {
			k := key{"jti", e.JTI, e.Source}
			if e.JTI == "" {
				k = key{"sub", e.Sub, e.Source}
			}
			if !seen[k] {
				seen[k] = true
				out.Revocations = append(out.Revocations, e)
			}
		}
	}
	sort.Slice(out.Revocations, func(i, j int) bool {
		x, y := out.Revocations[i], out.Revocations[j]
		if x.JTI+x.Sub != y.JTI+y.Sub {
			return x.JTI+x.Sub < y.JTI+y.Sub
		}
		return x.Source < y.Source
	})
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

func (a *adminAPI) addRevocation(w http.ResponseWriter, r *http.Request) error {
	var req revocationRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64*1024))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return badRevocation("decoding request: %v", err)
	}
	active := activeRevocations()
	if len(active) == 0 {
		return caddy.APIError{HTTPStatus: http.StatusConflict,
			Err: errors.New("no revocation list is configured in the running config (auth > revocation)")}
	}
	// One entry for every list: it must outlive the longest-lived tokens
	// any of them accepts.
	var bounds tokenBounds
	for _, rv := range active {
		bounds = bounds.widen(rv.bounds)
	}
	now := time.Now()
	e, err := req.entry(now, bounds)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
	}

	// Write once to each distinct Redis, and to memory if any active list
	// has no Redis; then make every list on this node see it at once.
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	var stored []string
	done := make(map[string]bool)
	for _, rv := range active {
		target := "memory"
		if rv.client != nil {
			target = redactURL(rv.Redis)
		}
		if done[rv.Redis] {
			continue
		}
		done[rv.Redis] = true
		if rv.client != nil {
			re := e
			re.Source = "redis"
			if err := addRedisRevocation(ctx, rv.client, re); err != nil {
				return caddy.APIError{HTTPStatus: http.StatusBadGateway,
					Err: fmt.Errorf("storing revocation in %s: %v", target, err)}
			}
		} else {
			me := e
			me.Source = "admin"
			localRevocations.add(me, now.Unix())
		}
		stored = append(stored, target)
	}
	for _, rv := range active {
		rv.refreshNow(ctx)
	}

	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(struct {
		Revoked revocationEntry `json:"revoked"`
		Stored  []string        `json:"stored"`
	}{e, stored})
}

// entry validates the request and turns it into an entry that expires once
// no token it covers can be accepted within b.
func (req revocationRequest) entry(now time.Time, b tokenBounds) (revocationEntry, error) {
	switch {
	case req.JTI != "" && req.Sub != "":
		return revocationEntry{}, errors.New("give either jti (with exp) or sub (with before), not both")
	case req.JTI != "":
		if len(req.JTI) > maxRevocationField {
			return revocationEntry{}, fmt.Errorf("jti longer than %d bytes", maxRevocationField)
		}
		if req.Before != nil {
			return revocationEntry{}, errors.New("before goes with sub; a jti takes exp")
		}
		if req.Exp <= 0 {
			return revocationEntry{}, errors.New("exp (the token's exp claim, unix seconds) is required with jti, so the revocation can expire with the token")
		}
		expires := b.jtiExpiry(req.Exp)
		if expires < now.Unix() {
			return revocationEntry{}, fmt.Errorf("exp %d is long past: the token has already expired", req.Exp)
		}
		return revocationEntry{JTI: req.JTI, Exp: req.Exp, expires: expires}, nil
	case req.Sub != "":
		if len(req.Sub) > maxRevocationField {
			return revocationEntry{}, fmt.Errorf("sub longer than %d bytes", maxRevocationField)
		}
		if req.Exp != 0 {
			return revocationEntry{}, errors.New("exp goes with jti; a sub takes before")
		}
		// Default: every token issued up to now. iat has whole seconds, so
		// a token issued in this very second (iat == now) is included too.
		before := now.Unix() + 1
		if req.Before != nil {
			before = *req.Before
		}
		if before <= 0 {
			return revocationEntry{}, errors.New("before must be unix seconds")
		}
		expires := b.subExpiry(before)
		if expires < now.Unix() {
			return revocationEntry{}, fmt.Errorf("before %d is long past: every token issued before it has expired", before)
		}
		return revocationEntry{Sub: req.Sub, Before: &before, expires: expires}, nil
	}
	return revocationEntry{}, errors.New(`want {"jti": "...", "exp": <unix>} or {"sub": "...", "before": <unix>}`)
}

func badRevocation(format string, args ...any) error {
	return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf(format, args...)}
}

// Interface guards
var (
	_ caddy.AdminRouter = (*adminAPI)(nil)
)
