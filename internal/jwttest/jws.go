package jwttest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Base64URL is base64url without padding, as in a JWS.
func Base64URL(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// MustJSON marshals v, panicking on error.
func MustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Claims returns a valid claim set issued at now, plus overrides (a nil
// value deletes the claim).
func Claims(now time.Time, overrides map[string]any) map[string]any {
	c := map[string]any{
		"sub":    "service-bi",
		"iss":    "https://auth.test",
		"aud":    "nl-query-api",
		"iat":    now.Unix(),
		"exp":    now.Add(time.Minute).Unix(),
		"jti":    "jti-" + fmt.Sprint(now.UnixNano()),
		"scopes": []string{"nl-query:read", "schema:read"},
	}
	for k, v := range overrides {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// SignRaw builds a compact JWS over the exact header and payload bytes
// given, signed for real with key using alg.
func SignRaw(alg string, key any, header, payload []byte) string {
	signing := Base64URL(header) + "." + Base64URL(payload)
	sig, err := jwt.GetSigningMethod(alg).Sign(signing, key)
	if err != nil {
		panic(err)
	}
	return signing + "." + Base64URL(sig)
}

// Sign signs claims with Keys' key kid (and its algorithm) under the header
// {"alg", "typ": "JWT", "kid"}, with members from headerOverrides added (a
// nil value deletes one).
func Sign(kid string, claims, headerOverrides map[string]any) string {
	k := Keys()
	alg := k.Algs[kid]
	h := map[string]any{"alg": alg, "typ": "JWT", "kid": kid}
	for name, v := range headerOverrides {
		if v == nil {
			delete(h, name)
		} else {
			h[name] = v
		}
	}
	return SignRaw(alg, k.Signers[kid], MustJSON(h), MustJSON(claims))
}
