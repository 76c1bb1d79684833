package sechard

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"
)

// APIKey is one named shared key (the runbook's legacy credential).
type APIKey struct {
	// The name of the secret that holds the key (resolved like every
	// secret: env NAME, the file in NAME_FILE, or <dir>/NAME). The name,
	// never the value, identifies the holder in logs and X-Auth-Subject.
	Secret string `json:"secret"`

	// The scopes the key grants. No scopes means legacy full access: the
	// key satisfies every `require` (a startup warning says so).
	Scopes []string `json:"scopes,omitempty"`
}

// apiKeySet holds SHA-256 digests of the configured keys. Comparing
// fixed-size digests means the comparison time leaks neither which key
// matched nor a key's length (subtle.ConstantTimeCompare returns early on
// a length mismatch, which raw keys of different lengths would expose).
type apiKeySet struct {
	digests [][sha256.Size]byte
	ids     []*identity
}

func newAPIKeySet(keys []APIKey, secrets secretValues) *apiKeySet {
	s := &apiKeySet{}
	for _, k := range keys {
		s.digests = append(s.digests, sha256.Sum256([]byte(secrets[k.Secret].Value())))
		id := &identity{method: "api_key", subject: k.Secret, scopes: dedupe(append([]string(nil), k.Scopes...)), full: len(k.Scopes) == 0}
		id.joined = strings.Join(id.scopes, " ")
		s.ids = append(s.ids, id)
	}
	return s
}

// match finds the key holder. Every configured key is compared, whatever
// matched before, so the time taken does not depend on which key (if any)
// was presented.
func (s *apiKeySet) match(presented string) *identity {
	d := sha256.Sum256([]byte(presented))
	found := -1
	for i := range s.digests {
		eq := subtle.ConstantTimeCompare(d[:], s.digests[i][:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return nil
	}
	return s.ids[found]
}
