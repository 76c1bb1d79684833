package jwtverify

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/MicahParks/jwkset"
	"go.uber.org/zap"
)

// SkippedKey is a JWK [ParseJWKS] left out, and why.
type SkippedKey struct {
	KID    string // as the JWK names it; "" when it has none or is unreadable
	Index  int    // position in the set's "keys"
	Reason string
}

// ParseJWKS turns a JWK Set document (RFC 7517 §5) into verification keys.
// A key a Verifier cannot use (another `use`, symmetric, unsupported type,
// curve, size or alg, malformed) is skipped and reported in skipped, so one
// odd key does not take the others down; only a set with no usable key is
// an error. x5u and x5c members are ignored, never fetched. A key without
// kid gets its [Thumbprint].
func ParseJWKS(data []byte) (keys []*Key, skipped []SkippedKey, err error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, nil, fmt.Errorf("decoding JWK Set: %v", err)
	}
	for i, raw := range set.Keys {
		key, kid, err := parseJWK(raw)
		if err != nil {
			skipped = append(skipped, SkippedKey{KID: kid, Index: i, Reason: err.Error()})
			continue
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, skipped, errors.New("JWK Set has no usable signing keys")
	}
	return keys, skipped, nil
}

// parseJWK checks one JWK; kid is returned even when the key is refused, for
// the warning.
func parseJWK(raw json.RawMessage) (key *Key, kid string, err error) {
	var m jwkset.JWKMarshal
	if err := json.Unmarshal(raw, &m); err != nil {
		var k struct {
			KID string `json:"kid"`
		}
		json.Unmarshal(raw, &k) // best effort, for the warning
		return nil, k.KID, fmt.Errorf("malformed key: %v", err)
	}
	switch {
	case m.USE != "" && m.USE != jwkset.UseSig:
		return nil, m.KID, fmt.Errorf("use %q, not sig", m.USE)
	case m.KTY == jwkset.KtyOct:
		return nil, m.KID, errors.New("symmetric key")
	case m.ALG != "" && !slices.Contains(Algorithms, string(m.ALG)):
		return nil, m.KID, fmt.Errorf("alg %q not supported", m.ALG)
	}
	m.X5U, m.X5C, m.X5T, m.X5TS256 = "", nil, "", ""
	m.D, m.P, m.Q, m.DP, m.DQ, m.QI, m.OTH = "", "", "", "", "", "", nil
	jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
	if err != nil {
		return nil, m.KID, err
	}
	pub, err := CheckKey(jwk.Key())
	if err != nil {
		return nil, m.KID, err
	}
	kid = m.KID
	if kid == "" {
		kid = Thumbprint(pub)
	}
	return &Key{KID: kid, Public: pub, Alg: string(m.ALG)}, kid, nil
}

// LogSkipped writes one warning per key [ParseJWKS] left out of the set
// read from source (a file name or URL).
func LogSkipped(logger *zap.Logger, source string, skipped []SkippedKey) {
	for _, s := range skipped {
		logger.Warn("JWKS key skipped: sechard cannot use it",
			zap.String("source", source), zap.String("kid", s.KID),
			zap.Int("index", s.Index), zap.String("reason", s.Reason))
	}
}
