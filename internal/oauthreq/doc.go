// Package oauthreq parses OAuth 2.0 token requests (RFC 6749 §4.4, the
// client-credentials grant) as they arrive from the network, and writes
// the error responses of RFC 6749 §5.2.
//
// Guarantees:
//
//   - [Parse] reads at most [MaxBody] bytes of body and never the query
//     string: credentials in a URL end up in logs (RFC 6749 §2.3.1).
//   - The body must be application/x-www-form-urlencoded; a parameter sent
//     twice, or a malformed encoding, is invalid_request (RFC 6749 §3.2).
//   - Client credentials come from exactly one place: HTTP Basic
//     (client_secret_basic, with client_id and secret form-urlencoded before
//     Basic encoding, §2.3.1) or the body (client_secret_post). Both at once
//     is invalid_request. A Basic header that does not decode is
//     invalid_client.
//   - The scope parameter is split on spaces into distinct scope tokens;
//     a token with a character outside RFC 6749 §3.3's set is invalid_scope.
//   - Nothing here compares secrets; the caller does, in constant time.
package oauthreq
