package sechard

// Fixtures and helpers shared by the unit and end-to-end tests: key and PEM
// files, JWKs and token decoding, a per-test certificate authority, and
// waitFor. The process harness (Caddy, upstreams, redis-server) is
// harness_test.go.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond until it reports true and returns how long that took;
// it fails the test, naming what, after timeout. Tests wait on a condition
// rather than sleep for a guessed time.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	if !poll(timeout, 5*time.Millisecond, cond) {
		t.Fatalf("%s: not within %v", what, timeout)
	}
	return time.Since(start)
}

// poll calls cond every interval until it reports true (poll returns true)
// or timeout has passed (false), for callers with their own failure report.
func poll(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
	return true
}

// Keys and PEM files.

// writePrivatePEM writes a fixed Ed25519 private key (PKCS #8) and returns
// its path.
func writePrivatePEM(t *testing.T) string {
	path := t.TempDir() + "/priv.pem"
	writeAuthFile(t, path, "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIH3rJ9d2Ag1/f6EAdrl+e2rOe4UKTfFkxU4I+4q9c0pZ\n-----END PRIVATE KEY-----\n")
	return path
}

// writeAuthFile writes content to path, readable by the owner only.
func writeAuthFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// pemOf returns key as PEM of type typ: "PRIVATE KEY" (PKCS #8), "EC PRIVATE
// KEY" (SEC 1) or "RSA PRIVATE KEY" (PKCS #1).
func pemOf(t testing.TB, key crypto.Signer, typ string) string {
	var der []byte
	var err error
	switch typ {
	case "PRIVATE KEY":
		der, err = x509.MarshalPKCS8PrivateKey(key)
	case "EC PRIVATE KEY":
		der, err = x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	case "RSA PRIVATE KEY":
		der = x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

// Tokens and JWKs.

// x5tS256Of is RFC 8705 §3.1's thumbprint, computed independently of
// sechard: base64url (no padding) of the SHA-256 of the certificate's DER.
func x5tS256Of(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// jwtPayload decodes a compact JWS's claims without verifying them.
func jwtPayload(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// ecJWK renders a P-256 public key as a JWK.
func ecJWK(pub *ecdsa.PublicKey, kid string) string {
	raw, _ := pub.Bytes()
	m := map[string]any{"kty": "EC", "crv": "P-256", "x": jwtB64(raw[1:33]), "y": jwtB64(raw[33:]), "use": "sig"}
	if kid != "" {
		m["kid"] = kid
	}
	return string(jwtJSON(m))
}

// okpJWK renders an Ed25519 public key as a JWK.
func okpJWK(pub ed25519.PublicKey, kid string) string {
	return string(jwtJSON(map[string]any{"kty": "OKP", "crv": "Ed25519", "x": jwtB64(pub), "kid": kid, "alg": "EdDSA"}))
}

// Certificates.

// selfSignedCert writes a throwaway certificate for 127.0.0.1.
func selfSignedCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// mtlsLeaf is a certificate carrying only the names match reads.
func mtlsLeaf(cn string, dns []string, uris ...string) *x509.Certificate {
	c := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			panic(err)
		}
		c.URIs = append(c.URIs, pu)
	}
	return c
}

// mtlsCA is a private certificate authority made for one test.
type mtlsCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	path string // the CA certificate, PEM
}

// mtlsCertSpec names what a certificate holds.
type mtlsCertSpec struct {
	cn        string
	uris      []string
	dns       []string
	ips       []net.IP
	server    bool // server auth (else client auth)
	notBefore time.Time
	notAfter  time.Time
}

// mtlsSerial numbers issued certificates; atomic, as tests issue them in
// parallel.
var mtlsSerial atomic.Int64

func init() { mtlsSerial.Store(1000) }

// newMTLSCA makes a CA and writes its certificate to dir/name.crt.
func newMTLSCA(t testing.TB, dir, name string) *mtlsCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &mtlsCA{cert: cert, key: key, path: filepath.Join(dir, name+".crt")}
	mtlsWritePEM(t, ca.path, "CERTIFICATE", der)
	return ca
}

// issue signs a leaf certificate; it returns the parsed certificate, the
// tls.Certificate for a client or server, and the PEM files' paths.
func (ca *mtlsCA) issue(t testing.TB, dir, name string, spec mtlsCertSpec) (*x509.Certificate, tls.Certificate, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(mtlsSerial.Add(1)),
		Subject:      pkix.Name{CommonName: spec.cn},
		NotBefore:    spec.notBefore,
		NotAfter:     spec.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     spec.dns,
		IPAddresses:  spec.ips,
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Minute)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(time.Hour)
	}
	if spec.server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, u := range spec.uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	mtlsWritePEM(t, certPath, "CERTIFICATE", der)
	mtlsWritePEM(t, keyPath, "PRIVATE KEY", keyDER)
	return cert, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, certPath, keyPath
}

// mtlsWritePEM writes der as one PEM block of type typ.
func mtlsWritePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// mtlsVerifiedState is the connection state Go's TLS server records after it
// verified leaf against ca (as Caddy's client_auth modes verify_if_given and
// require_and_verify do).
func mtlsVerifiedState(t testing.TB, ca *mtlsCA, leaf *x509.Certificate) *tls.ConnectionState {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatal(err)
	}
	return &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: chains}
}
