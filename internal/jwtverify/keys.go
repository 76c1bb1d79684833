package jwtverify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Key is one public key tokens may be verified with. A Key is not changed
// once a [Verifier] holds it: the verified-token cache compares Key
// pointers to know whether the key that verified a token is still in use.
type Key struct {
	// KID is the key ID tokens name in their `kid` header.
	KID string
	// Public is *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey, as
	// [CheckKey] returns: typed public keys only, never []byte, so no HMAC
	// verification can ever use a public key's bytes as its secret
	// (algorithm confusion).
	Public crypto.PublicKey
	// Alg, when set (a JWK's own "alg"), is the only algorithm the key
	// verifies.
	Alg string
}

// accepts reports whether alg may be verified with this key: the algorithm
// family must match the key type, and for ECDSA the curve too (RFC 7518
// §3.4).
func (k *Key) accepts(alg string) bool {
	if k.Alg != "" && k.Alg != alg {
		return false
	}
	switch key := k.Public.(type) {
	case *rsa.PublicKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return true
		}
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return key.Curve == elliptic.P256()
		case "ES384":
			return key.Curve == elliptic.P384()
		case "ES512":
			return key.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// CheckKey accepts only the public key types and sizes a Verifier verifies
// with: RSA of 2048 bits or more (odd modulus, odd exponent from 3 to
// 2³¹-1), ECDSA on P-256, P-384 or P-521, and Ed25519. A private key is
// refused: configuring one where a public key belongs is a mistake.
func CheckKey(key any) (crypto.PublicKey, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits is too short (2048 or more)", k.N.BitLen())
		}
		// crypto/rsa refuses to verify with these; refuse them at load.
		if k.N.Bit(0) == 0 || k.E < 3 || k.E&1 == 0 || k.E > 1<<31-1 {
			return nil, errors.New("invalid RSA key (even modulus or bad exponent)")
		}
		return k, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return k, nil
		}
		return nil, fmt.Errorf("unsupported ECDSA curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 key size")
		}
		return k, nil
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return nil, errors.New("a private key; configure only the public key")
	}
	return nil, fmt.Errorf("unsupported key type %T", key)
}

// LoadPEMKey reads a public key from the first PEM block of a file: PUBLIC
// KEY (PKIX), RSA PUBLIC KEY (PKCS #1) or CERTIFICATE (its key). The key
// must pass [CheckKey].
func LoadPEMKey(file string) (crypto.PublicKey, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var key any
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		if strings.Contains(block.Type, "PRIVATE KEY") {
			return nil, errors.New("a private key; configure only the public key")
		}
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	return CheckKey(key)
}

// Thumbprint is the RFC 7638 JWK thumbprint of a public key (SHA-256,
// unpadded base64url), the default key ID. It is "" for a key type
// [CheckKey] refuses.
func Thumbprint(key crypto.PublicKey) string {
	b64 := base64.RawURLEncoding.EncodeToString
	var members string
	switch k := key.(type) {
	case *rsa.PublicKey:
		e := make([]byte, 0, 4)
		for v := k.E; v > 0; v >>= 8 {
			e = append([]byte{byte(v)}, e...)
		}
		members = fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, b64(e), b64(k.N.Bytes()))
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		ecdh, err := k.Bytes() // uncompressed point: 0x04 || X || Y
		if err != nil {
			return ""
		}
		members = fmt.Sprintf(`{"crv":%q,"kty":"EC","x":%q,"y":%q}`, k.Curve.Params().Name,
			b64(ecdh[1:1+size]), b64(ecdh[1+size:]))
	case ed25519.PublicKey:
		members = fmt.Sprintf(`{"crv":"Ed25519","kty":"OKP","x":%q}`, b64(k))
	default:
		return ""
	}
	sum := sha256.Sum256([]byte(members))
	return b64(sum[:])
}

// keySet is an immutable snapshot of every key; a new one replaces it
// atomically when the JWKS URL brings new keys.
type keySet struct {
	byKID map[string]*Key
	// only is the single configured key, which tokens may use without kid.
	only *Key
}

func newKeySet(groups ...[]*Key) *keySet {
	ks := &keySet{byKID: make(map[string]*Key)}
	for _, g := range groups {
		for _, k := range g {
			if _, dup := ks.byKID[k.KID]; dup {
				continue // earlier groups (static keys) win
			}
			ks.byKID[k.KID] = k
		}
	}
	if len(ks.byKID) == 1 {
		for _, k := range ks.byKID {
			ks.only = k
		}
	}
	return ks
}

// lookup is the key a token's kid names (kid == "" when the token has
// none), nil when there is none.
func (ks *keySet) lookup(kid string) *Key {
	if kid == "" {
		return ks.only
	}
	return ks.byKID[kid]
}
