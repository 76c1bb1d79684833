package sechard

// Fixtures and helpers shared by the unit and end-to-end tests: key and PEM
// files, a token issuer, keys and tokens from the CLI, JWKs and token
// decoding, a JWKS server, provisioning for unit tests, a per-test
// certificate authority, a hand-moved clock, waitFor, requests and handlers
// as Caddy builds them, security-header and CORS defaults, the end-to-end
// credentials and sites, metrics parsing, rate-limit helpers, benchmark
// plumbing and Caddyfile adaptation. The process harness (Caddy,
// upstreams, redis-server) is harness_test.go.

import (
	"bufio"
	"context"
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
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/sechard/sechard/internal/jwttest"
	"github.com/sechard/sechard/internal/ratelimit"
	"github.com/sechard/sechard/internal/secrets"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
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

// Clocks.

// fakeClock is an injected clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// newFakeClock starts at a fixed time.
func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Keys and PEM files.

// writePrivatePEM writes a fixed Ed25519 private key (PKCS #8) and returns
// its path.
func writePrivatePEM(t *testing.T) string {
	path := t.TempDir() + "/priv.pem"
	writeTestFile(t, path, "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIH3rJ9d2Ag1/f6EAdrl+e2rOe4UKTfFkxU4I+4q9c0pZ\n-----END PRIVATE KEY-----\n")
	return path
}

// writeTestFile writes content to path with mode (0600, readable by the
// owner only, unless told) and returns path.
func writeTestFile(t testing.TB, path, content string, mode ...os.FileMode) string {
	t.Helper()
	m := os.FileMode(0o600)
	if len(mode) > 0 {
		m = mode[0]
	}
	if err := os.WriteFile(path, []byte(content), m); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, m); err != nil { // WriteFile's mode is subject to umask, and keeps an existing file's
		t.Fatal(err)
	}
	return path
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

// writePublicPEM writes pub as a PKIX "PUBLIC KEY" PEM file.
func writePublicPEM(t testing.TB, path string, pub crypto.PublicKey) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
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

// testIssuer holds real keys generated for the test run, one per
// algorithm, and signs tokens with them for real.
type testIssuer struct {
	dir  string
	keys map[string]crypto.Signer // by kid
	algs map[string]string        // kid -> alg
	// other is an ES256 key nobody configured (a forged signature's key).
	other *ecdsa.PrivateKey
}

// newTestIssuer takes the process's keys (jwttest.Keys) and writes their
// public halves as PEM files under a fresh dir.
func newTestIssuer(t testing.TB) *testIssuer {
	t.Helper()
	k := jwttest.Keys()
	ti := &testIssuer{dir: t.TempDir(), keys: k.Signers, algs: k.Algs, other: k.Other}
	for kid, k := range ti.keys {
		writePublicPEM(t, ti.pemPath(kid), k.Public())
	}
	return ti
}

func (ti *testIssuer) pemPath(kid string) string { return filepath.Join(ti.dir, kid+".pub.pem") }

// jwtBlock is the Caddyfile jwt block trusting every test key.
func (ti *testIssuer) jwtBlock(extra string) string {
	var b strings.Builder
	b.WriteString("jwt {\n")
	for _, kid := range []string{"es256", "es384", "es512", "ed", "rs"} {
		fmt.Fprintf(&b, "\t\t\t\tpublic_key %s %s\n", ti.pemPath(kid), kid)
	}
	b.WriteString("\t\t\t\talgorithms ES256 ES384 ES512 EdDSA RS256\n")
	b.WriteString(extra)
	b.WriteString("\t\t\t}\n")
	return b.String()
}

// sign signs claims with the key kid (and its algorithm), adding header
// members from hdr (a nil value deletes one).
func (ti *testIssuer) sign(kid string, c map[string]any, hdr map[string]any) string {
	return jwttest.Sign(kid, c, hdr)
}

// Keys and tokens made by the built binary's CLI (caddy sechard keygen,
// caddy sechard token).

// testJWK is one key of a JWKS the CLI printed, read with the standard
// library only.
type testJWK struct {
	Kty, Crv, X, Y, N, E, Kid, Alg, Use string
}

func (k *testJWK) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*k = testJWK{m["kty"], m["crv"], m["x"], m["y"], m["n"], m["e"], m["kid"], m["alg"], m["use"]}
	return nil
}

// keygen runs `caddy sechard keygen` and returns the key paths and the JWK.
func keygen(t *testing.T, alg string) (priv, pub string, jwk testJWK) {
	t.Helper()
	dir := t.TempDir()
	priv = filepath.Join(dir, "key.pem")
	out, err := runCaddy(t, nil, "sechard", "keygen", "--alg", alg, "--out", priv)
	if err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	pub = filepath.Join(dir, "key.pub.pem")
	i := strings.Index(out, "{")
	if i < 0 {
		t.Fatalf("no JWKS in output:\n%s", out)
	}
	var jwks struct{ Keys []testJWK }
	if err := json.NewDecoder(strings.NewReader(out[i:])).Decode(&jwks); err != nil {
		t.Fatalf("JWKS: %v\n%s", err, out)
	}
	if len(jwks.Keys) != 1 {
		t.Fatalf("JWKS has %d keys, want 1", len(jwks.Keys))
	}
	return priv, pub, jwks.Keys[0]
}

// mintToken runs `caddy sechard token` and returns the token and its jti.
func mintToken(t *testing.T, key, sub string) (token, jti string) {
	t.Helper()
	out, err := runCaddy(t, nil, "sechard", "token", "--key", key, "--sub", sub, "--scopes", "nl-query:read", "--ttl", "2m")
	if err != nil {
		t.Fatalf("token: %v\n%s", err, out)
	}
	token = strings.TrimSpace(out)
	var c struct {
		JTI string `json:"jti"`
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", token)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	json.Unmarshal(raw, &c)
	return token, c.JTI
}

// A JWKS endpoint and the keys it publishes.

// jwksServer is a local JWKS endpoint whose key set the test changes.
type jwksServer struct {
	*httptest.Server
	mu    sync.Mutex
	body  string
	delay time.Duration
	hits  atomic.Int32
}

// startJWKSServer serves keys (JWKs) until the end of the test.
func startJWKSServer(t *testing.T, keys ...string) *jwksServer {
	j := &jwksServer{}
	j.set(keys...)
	j.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.hits.Add(1)
		j.mu.Lock()
		body, delay := j.body, j.delay
		j.mu.Unlock()
		time.Sleep(delay)
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Write([]byte(body))
	}))
	t.Cleanup(j.Close)
	return j
}

// set replaces the key set served.
func (j *jwksServer) set(keys ...string) {
	j.mu.Lock()
	j.body = `{"keys":[` + strings.Join(keys, ",") + `]}`
	j.mu.Unlock()
}

// rotKey is a signing key published through the JWKS server.
type rotKey struct {
	kid  string
	alg  string
	priv any
	jwk  string
}

// newRotKeyEC generates a P-256 (ES256) rotKey.
func newRotKeyEC(t *testing.T, kid string) rotKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return rotKey{kid: kid, alg: "ES256", priv: k, jwk: jwttest.ECP256JWK(&k.PublicKey, kid)}
}

// newRotKeyEd generates an Ed25519 (EdDSA) rotKey.
func newRotKeyEd(t *testing.T, kid string) rotKey {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return rotKey{kid: kid, alg: "EdDSA", priv: priv, jwk: jwttest.Ed25519JWK(pub, kid)}
}

// token is a token with valid claims, issued now, signed with k.
func (k rotKey) token() string {
	h := jwttest.MustJSON(map[string]any{"alg": k.alg, "kid": k.kid, "typ": "JWT"})
	return jwttest.SignRaw(k.alg, k.priv, h, jwttest.MustJSON(jwttest.Claims(time.Now(), nil)))
}

// jwksSite is a site whose jwt block trusts the JWKS at url, plus the jwt
// settings in extra.
func jwksSite(url, extra string) string {
	return `http://127.0.0.1:{PORT} {
	sechard {
		auth {
			jwt {
				jwks_url ` + url + `
				` + extra + `
			}
		}
	}
	respond "ok"
}`
}

// Provisioning for unit tests.

// authTestEnv is a provisionEnv for unit tests, with a controllable clock.
func authTestEnv(t testing.TB, now func() time.Time, values map[string]string) *provisionEnv {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	sv := secrets.Values{}
	for k, v := range values {
		sv[k] = secrets.New(v)
	}
	return &provisionEnv{Context: ctx, logger: zap.NewNop(), secrets: sv, now: now}
}

// fuzzAuth is the fuzz targets' Auth: one API key (secret K, value
// "the-key") and the issuer's es256 and ed keys, on a fixed clock.
func fuzzAuth(tb testing.TB, ti *testIssuer, now time.Time) *Auth {
	a := &Auth{
		APIKeys: []APIKey{{Secret: "K", Scopes: []string{"x"}}},
		JWT:     &JWT{PublicKeys: []PublicKey{{File: ti.pemPath("es256"), KID: "es256"}, {File: ti.pemPath("ed"), KID: "ed"}}},
	}
	if err := a.provision(authTestEnv(tb, func() time.Time { return now }, map[string]string{"K": "the-key"})); err != nil {
		tb.Fatal(err)
	}
	return a
}

// newTestEnv returns a provisionEnv whose logs are observed; its context is
// cancelled at the end of the test.
func newTestEnv(t testing.TB) (*provisionEnv, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return &provisionEnv{Context: ctx, logger: zap.New(core), now: time.Now}, logs
}

// provisionRevocation provisions rv and cleans it up at the end of the test.
func provisionRevocation(t testing.TB, env *provisionEnv, rv *Revocation) *Revocation {
	t.Helper()
	if err := rv.provision(env); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rv.cleanup(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return rv
}

// newTestContext returns a bare Caddy context and its cancel function.
func newTestContext() (caddy.Context, context.CancelFunc) {
	return caddy.NewContext(caddy.Context{Context: context.Background()})
}

// mtlsUnitAuth is an Auth with client_cert lines, a JWT key and an API key,
// with a clock the test moves.
func mtlsUnitAuth(t testing.TB, now *time.Time, extra func(*Auth)) *Auth {
	t.Helper()
	ti := newTestIssuer(t)
	a := &Auth{
		APIKeys: []APIKey{{Secret: "K", Scopes: []string{"nl-query:read"}}},
		JWT:     &JWT{PublicKeys: []PublicKey{{File: ti.pemPath("es256"), KID: "es256"}}},
		ClientCerts: []ClientCert{
			{Identity: biSPIFFE, Scopes: []string{"nl-query:read", "schema:read"}},
			{Identity: "cn:no-scopes"},
		},
		Require: []Requirement{{Path: "/nl-query/*", Scopes: []string{"nl-query:read"}}},
	}
	if extra != nil {
		extra(a)
	}
	if err := a.provision(authTestEnv(t, func() time.Time { return *now }, map[string]string{"K": "the-key"})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.cleanup() })
	return a
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

// Requests and handlers, as Caddy's server builds and runs them.

// newTestRequest builds a request with the context Caddy's server gives it:
// a replacer, the vars table (with client_ip) and the extra log fields.
func newTestRequest(header ...string) (*http.Request, *caddyhttp.ExtraLogFields) {
	r := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	extra := new(caddyhttp.ExtraLogFields)
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.1"})
	ctx = context.WithValue(ctx, caddyhttp.ExtraLogFieldsCtxKey, extra)
	return r.WithContext(ctx), extra
}

// newAuthExchange is a request as Caddy hands it to a handler: with a
// replacer and a vars table in its context.
func newAuthExchange(path string) *exchange {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.1"})
	r = r.WithContext(ctx)
	return &exchange{r: r, w: httptest.NewRecorder(), repl: repl, requestID: "rid-1"}
}

// provisionedHandler provisions h as Caddy would (with a bare context).
func provisionedHandler(t testing.TB, h *Handler) *Handler {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	return h
}

// serveTest runs r through h in front of next and returns the recorded
// response.
func serveTest(t testing.TB, h *Handler, r *http.Request, next caddyhttp.HandlerFunc) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	w.Header().Set("Server", "Caddy") // as Caddy's server does before any handler
	if err := h.ServeHTTP(w, r, next); err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	return w
}

// Security headers.

// defaultSecurityHeaders is DESIGN.md's default set on plain HTTP.
var defaultSecurityHeaders = map[string]string{
	"X-Content-Type-Options":            "nosniff",
	"X-Frame-Options":                   "DENY",
	"Referrer-Policy":                   "strict-origin-when-cross-origin",
	"Content-Security-Policy":           "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'",
	"Cross-Origin-Opener-Policy":        "same-origin",
	"Cross-Origin-Resource-Policy":      "same-origin",
	"X-Permitted-Cross-Domain-Policies": "none",
}

// defaultHSTSValue is the default Strict-Transport-Security value.
const defaultHSTSValue = "max-age=31536000; includeSubDomains"

// requireExactHeaders checks that each header in want has exactly that one
// value.
func requireExactHeaders(t testing.TB, got http.Header, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if vals := got.Values(k); len(vals) != 1 || vals[0] != v {
			t.Errorf("%s = %q, want exactly [%q]", k, vals, v)
		}
	}
}

// CORS.

// Origins the CORS tests send, and the default allowed and exposed headers.
const (
	appOrigin   = "https://app.example.com"
	adminOrigin = "https://admin.example.com"
	apiOrigin   = "https://api.example.com:8443"
	localOrigin = "http://localhost:3000"

	defaultAllowHeaders = "Authorization, Content-Type, X-API-Key, X-Request-ID"
	defaultExpose       = "X-Request-ID, Retry-After, RateLimit, RateLimit-Policy"
)

// provisionCORS provisions c the way Handler.Provision does and returns a
// Handler whose CORS stage is c, with the logs it writes.
func provisionCORS(t testing.TB, c *CORS) (*Handler, *observer.ObservedLogs, error) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	logger := zap.New(core)
	err := c.provision(&provisionEnv{logger: logger, now: time.Now})
	return &Handler{CORS: c, logger: logger, stageLoggers: map[string]*zap.Logger{"cors": logger.Named("cors")}}, logs, err
}

// mustProvisionCORS is provisionCORS, failing the test on an error.
func mustProvisionCORS(t testing.TB, c *CORS) (*Handler, *observer.ObservedLogs) {
	t.Helper()
	h, logs, err := provisionCORS(t, c)
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	return h, logs
}

// Credentials and sites of the end-to-end tests, and the answer to a bad
// credential.

// The API key values the end-to-end sites' BI_KEY and LEGACY_KEY hold.
const (
	biKeyValue     = "bi-secret-key-value-4f1c2a9e77"
	legacyKeyValue = "legacy-secret-value-9d3b51c0aa"
)

// authEnv is the environment giving Caddy those key values.
var authEnv = []string{"BI_KEY=" + biKeyValue, "LEGACY_KEY=" + legacyKeyValue}

// authSite is the site the end-to-end tests run; phase and extra lines
// vary between reloads.
func authSite(ti *testIssuer, upstream, authExtra string) string {
	return `http://127.0.0.1:{PORT} {
	log {
		output stderr
		format filter {
			request>headers>X-Api-Key delete
		}
	}
	sechard {
		auth {
			api_key BI_KEY nl-query:read
			api_key LEGACY_KEY
			` + ti.jwtBlock("\t\t\t\tissuer https://auth.test\n\t\t\t\taudience nl-query-api\n") + `
			require /nl-query/* nl-query:read
			require /admin/* admin:write
			require /schema/* schema:read
			public /healthz
			` + authExtra + `
		}
	}
	reverse_proxy ` + upstream + `
}`
}

// wwwAuth401 is the WWW-Authenticate of a 401 for a bad credential.
func wwwAuth401(desc string) string {
	return `Bearer realm="sechard", error="invalid_token", error_description="` + desc + `"`
}

// biSPIFFE is the BI service's SPIFFE ID, as its client certificates carry it.
const biSPIFFE = "spiffe://cluster.local/ns/bi/sa/service-bi"

// tokenSite is a site running the token service with signingKeys, in front
// of up, plus the auth settings in authExtra.
func tokenSite(up, signingKeys, authExtra string) string {
	return `http://127.0.0.1:{PORT} {
	sechard {
		rate_limit {
			route /oauth2/token 60/1m
			rate 1000/1m
		}
		auth {
			api_key BI_KEY nl-query:read schema:read
			api_key LEGACY_KEY
			require /nl-query/* nl-query:read
			require /schema/* schema:read
			public /healthz
			revocation {
				cache_ttl 1s
			}
			` + authExtra + `
		}
		token_service {
			issuer http://127.0.0.1:{PORT}
			audience nl-query-api
			signing_key ` + signingKeys + `
			ttl 2m
		}
	}
	reverse_proxy ` + up + `
}`
}

// Metrics: reading a Prometheus text exposition and checking its series.

// metricSet is a scrape of the sechard_* series, keyed by
// `name{label="value",...}` with the labels sorted by name.
type metricSet map[string]float64

// series builds a metricSet key from a name and label pairs.
func series(name string, labelPairs ...string) string {
	pairs := make([]string, 0, len(labelPairs)/2)
	for i := 0; i+1 < len(labelPairs); i += 2 {
		pairs = append(pairs, labelPairs[i]+"="+strconv.Quote(labelPairs[i+1]))
	}
	sort.Strings(pairs)
	return name + "{" + strings.Join(pairs, ",") + "}"
}

// parseMetrics reads the sechard_* samples of a Prometheus text exposition.
func parseMetrics(t testing.TB, text string) metricSet {
	t.Helper()
	m := metricSet{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "sechard_") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		head := line[:sp]
		name, labels := head, ""
		if i := strings.IndexByte(head, '{'); i >= 0 {
			name, labels = head[:i], strings.TrimSuffix(head[i+1:], "}")
		}
		var pairs []string
		for labels != "" {
			eq := strings.IndexByte(labels, '=')
			k := labels[:eq]
			rest := labels[eq+1:]
			val, err := strconv.QuotedPrefix(rest)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			uq, _ := strconv.Unquote(val)
			pairs = append(pairs, k, uq)
			labels = strings.TrimPrefix(rest[len(val):], ",")
		}
		m[series(name, pairs...)] = v
	}
	return m
}

// expectMetrics fails for every series in want whose value differs.
func expectMetrics(t testing.TB, got metricSet, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("series %s missing (want %v)", k, v)
		case g != v:
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Rate limiting: parsing and provisioning rate_limit blocks, and sending
// requests through the stage.

// parseRateLimit parses a rate_limit block body from Caddyfile text.
func parseRateLimit(body string) (*RateLimit, error) {
	d := caddyfile.NewTestDispenser("rate_limit {\n" + body + "\n}")
	d.Next()
	c := new(RateLimit)
	return c, c.unmarshalCaddyfile(d)
}

// newTestRateLimit parses and provisions a rate_limit block on clock, and
// cleans it up at the end of the test.
func newTestRateLimit(t testing.TB, body string, clock *fakeClock) *RateLimit {
	t.Helper()
	c, err := parseRateLimit(body)
	if err != nil {
		t.Fatal(err)
	}
	provisionTestRateLimit(t, c, clock.now, zap.NewNop(), nil)
	return c
}

// provisionTestRateLimit provisions c with a bare context, the clock now,
// logger and secret values, and cleans it up at the end of the test.
func provisionTestRateLimit(t testing.TB, c *RateLimit, now func() time.Time, logger *zap.Logger, values secrets.Values) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	env := &provisionEnv{Context: ctx, logger: logger, now: now, secrets: values}
	if err := c.provision(env); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.cleanup(); cancel() })
}

// newRedisRateLimit provisions a rate_limit block on the real clock (Redis
// uses its own) and returns it with its observed logs.
func newRedisRateLimit(t testing.TB, body string, values secrets.Values) (*RateLimit, *observer.ObservedLogs) {
	t.Helper()
	c, err := parseRateLimit(body)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	provisionTestRateLimit(t, c, time.Now, zap.New(core), values)
	return c, logs
}

// rlResult is what one request got from the rate-limit stage.
type rlResult struct {
	status int
	header http.Header // the response headers, plus the decision's
}

// hit runs the per-address step for a GET of target from client ip, with
// header name/value pairs.
func hit(c *RateLimit, ip, target string, hdr ...string) rlResult {
	return hitAs(c, ip, "", target, hdr...)
}

// hitAs runs both rate-limit steps for a GET of target from ip, as
// identity id would after auth accepted it ("" for no identity): the
// per-address step, and the identity step if the first let it through.
func hitAs(c *RateLimit, ip, id, target string, hdr ...string) rlResult {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	ctx := context.WithValue(req.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: ip})
	req = req.WithContext(ctx)
	rec := httptest.NewRecorder()
	ex := &exchange{w: rec, r: req, repl: caddyhttp.NewTestReplacer(req), requestID: "test"}
	d := c.decide(ex)
	if d.Status == 0 && id != "" {
		ex.identity = id
		d = c.decideIdentity(ex)
	}
	h := rec.Header().Clone()
	for k, v := range d.Header {
		h[k] = v
	}
	st := d.Status
	if st == 0 {
		st = 200
	}
	return rlResult{status: st, header: h}
}

// repeatStatus is n times the status st.
func repeatStatus(st, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = st
	}
	return out
}

// equalInts reports whether a and b hold the same ints in the same order.
func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Caddyfile adaptation.

// adaptCaddyfile adapts a Caddyfile named "Caddyfile" in-process.
func adaptCaddyfile(t *testing.T, body string) ([]byte, error) {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(body), map[string]any{"filename": "Caddyfile"})
	return out, err
}

// sechardHandlers returns the JSON of every sechard handler in an adapted
// config.
func sechardHandlers(t *testing.T, cfg []byte) []string {
	t.Helper()
	var found []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == "sechard" {
				b, _ := json.Marshal(v)
				found = append(found, string(b))
				return
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	var v any
	if err := json.Unmarshal(cfg, &v); err != nil {
		t.Fatal(err)
	}
	walk(v)
	return found
}

// Benchmark plumbing: a reused writer, a next handler, a request, and for
// the store benchmarks a budget that admits everything and many clients.

// benchWriter is a minimal ResponseWriter whose header map is reused.
type benchWriter struct{ h http.Header }

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) WriteHeader(int)             {}

// benchNext is a next handler that only writes 200.
var benchNext = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
	w.WriteHeader(http.StatusOK)
	return nil
})

// benchRequest is a request with the context Caddy's server gives it, built
// once outside the timed loop.
func benchRequest() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://example.com/api/items?x=1", nil)
	r.Header.Set("X-Request-ID", "0f8e2a4c-5b1d-4e7f-9a0b-1c2d3e4f5a6b")
	r.Header.Set("User-Agent", "bench")
	repl := caddyhttp.NewTestReplacer(r)
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.1"})
	ctx = context.WithValue(ctx, caddyhttp.ExtraLogFieldsCtxKey, new(caddyhttp.ExtraLogFields))
	return r.WithContext(ctx)
}

// benchBudget admits everything, so the benchmarks measure the store, not
// refusals.
func benchBudget(tb testing.TB) ratelimit.Budget {
	r, err := ratelimit.NewRate(1<<30, 1<<30, 1<<30)
	if err != nil {
		tb.Fatal(err)
	}
	return ratelimit.Budget{Kind: ratelimit.KindPath, Tag: "/nl-query/run", Rate: r}
}

// benchClients returns n distinct client IPs (10.x.y.z).
func benchClients(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "10." + strconv.Itoa(i>>16&255) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255)
	}
	return out
}

// benchServeWithKey serves r through h b.N times, sending the bench API key
// each time as a client does (auth removes it from the request), and
// returns the last response's header.
func benchServeWithKey(b *testing.B, h *Handler, r *http.Request) http.Header {
	key := []string{"bench-key-0123456789abcdef"}
	w := &benchWriter{h: make(http.Header, 16)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		r.Header["X-Api-Key"] = key
		if err := h.ServeHTTP(w, r, benchNext); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	return w.h
}
