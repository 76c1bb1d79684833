package sechard

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

const (
	svcA = "spiffe://cluster.local/ns/a/sa/svc-a"
	svcB = "spiffe://cluster.local/ns/b/sa/svc-b"
)

// certBindSite is one sechard config served twice: over TLS with
// client_auth verify_if_given (https://localhost:{PORT}) and over plain HTTP
// (httpPort), both with the same token service key and issuer, so a token
// from one is accepted by the other.
func certBindSite(serverCrt, serverKey, caPath, idpPEM, up string, httpPort int, authExtra string) string {
	return `(sechard_cfg) {
	sechard {
		auth {
			api_key BI_KEY nl-query:read
			client_cert ` + svcA + ` nl-query:read
			client_cert ` + svcB + ` nl-query:read
			require /nl-query/* nl-query:read
			jwt {
				public_key ` + idpPEM + ` idp1
				issuer https://idp.test
				audience nl-query-api
			}
			` + authExtra + `
		}
		token_service {
			issuer https://localhost:{PORT}
			audience nl-query-api
			signing_key TS_KEY
		}
	}
	reverse_proxy ` + up + `
}

https://localhost:{PORT} {
	bind 127.0.0.1
	tls ` + serverCrt + ` ` + serverKey + ` {
		client_auth {
			mode verify_if_given
			trust_pool file ` + caPath + `
		}
	}
	import sechard_cfg
}

http://127.0.0.1:` + fmt.Sprint(httpPort) + ` {
	import sechard_cfg
}`
}

// TestCertificateBoundTokens: RFC 8705 §3 through a real Caddy with
// client_auth. A token bound to certificate A works only over a connection
// authenticated with A, on the first request and every cached one after it,
// whoever issued the token; other confirmation methods are refused.
func TestCertificateBoundTokens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newMTLSCA(t, dir, "ca")
	_, _, serverCrt, serverKey := ca.issue(t, dir, "server", mtlsCertSpec{cn: "localhost", dns: []string{"localhost"}, server: true})
	leafA, certA, _, _ := ca.issue(t, dir, "a", mtlsCertSpec{cn: "svc-a", uris: []string{svcA}})
	leafB, certB, _, _ := ca.issue(t, dir, "b", mtlsCertSpec{cn: "svc-b", uris: []string{svcB}})
	// C: verified by Caddy (same CA) but mapped by no client_cert line, so
	// a bearer token decides: the JWT path's binding check, not mTLS's.
	leafC, certC, _, _ := ca.issue(t, dir, "c", mtlsCertSpec{cn: "svc-c"})
	thumbA, thumbC := x5tS256Of(leafA), x5tS256Of(leafC)
	if thumbA == x5tS256Of(leafB) {
		t.Fatal("A and B share a thumbprint")
	}

	// An outside IdP: an ES256 key whose tokens go-jose signs.
	idpKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	idpPEM := filepath.Join(dir, "idp.pub.pem")
	writePublicPEM(t, idpPEM, idpKey.Public())
	idpSigner, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: idpKey},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "idp1"))
	if err != nil {
		t.Fatal(err)
	}
	idpToken := func(cnf map[string]any) string {
		t.Helper()
		now := time.Now()
		claims := map[string]any{"iss": "https://idp.test", "aud": "nl-query-api", "sub": "idp-client",
			"scope": "nl-query:read", "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
			"jti": fmt.Sprint("idp-", now.UnixNano())}
		if cnf != nil {
			claims["cnf"] = cnf
		}
		payload, _ := json.Marshal(claims)
		jws, err := idpSigner.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jws.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	tsKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	env := append([]string{"TS_KEY=" + pemOf(t, tsKey, "PRIVATE KEY")}, authEnv...)
	up := startUpstream(t)
	httpPort := freePort(t)
	site := func(extra string) string {
		return certBindSite(serverCrt, serverKey, ca.path, idpPEM, up.Addr, httpPort, extra)
	}
	s := startCaddy(t, site(""), caddyOptions{Env: env})

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	addr := fmt.Sprintf("127.0.0.1:%d", s.Port)
	base := fmt.Sprintf("https://localhost:%d", s.Port)
	plain := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	// One keep-alive client per certificate: repeated requests reuse the
	// connection (the same verified *x509.Certificate), and fresh clients
	// make new handshakes.
	newClient := func(cert *tls.Certificate) *http.Client {
		cfg := &tls.Config{RootCAs: roots}
		if cert != nil {
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg,
			DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
				if strings.HasPrefix(a, "localhost:") {
					a = addr
				}
				return (&net.Dialer{}).DialContext(ctx, network, a)
			}}}
	}
	clients := map[string]*http.Client{"A": newClient(&certA), "B": newClient(&certB), "C": newClient(&certC), "none": newClient(nil)}
	type result struct {
		status  int
		wwwAuth string
		rid     string
	}
	call := func(t *testing.T, who, method, path, token string, form url.Values) (result, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		u := base + path
		c := clients[who]
		if who == "plain" {
			u, c = plain+path, noRedirectClient
		}
		req, _ := http.NewRequest(method, u, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s as %s: %v", method, path, who, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return result{resp.StatusCode, resp.Header.Get("WWW-Authenticate"), resp.Header.Get("X-Request-ID")}, string(b)
	}
	get := func(t *testing.T, who, token string) result {
		t.Helper()
		r, _ := call(t, who, http.MethodGet, "/nl-query/q", token, nil)
		return r
	}
	mismatch := wwwAuth401("token is bound to another client certificate")
	// expectBinding runs every case several times, interleaved, so each
	// later request meets a token the cache has already verified.
	expectBinding := func(t *testing.T, token string, cases map[string]int, wantMethod map[string]string) {
		t.Helper()
		for round := range 4 {
			for _, who := range []string{"A", "B", "C", "none", "plain"} {
				want, ok := cases[who]
				if !ok {
					continue
				}
				before := up.Count()
				got := get(t, who, token)
				if got.status != want {
					t.Fatalf("round %d, %s: status %d (%s), want %d", round, who, got.status, got.wwwAuth, want)
				}
				switch want {
				case 401:
					if got.wwwAuth != mismatch {
						t.Fatalf("round %d, %s: WWW-Authenticate %q, want %q", round, who, got.wwwAuth, mismatch)
					}
					if up.Count() != before {
						t.Fatalf("round %d, %s: a refused request reached the upstream", round, who)
					}
				case 200:
					if m := up.Last().Header.Get("X-Auth-Method"); m != wantMethod[who] {
						t.Fatalf("round %d, %s: X-Auth-Method %q, want %q", round, who, m, wantMethod[who])
					}
				}
			}
		}
	}

	var secrets []string
	t.Run("token service binds tls_client_auth tokens to the certificate", func(t *testing.T) {
		r, body := call(t, "A", http.MethodPost, "/oauth2/token", "",
			url.Values{"grant_type": {"client_credentials"}, "client_id": {svcA}})
		if r.status != 200 {
			t.Fatalf("token for A: %d %s", r.status, body)
		}
		var tr map[string]any
		json.Unmarshal([]byte(body), &tr)
		tok := tr["access_token"].(string)
		secrets = append(secrets, tok)
		claims := jwtPayload(t, tok)
		cnf, _ := claims["cnf"].(map[string]any)
		if len(cnf) != 1 || cnf["x5t#S256"] != thumbA {
			t.Fatalf("cnf %v, want {x5t#S256: %s}", claims["cnf"], thumbA)
		}
		// A is mapped, so it would pass alone; B is mapped too, so only the
		// binding check can refuse it.
		expectBinding(t, tok, map[string]int{"A": 200, "B": 401, "C": 401, "none": 401, "plain": 401},
			map[string]string{"A": "mtls"})

		// The README's Go recipe: x/oauth2's client-credentials client over
		// an HTTP client that presents the certificate, for the token and
		// the calls alike.
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, clients["A"])
		cc := clientcredentials.Config{ClientID: svcA, TokenURL: base + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}
		for range 3 {
			resp, err := cc.Client(ctx).Get(base + "/nl-query/q")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("x/oauth2 client with certificate A: %v %v", resp, err)
			}
			resp.Body.Close()
		}
	})

	t.Run("outside IdP token bound to A", func(t *testing.T) {
		tok := idpToken(map[string]any{"x5t#S256": thumbA})
		secrets = append(secrets, tok)
		expectBinding(t, tok, map[string]int{"A": 200, "B": 401, "C": 401, "none": 401, "plain": 401},
			map[string]string{"A": "mtls"})
	})

	t.Run("outside IdP token bound to an unmapped certificate: the JWT decides", func(t *testing.T) {
		tok := idpToken(map[string]any{"x5t#S256": thumbC})
		secrets = append(secrets, tok)
		expectBinding(t, tok, map[string]int{"C": 200, "A": 401, "B": 401, "none": 401, "plain": 401},
			map[string]string{"C": "jwt"})
		if s := up.Last().Header.Get("X-Auth-Subject"); s != "idp-client" {
			t.Fatalf("subject %q", s)
		}
	})

	t.Run("other confirmation methods are refused", func(t *testing.T) {
		for _, cnf := range []map[string]any{
			{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
			{"x5t#S256": thumbA, "jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
			{},
		} {
			tok := idpToken(cnf)
			secrets = append(secrets, tok)
			for range 3 {
				for _, who := range []string{"A", "C", "none", "plain"} {
					if got := get(t, who, tok); got.status != 401 || !strings.Contains(got.wwwAuth, `error="invalid_token"`) {
						t.Fatalf("cnf %v as %s: %+v", cnf, who, got)
					}
				}
			}
		}
	})

	t.Run("unbound tokens are unaffected", func(t *testing.T) {
		// An API-key client's token carries no cnf and needs no certificate.
		r, body := call(t, "none", http.MethodPost, "/oauth2/token", "",
			url.Values{"grant_type": {"client_credentials"}, "client_id": {"BI_KEY"}, "client_secret": {biKeyValue}})
		if r.status != 200 {
			t.Fatalf("token for BI_KEY: %d %s", r.status, body)
		}
		var tr map[string]any
		json.Unmarshal([]byte(body), &tr)
		tok := tr["access_token"].(string)
		secrets = append(secrets, tok)
		if c, ok := jwtPayload(t, tok)["cnf"]; ok {
			t.Fatalf("API-key token carries cnf %v", c)
		}
		expectBinding(t, tok, map[string]int{"none": 200, "C": 200, "plain": 200}, map[string]string{"none": "jwt", "C": "jwt", "plain": "jwt"})
		idp := idpToken(nil)
		secrets = append(secrets, idp)
		expectBinding(t, idp, map[string]int{"none": 200, "C": 200, "plain": 200}, map[string]string{"none": "jwt", "C": "jwt", "plain": "jwt"})
	})

	t.Run("metadata advertises bound tokens", func(t *testing.T) {
		_, body := call(t, "none", http.MethodGet, "/.well-known/oauth-authorization-server", "", nil)
		var md map[string]any
		json.Unmarshal([]byte(body), &md)
		if md["tls_client_certificate_bound_access_tokens"] != true {
			t.Fatalf("metadata %v", md)
		}
	})

	t.Run("audit and metrics name the expected thumbprint, never the token", func(t *testing.T) {
		tok := idpToken(map[string]any{"x5t#S256": thumbA})
		secrets = append(secrets, tok)
		r := get(t, "B", tok)
		e := s.WaitLog(func(e map[string]any) bool {
			return e["logger"] == "http.handlers.sechard.audit" && e["request_id"] == r.rid
		}, 3*time.Second)
		if e["reason"] != "token_binding_mismatch" || e["expected_x5t_s256"] != thumbA || e["decision"] != "deny" ||
			e["enforced"] != true || e["presented_x5t_s256"] != x5tS256Of(leafB) {
			t.Fatalf("audit entry %v", e)
		}
		metrics := scrapeAdmin(t, s, "/metrics")
		found := false
		for _, l := range strings.Split(metrics, "\n") {
			if strings.HasPrefix(l, "sechard_requests_rejected_total{") && strings.Contains(l, `reason="token_binding_mismatch"`) &&
				strings.Contains(l, `mode="enforce"`) && !strings.HasSuffix(l, " 0") {
				found = true
			}
		}
		if !found {
			t.Fatalf("no token_binding_mismatch count:\n%s", grepLines(metrics, "token_binding_mismatch"))
		}
	})

	t.Run("report mode logs a would-be mismatch and passes", func(t *testing.T) {
		if err := s.Reload(site("mode report")); err != nil {
			t.Fatal(err)
		}
		tok := idpToken(map[string]any{"x5t#S256": thumbA})
		secrets = append(secrets, tok)
		for range 3 {
			// B: a mapped certificate beside a token bound to A (mTLS
			// precedence); C, none, plain: the JWT path.
			for _, who := range []string{"B", "C", "none", "plain"} {
				before := up.Count()
				r := get(t, who, tok)
				if r.status != 200 || up.Count() != before+1 {
					t.Fatalf("report mode as %s: %+v", who, r)
				}
				e := s.WaitLog(func(e map[string]any) bool {
					return e["logger"] == "http.handlers.sechard.audit" && e["request_id"] == r.rid
				}, 3*time.Second)
				if e["reason"] != "token_binding_mismatch" || e["enforced"] != false || e["expected_x5t_s256"] != thumbA || e["level"] != "warn" {
					t.Fatalf("report-mode audit entry %v", e)
				}
			}
		}
	})

	s.SyncLogs()
	logs := s.Logs()
	for _, tok := range secrets {
		if strings.Contains(logs, tok) || strings.Contains(logs, strings.Split(tok, ".")[2]) {
			t.Fatal("a token reached the logs")
		}
	}
}
