package sechard

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

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

var mtlsSerial = big.NewInt(1000)

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
	mtlsSerial.Add(mtlsSerial, big.NewInt(1))
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).Set(mtlsSerial),
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
