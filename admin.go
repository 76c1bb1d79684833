package sechard

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/sechard/sechard/internal/revocation"
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
		Instances   int                `json:"instances"`
		Revocations []revocation.Entry `json:"revocations"`
	}{Revocations: []revocation.Entry{}}
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
	slices.SortFunc(out.Revocations, func(x, y revocation.Entry) int {
		return cmp.Or(cmp.Compare(x.JTI+x.Sub, y.JTI+y.Sub), cmp.Compare(x.Source, y.Source))
	})
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

// addRevocation handles POST /sechard/revocations (body: revocation.Request).
func (a *adminAPI) addRevocation(w http.ResponseWriter, r *http.Request) error {
	var req revocation.Request
	dec := json.NewDecoder(io.LimitReader(r.Body, 64*1024))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("decoding request: %v", err)}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	e, stored, err := revoke(ctx, req, time.Now())
	var storeErr revocationStoreError
	switch {
	case errors.Is(err, errNoRevocationList):
		return caddy.APIError{HTTPStatus: http.StatusConflict, Err: err}
	case errors.As(err, &storeErr):
		return caddy.APIError{HTTPStatus: http.StatusBadGateway, Err: err}
	case err != nil:
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(struct {
		Revoked revocation.Entry `json:"revoked"`
		Stored  []string         `json:"stored"`
	}{e, stored})
}

// Interface guards
var (
	_ caddy.AdminRouter = (*adminAPI)(nil)
)
