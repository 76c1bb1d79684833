// Package redistest is test support for Redis: it starts throw-away
// redis-server processes on loopback and runs redis-benchmark next to the
// benchmarks of the Redis rate-limit store.
//
// It is imported ONLY by _test.go files (of the root package and of
// internal/ratelimit), so it never reaches the Caddy binary. Its files are
// ordinary .go files only because _test.go helpers cannot be shared across
// packages.
//
// Policy, as the root package's harness decides: under `go test -short`
// whatever needs redis-server skips, with a message saying so; the full run
// (go test ./...) fails when redis-server is missing, and never skips.
package redistest
