// Package sechard is a Caddy HTTP handler (module http.handlers.sechard,
// Caddyfile directive sechard) that hardens an API at the edge: request IDs
// (SEC-06), security response headers (SEC-07), a CORS allowlist (SEC-04),
// per-route and per-identity rate limiting in memory or Redis (SEC-09), fail-fast secrets
// (SEC-03), and authentication with API keys, JWTs and mTLS identities with
// scopes per endpoint, rollout phases and revocation (SEC-10).
//
// Handler.ServeHTTP runs the stages in that contract order; each stage
// returns a decision, and Handler.conclude turns a refusal into a
// caddyhttp.Error (or, in report mode, a log line and a metric).
package sechard
