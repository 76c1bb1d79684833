package jwttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"sync"
)

// KeySet is a set of real signing keys, one per algorithm, by kid.
type KeySet struct {
	Signers map[string]crypto.Signer // by kid
	Algs    map[string]string        // kid -> alg
	// Other is an ES256 key nobody configured (a forged signature's key).
	Other *ecdsa.PrivateKey
}

// Keys returns the test process's KeySet, generated on first use (RSA
// generation is slow): kids es256 (ES256), es384 (ES384), es512 (ES512), ed
// (EdDSA) and rs (RS256, 2048 bits).
var Keys = sync.OnceValue(func() *KeySet {
	k := &KeySet{Signers: map[string]crypto.Signer{}, Algs: map[string]string{}}
	add := func(kid, alg string, s crypto.Signer, err error) {
		if err != nil {
			panic(err)
		}
		k.Signers[kid], k.Algs[kid] = s, alg
	}
	k256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	add("es256", "ES256", k256, err)
	k384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	add("es384", "ES384", k384, err)
	k521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	add("es512", "ES512", k521, err)
	_, ked, err := ed25519.GenerateKey(rand.Reader)
	add("ed", "EdDSA", ked, err)
	krsa, err := rsa.GenerateKey(rand.Reader, 2048)
	add("rs", "RS256", krsa, err)
	if k.Other, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	return k
})
