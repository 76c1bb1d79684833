// Package reqpath decides whether a request path, in the form it was sent on
// the wire, can be read two ways, and rewrites it into the one form every
// reader agrees on.
//
// The danger it closes: Caddy's path matcher decodes escapes and resolves dot
// segments before matching, while reverse_proxy forwards the raw path, and an
// upstream router (Go's http.ServeMux, Tomcat, IIS, …) reads that raw path
// its own way. A request for /nl-query/..%2Fhealthz matches `/healthz` at the
// edge and reaches /nl-query/{q} upstream (Istio CVE-2021-31920 is the same
// class of bug).
//
// Guarantees:
//
//   - [Check] reports a [Problem] for every raw path in which an encoded "/" or
//     "\" (any case), a literal "\", an encoded or literal control byte
//     (0x00–0x1F, 0x7F), a malformed escape, a "." or ".." segment (each dot
//     plain or %2E in any case, also with ";params" after it, which Tomcat reads
//     as the bare segment) or an empty segment ("//") appears. A trailing "/" is
//     not an empty segment. It allocates nothing and reads each byte once.
//   - For a path Check accepts, decoding the whole path and decoding it
//     segment by segment give the same result, and cleaning it (path.Clean,
//     trailing slash kept) changes nothing: the edge and the upstream see one
//     path.
//   - [Normalize] returns a path Check accepts, or false. The result has escaped
//     slashes and backslashes turned into "/", escapes of unreserved characters
//     (RFC 3986 §2.3) decoded, other escapes kept (hex in upper case), dot
//     segments resolved and slashes merged. It refuses paths with control
//     bytes, malformed escapes or dot segments carrying ";params": no clean form
//     of those reads the same everywhere. Normalize(Normalize(p)) == Normalize(p).
package reqpath
