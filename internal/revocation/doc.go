// Package revocation holds sechard's revocation lists: the file format, the
// lifetime of a revocation, the immutable snapshot the request path reads,
// the process-wide in-memory list and the Redis layout shared by a fleet.
//
// A token is revoked when its jti is listed, or when its subject is listed
// and the token was issued before the subject's revocation time.
//
// Guarantees:
//
//   - [ParseFile] reads one revocation per line: `<jti>`, `sub:<subject>`
//     or `sub:<subject> <unix seconds>`, with `#` comments at the start of a
//     line or after whitespace. A subject may hold spaces; its last field is
//     the time only when it is all digits. A malformed line is returned as a
//     [BadLine] (its number and what is wrong) and the rest still applies; a
//     line longer than 64 KiB is an error. Entries read back the same when
//     written as lines.
//   - A revocation lasts exactly as long as a token it covers can still be
//     accepted ([Bounds]): a jti until its exp plus leeway, a subject until
//     its time plus max_ttl plus leeway. [Request.Entry] refuses requests
//     that cover nothing any more, fields longer than [MaxField] bytes, and
//     ambiguous or incomplete requests, saying why.
//   - [Set.Revoked] is two map lookups in an immutable snapshot: no locks,
//     no allocations, safe for any number of concurrent readers. A Set is
//     never modified after [NewSet]; a new one replaces it.
//   - [Memory] is safe for concurrent use and forgets entries once expired.
//   - In Redis ([AddRedis], [ReadRedis]) each revocation is its own key and
//     an index member, written by one script so they agree, and each key
//     expires by itself; every key carries the {revoked} hash tag, so a
//     Redis Cluster keeps them in one slot.
package revocation
