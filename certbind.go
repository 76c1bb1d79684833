package sechard

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"hash/maphash"
	"sync/atomic"
)

// Certificate-bound access tokens (RFC 8705 §3): a token whose `cnf` claim
// holds `x5t#S256`, the SHA-256 thumbprint of a client certificate, is
// accepted only on a request whose connection presented that certificate
// and Caddy's TLS stack verified it. A copied token is then useless without
// the certificate's private key.

// reasonTokenBinding is the refusal reason (audit, metrics, events) of a
// bound token presented without its certificate.
const reasonTokenBinding = "token_binding_mismatch"

var (
	errTokenBinding = &credError{reasonTokenBinding, "token is bound to another client certificate"}
	// A cnf claim other than one well-formed x5t#S256 (jwtverify refuses
	// it: ignoring it would turn a sender-constrained token into a bearer
	// token).
	errTokenCnf = &credError{"auth_invalid", "unsupported token confirmation method (cnf)"}
)

// certBinding is what a bound token's identity carries: the thumbprint the
// request's certificate must have.
type certBinding struct {
	sum [32]byte
	x5t string // base64url, for the audit log
}

// matches reports whether the request's connection presented, and Caddy
// verified, the certificate the token is bound to. Only VerifiedChains
// counts (never PeerCertificates alone, never a header); plain HTTP never
// matches.
func (b *certBinding) matches(cs *tls.ConnectionState) bool {
	leaf := verifiedLeaf(cs)
	if leaf == nil {
		return false
	}
	return leafThumbprint(leaf) == b.sum
}

// x5tS256 is the RFC 8705 §3.1 thumbprint of a certificate: base64url
// (unpadded) of the SHA-256 of its DER encoding.
func x5tS256(c *x509.Certificate) string {
	sum := leafThumbprint(c)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// thumbMemo remembers the thumbprints of recently seen client
// certificates, keyed by the *x509.Certificate pointer: Go's TLS server
// parses the client's certificate once per handshake, and every request on
// that connection sees the same pointer in VerifiedChains, so a bound token
// costs one SHA-256 per connection instead of one per request (~1 µs for a
// 1 KB certificate). It is a fixed-size, direct-mapped table of immutable
// entries: a lookup is an atomic load and a pointer comparison, no lock and
// no allocation; two hot certificates in one slot only cost extra hashing.
// An entry holds its certificate, so the address cannot be reused by
// another certificate while the entry exists; the table's size bounds what
// it retains.
type thumbMemo struct {
	seed  maphash.Seed
	slots [thumbMemoSlots]atomic.Pointer[thumbEntry]
}

const thumbMemoSlots = 256

type thumbEntry struct {
	leaf *x509.Certificate
	sum  [32]byte
}

var certThumbs = newThumbMemo()

func newThumbMemo() *thumbMemo { return &thumbMemo{seed: maphash.MakeSeed()} }

func leafThumbprint(leaf *x509.Certificate) [32]byte {
	return certThumbs.get(leaf)
}

func (m *thumbMemo) get(leaf *x509.Certificate) [32]byte {
	// The pointer's hash (maphash hashes the address itself, without
	// unsafe), seeded per process.
	slot := &m.slots[maphash.Comparable(m.seed, leaf)%thumbMemoSlots]
	if e := slot.Load(); e != nil && e.leaf == leaf {
		return e.sum
	}
	e := &thumbEntry{leaf: leaf, sum: sha256.Sum256(leaf.Raw)}
	slot.Store(e)
	return e.sum
}

// checkBinding applies a bound identity's certificate check to the
// request's connection.
func checkBinding(id *identity, cs *tls.ConnectionState) *credError {
	if id == nil || id.bound == nil || id.bound.matches(cs) {
		return nil
	}
	return errTokenBinding
}
