// Package sechard is a Caddy HTTP handler (module http.handlers.sechard,
// Caddyfile directive sechard) that hardens an API at the edge: request IDs
// (SEC-06), security response headers (SEC-07), a CORS allowlist (SEC-04),
// per-route and per-identity rate limiting in memory or Redis (SEC-09),
// fail-fast secrets (SEC-03), an OAuth 2.0 token service, and authentication
// with API keys, JWTs and mTLS identities with scopes per endpoint, rollout
// phases and revocation (SEC-10).
//
// Handler.ServeHTTP assigns the request ID, sets the security headers, then
// runs the gates (see gate.go) in the contract's order; each returns a
// decision, and Handler.conclude turns it into the log entry, the metric,
// the event and, when the request must not go on, the response. The
// machinery lives in internal packages, each documenting what it guarantees.
package sechard
