package sechard

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sechard/sechard/internal/jwtverify"
)

// issuedClaims are the claims of an RFC 9068 access token.
type issuedClaims struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"`
	Audience any    `json:"aud"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope,omitempty"`
	IssuedAt int64  `json:"iat"`
	Expires  int64  `json:"exp"`
	ID       string `json:"jti"`
	// Cnf is set for clients that authenticated with a certificate.
	Cnf *issuedCnf `json:"cnf,omitempty"`
}

// issuedCnf is the confirmation claim of a certificate-bound token (RFC
// 8705 §3.1).
type issuedCnf struct {
	X5tS256 string `json:"x5t#S256"`
}

// tokenSigner signs access tokens with one private key.
type tokenSigner struct {
	key    crypto.Signer
	pub    crypto.PublicKey
	method jwt.SigningMethod
	kid    string // RFC 7638 thumbprint of pub
	header string // the encoded JOSE header, the same for every token
}

// newTokenSigner parses a PEM private key (PKCS#8, SEC 1 or PKCS#1).
func newTokenSigner(pemData []byte) (*tokenSigner, error) {
	key, err := parsePrivateKeyPEM(pemData)
	if err != nil {
		return nil, err
	}
	s := &tokenSigner{}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		s.key = k
		switch k.Curve {
		case elliptic.P256():
			s.method = jwt.SigningMethodES256
		case elliptic.P384():
			s.method = jwt.SigningMethodES384
		case elliptic.P521():
			s.method = jwt.SigningMethodES512
		default:
			return nil, errors.New("EC keys must be on P-256, P-384 or P-521")
		}
	case ed25519.PrivateKey:
		s.key, s.method = k, jwt.SigningMethodEdDSA
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits is too short (2048 or more)", k.N.BitLen())
		}
		s.key, s.method = k, jwt.SigningMethodRS256
	default:
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	if s.pub, err = jwtverify.CheckKey(s.key.Public()); err != nil {
		return nil, err
	}
	s.kid = jwtverify.Thumbprint(s.pub)
	s.header = tokenHeader(s.method.Alg(), s.kid)
	return s, nil
}

// parsePrivateKeyPEM reads the first PEM block of data as a private key:
// PKCS#8, SEC 1 (EC) or PKCS#1 (RSA). Errors never quote the key.
func parsePrivateKeyPEM(data []byte) (any, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing the private key: %v", err)
	}
	return key, nil
}

// tokenHeader is the encoded JOSE header of an issued token (RFC 9068 §2.1:
// typ at+jwt).
func tokenHeader(alg, kid string) string {
	h, _ := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{alg, kid, "at+jwt"})
	return base64.RawURLEncoding.EncodeToString(h)
}

// sign fills in a fresh jti (128 random bits) and returns the compact JWS.
func (s *tokenSigner) sign(c issuedClaims) (token, jti string, err error) {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	c.ID = base64.RawURLEncoding.EncodeToString(b[:])
	payload, err := json.Marshal(c)
	if err != nil {
		return "", "", err
	}
	signing := s.header + "." + base64.RawURLEncoding.EncodeToString(payload)
	sig, err := s.method.Sign(signing, s.key)
	if err != nil {
		return "", "", err
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), c.ID, nil
}

// issuedTokens is what auth needs to accept the token service's tokens: a
// verifier of its own (its keys, its issuer and audience), and the encoded
// headers those tokens start with, so a bearer token is routed to it by a
// prefix comparison, not by decoding.
type issuedTokens struct {
	verifier *verifier
	headers  []string // "<encoded header>."
}

// owns reports whether token was (or claims to be) issued by the token
// service: its header is byte for byte one the service writes. A token that
// does not is verified by the jwt block's verifier, which never knows the
// service's keys, so routing cannot widen what either accepts.
func (it *issuedTokens) owns(token string) bool {
	if it == nil {
		return false
	}
	for _, h := range it.headers {
		if strings.HasPrefix(token, h) {
			return true
		}
	}
	return false
}
