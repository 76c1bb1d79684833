// Package jwtverify verifies JSON Web Tokens (RFC 7519) signed as compact
// JWS (RFC 7515) with asymmetric keys, for a gate that must never accept a
// token its keys did not sign.
//
// A [Verifier] is built once from a [Config]: the accepted algorithms, the
// clock skew allowed, the longest token lifetime, the required issuer and
// audience, static keys, and optionally a JWKS URL ([RemoteConfig]). Its
// Verify method accepts a token only when all of these hold:
//
//   - It is at most [MaxTokenSize] bytes, three canonical base64url
//     segments, and its header and claims are each one JSON object in
//     which no member is named twice, at any depth, even differing only in
//     case or escaping (encoding/json would silently keep the last one).
//   - Its alg is one of Config.Algorithms (a subset of [Algorithms]: never
//     none, never HMAC) and fits the key's type and curve, and the key's
//     own alg when it has one.
//   - Its key is found by kid only; a token names its key, it never brings
//     one (jku, x5u, jwk and x5c are never read). A token without kid is
//     accepted only when exactly one key is configured. A token with a
//     crit header is refused: no extension is understood.
//   - Its signature verifies (golang-jwt/jwt/v5).
//   - exp and iat are present JSON numbers, nbf when present too; exp is
//     not past, nbf and iat not in the future, each with Config.Leeway;
//     exp - iat is at most Config.MaxTTL; iss and aud match when
//     configured. Claim names match exactly.
//   - Its cnf claim, when present, is exactly one well-formed x5t#S256
//     (RFC 8705 §3.1). Any other confirmation method is refused, never
//     ignored. Whether the request's certificate matches is the caller's
//     check: [Claims].Cert says what to match.
//
// A refusal is an [*Error] whose [Kind] says why; callers map kinds to
// their own messages and never need an error's text.
//
// The caller turns the claims of an accepted token into its own value (the
// accept function given to [New]). That value is cached with the token
// until its exp plus leeway, in a bounded cache (10,000 tokens of at most 4
// KiB), so a repeated token costs a map lookup and a string comparison: no
// signature check and no allocation. A cached token is dropped as soon as
// the key that verified it is no longer configured. Checks that depend on
// the request, such as revocation and certificate binding, are not cached
// here: the caller makes them on every request.
//
// Keys must pass [CheckKey]: RSA of 2048 bits or more, ECDSA P-256, P-384
// or P-521, Ed25519. [ParseJWKS] skips the keys of a JWK Set it cannot use
// and says why, so that one odd key does not take the others down.
//
// With a JWKS URL, the set is fetched when the Verifier is built, refreshed
// every RemoteConfig.Refresh until the context given to New is done, and
// refetched when a token names an unknown kid, at most once per 30 seconds,
// a request waiting at most 2 seconds for it. A failed fetch keeps the last
// good set.
//
// A Verifier is safe for concurrent use. Keys are swapped atomically; a
// verification in progress uses one consistent key set.
package jwtverify
