// Package redisconn turns sechard's Redis configuration (one server, Redis
// Cluster or a primary found through Redis Sentinel; URL, user, password,
// TLS CA) into a go-redis client fit for a request path, and keeps
// passwords out of every message about it.
//
// Guarantees:
//
//   - [ParseArgs] accepts `[cluster|sentinel] <url> [password_secret NAME]
//     [username NAME] [tls_ca FILE]` and checks it with [Config.Validate],
//     the same check [Config.Prepare] makes for a JSON config: the URL must
//     parse for its topology, a Sentinel URL must name its master, and
//     tls_ca needs a rediss:// URL. No error, log line or [Config.String]
//     quotes a password: URLs go through [RedactURL].
//   - A client from [Prepared.NewClient] never retries on its own, honours
//     its context's deadline, bounds every read, write and pool wait by
//     [Params.Timeout] and every dial by at least 500ms, so an outage costs
//     a caller at most one timeout. It speaks RESP2 and skips the
//     handshakes go-redis lets it skip (CLIENT SETINFO; maintenance
//     notifications; a Cluster's COMMAND), which would add round trips.
//   - [Prepared.Check] pings once and returns only errors that no retry
//     can fix (TLS verification, TLS against a plain-text server, a cluster
//     URL on a server without cluster support); an unreachable server is
//     left to the caller, which falls back as in any outage.
//   - [Prepared.Key] is equal for two configurations exactly when their
//     clients are interchangeable, so callers may share one client per key;
//     it holds a digest of the password and of the CA file, never the
//     password itself.
//
// The package holds no state: sharing clients across config reloads is the
// caller's business. Everything here runs at config load except [Failed]
// and [ErrorHint], which are cheap enough for a request's error path.
package redisconn
