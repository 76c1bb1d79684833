// Package corsparse holds sechard's CORS machinery that handles hostile or
// hand-written input: origin allowlist entries (parsed once, at provision)
// and the Access-Control-Request-Headers list (parsed on every preflight).
//
// Guarantees:
//
//   - [ParseOrigin] accepts only an http or https scheme, a host and an
//     optional port, and returns the origin serialised the way browsers send
//     it in the Origin header (RFC 6454 §6.1, WHATWG URL "serialize an
//     origin"): scheme and host in lower case, the scheme's default port
//     dropped. Everything else (wildcards, other schemes, "null", paths,
//     queries, fragments, user info, whitespace, non-ASCII hosts) is an
//     [*OriginError] saying why. Its result is a fixed point:
//     ParseOrigin(o) == o for every o it returns.
//   - [CheckHeaderList] decides whether every element of a comma-separated
//     field-name list (RFC 9110 §5.6.1) is in an allowlist, comparing names
//     case-insensitively (ASCII only). Its cost is bounded whatever the input:
//     a list longer than [MaxListBytes] or with more than [MaxListElements]
//     elements is refused before (or while) scanning, so a megabyte of commas
//     is refused in constant time, and it never allocates.
//
// Origins are matched elsewhere by exact map lookup of the Origin header's
// bytes: never by prefix, suffix or pattern (jub0bs/cors GHSA-vhxv-fg4m-p2w8).
package corsparse
