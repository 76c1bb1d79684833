// Package jwttest holds the JWT and JWK test fixtures shared by the root
// package's tests and internal/jwtverify's tests, which cannot share
// _test.go helpers across packages.
//
// It is imported only by _test.go files, so it never reaches the Caddy
// binary; it imports neither the root package nor internal/jwtverify (no
// import cycles). It offers:
//
//   - Claims: a valid claim set issued at a given time, with overrides.
//   - SignRaw: a compact JWS signed for real over the exact header and
//     payload bytes given; Sign: claims signed with one of Keys' keys, with
//     header overrides.
//   - Keys: real keys generated once per test process, one per algorithm
//     (ES256, ES384, ES512, EdDSA, RS256) by kid, plus an ES256 key nobody
//     configured.
//   - ECP256JWK and Ed25519JWK: public keys rendered as JWKs.
//   - UnusableJWKs: JWKs a verifier cannot use, by kid.
//   - Base64URL and MustJSON: the encodings a JWS is made of.
package jwttest
