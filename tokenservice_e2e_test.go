package sechard

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// postForm sends a token request with an optional Basic header.
func postForm(t *testing.T, s *caddyServer, form url.Values, basicID, basicSecret string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicID != "" {
		req.SetBasicAuth(url.QueryEscape(basicID), url.QueryEscape(basicSecret))
	}
	resp := s.Do(req)
	var body map[string]any
	json.Unmarshal([]byte(readBody(resp)), &body)
	return resp, body
}

func TestTokenServiceEndToEnd(t *testing.T) {
	t.Parallel()
	keyA, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edB, _ := ed25519.GenerateKey(rand.Reader)
	env := append([]string{"TS_KEY_A=" + pemOf(t, keyA, "PRIVATE KEY"), "TS_KEY_B=" + pemOf(t, edB, "PRIVATE KEY")}, authEnv...)
	up := startUpstream(t)
	s := startCaddy(t, tokenSite(up.Addr, "TS_KEY_A", ""), caddyOptions{Env: env})
	ctx := context.Background()

	// A real OAuth 2.0 client, both client authentication styles.
	var tokens []string
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		cc := clientcredentials.Config{ClientID: "BI_KEY", ClientSecret: biKeyValue, TokenURL: s.URL + "/oauth2/token",
			Scopes: []string{"nl-query:read"}, AuthStyle: style}
		tok, err := cc.Token(ctx)
		if err != nil {
			t.Fatalf("style %d: %v", style, err)
		}
		if tok.TokenType != "Bearer" || tok.Expiry.Sub(time.Now()) > 2*time.Minute || tok.Expiry.Sub(time.Now()) < 110*time.Second {
			t.Errorf("token type %q, expiry %v", tok.TokenType, tok.Expiry)
		}
		if got := tok.Extra("scope"); got != "nl-query:read" {
			t.Errorf("scope %v, want the narrowed nl-query:read", got)
		}
		tokens = append(tokens, tok.AccessToken)
		client := cc.Client(ctx)
		resp, err := client.Get(s.URL + "/nl-query/q")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("with the issued token: %v %v", resp, err)
		}
		resp.Body.Close()
		if last := up.Last(); last.Header.Get("X-Auth-Subject") != "BI_KEY" || last.Header.Get("X-Auth-Method") != "jwt" {
			t.Errorf("upstream saw %v", last.Header)
		}
		// Narrowed: the key has schema:read, this token does not.
		if resp, _ := client.Get(s.URL + "/schema/x"); resp.StatusCode != 403 {
			t.Errorf("narrowed token on /schema: %d, want 403", resp.StatusCode)
		}
	}

	// The response itself: RFC 6749 §5.1, no-store.
	resp, body := postForm(t, s, url.Values{"grant_type": {"client_credentials"}}, "BI_KEY", biKeyValue)
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" || body["token_type"] != "Bearer" ||
		body["expires_in"] != float64(120) || body["scope"] != "nl-query:read schema:read" || resp.Header.Get("X-Request-ID") == "" {
		t.Fatalf("token response %d %v %v", resp.StatusCode, resp.Header, body)
	}
	full := body["access_token"].(string)

	// An independent JOSE implementation verifies it against the published
	// JWKS, and the claims are RFC 9068's.
	jr := s.Get("/.well-known/jwks.json")
	var jwks jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(readBody(jr)), &jwks); err != nil || len(jwks.Keys) != 1 {
		t.Fatalf("JWKS: %v %+v", err, jwks)
	}
	if jr.Header.Get("Cache-Control") != tokenMetadataCache {
		t.Errorf("JWKS Cache-Control %q", jr.Header.Get("Cache-Control"))
	}
	claims := verifyWithJose(t, full, jwks, jose.ES256)
	now := time.Now().Unix()
	if claims["iss"] != s.URL || claims["sub"] != "BI_KEY" || claims["client_id"] != "BI_KEY" || claims["aud"] != "nl-query-api" ||
		claims["scope"] != "nl-query:read schema:read" || claims["exp"].(float64)-claims["iat"].(float64) != 120 ||
		claims["iat"].(float64) > float64(now+1) || len(claims["jti"].(string)) != 22 {
		t.Errorf("claims %v", claims)
	}

	// RFC 8414 metadata.
	mr := s.Get("/.well-known/oauth-authorization-server")
	var md map[string]any
	json.Unmarshal([]byte(readBody(mr)), &md)
	if md["issuer"] != s.URL || md["token_endpoint"] != s.URL+"/oauth2/token" || md["jwks_uri"] != s.URL+"/.well-known/jwks.json" ||
		fmt.Sprint(md["grant_types_supported"]) != "[client_credentials]" ||
		fmt.Sprint(md["token_endpoint_auth_methods_supported"]) != "[client_secret_basic client_secret_post]" ||
		fmt.Sprint(md["scopes_supported"]) != "[nl-query:read schema:read]" {
		t.Errorf("metadata %v", md)
	}

	// Errors, RFC 6749 §5.2.
	for _, tc := range []struct {
		name       string
		form       url.Values
		id, secret string
		status     int
		code       string
	}{
		{"wrong secret", url.Values{"grant_type": {"client_credentials"}}, "BI_KEY", legacyKeyValue, 401, "invalid_client"},
		{"unknown client", url.Values{"grant_type": {"client_credentials"}}, "NOPE", biKeyValue, 401, "invalid_client"},
		{"no client", url.Values{"grant_type": {"client_credentials"}}, "", "", 401, "invalid_client"},
		{"scope not granted", url.Values{"grant_type": {"client_credentials"}, "scope": {"admin:write"}}, "BI_KEY", biKeyValue, 400, "invalid_scope"},
		{"legacy key without scope", url.Values{"grant_type": {"client_credentials"}}, "LEGACY_KEY", legacyKeyValue, 400, "invalid_scope"},
		{"password grant", url.Values{"grant_type": {"password"}}, "BI_KEY", biKeyValue, 400, "unsupported_grant_type"},
		{"no grant_type", url.Values{}, "BI_KEY", biKeyValue, 400, "invalid_request"},
	} {
		resp, body := postForm(t, s, tc.form, tc.id, tc.secret)
		if resp.StatusCode != tc.status || body["error"] != tc.code || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d %v %v", tc.name, resp.StatusCode, body, resp.Header)
		}
		if tc.status == 401 && resp.Header.Get("WWW-Authenticate") != `Basic realm="sechard"` {
			t.Errorf("%s: WWW-Authenticate %q", tc.name, resp.Header.Get("WWW-Authenticate"))
		}
	}
	// Malformed requests: both client authentication methods, a huge body,
	// a repeated parameter.
	for _, tc := range []struct{ name, body string }{
		{"basic and post", "grant_type=client_credentials&client_id=BI_KEY&client_secret=" + biKeyValue},
		{"huge body", "grant_type=client_credentials&pad=" + strings.Repeat("x", 64<<10)},
		{"repeated parameter", "grant_type=client_credentials&grant_type=client_credentials"},
	} {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/oauth2/token", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("BI_KEY", biKeyValue)
		resp := s.Do(req)
		var body map[string]any
		json.Unmarshal([]byte(readBody(resp)), &body)
		if resp.StatusCode != 400 || body["error"] != "invalid_request" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d %v", tc.name, resp.StatusCode, body)
		}
	}
	// A legacy (full-access) key asks for what it needs.
	if resp, body := postForm(t, s, url.Values{"grant_type": {"client_credentials"}, "scope": {"schema:read"}}, "LEGACY_KEY", legacyKeyValue); resp.StatusCode != 200 || body["scope"] != "schema:read" {
		t.Errorf("legacy key with scope: %d %v", resp.StatusCode, body)
	}
	// A bearer token is not a client credential; GET is not the grant.
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+full)
	if resp := s.Do(req); resp.StatusCode != 401 {
		t.Errorf("bearer at the token endpoint: %d", resp.StatusCode)
	}
	if resp := s.Get("/oauth2/token"); resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET token endpoint: %d %v", resp.StatusCode, resp.Header)
	}

	// Audit and metrics: every issuance and refusal (two clients above
	// fetched a second token each when asked for an HTTP client), never the
	// secret or token.
	s.SyncLogs()
	logs := s.Logs()
	for _, secret := range append([]string{biKeyValue, legacyKeyValue, full}, tokens...) {
		if strings.Contains(logs, secret) {
			t.Fatal("a secret or token reached the logs")
		}
	}
	if !strings.Contains(logs, `"msg":"token issued"`) || !strings.Contains(logs, `"msg":"token refused"`) {
		t.Error("no audit entries for issuance and refusal")
	}
	metrics := scrapeAdmin(t, s, "/metrics")
	if !strings.Contains(metrics, `sechard_tokens_issued_total{client="BI_KEY",server="srv0"} 5`) ||
		!strings.Contains(metrics, `sechard_tokens_issued_total{client="LEGACY_KEY",server="srv0"} 1`) {
		t.Errorf("tokens_issued_total wrong:\n%s", grepLines(metrics, "sechard_tokens_issued_total"))
	}

	// Revocation applies: the CLI's --token form reads jti and exp from it.
	if out, err := runCaddy(t, nil, "sechard", "revoke", "--token", full, "--address", s.AdminAddr); err != nil {
		t.Fatalf("revoke --token: %v %s", err, out)
	}
	if resp := s.Get("/healthz"); resp.StatusCode != 200 {
		t.Fatal("healthz")
	}
	if resp := s.Get("/nl-query/q", "Authorization", "Bearer "+full); resp.StatusCode != 401 {
		t.Errorf("revoked issued token: %d, want 401", resp.StatusCode)
	}

	// Rotation through caddy reload: no token in flight is refused.
	inFlight := []string{tokens[0]}
	issue := func() string {
		t.Helper()
		resp, body := postForm(t, s, url.Values{"grant_type": {"client_credentials"}}, "BI_KEY", biKeyValue)
		if resp.StatusCode != 200 {
			t.Fatalf("issue: %d %v", resp.StatusCode, body)
		}
		return body["access_token"].(string)
	}
	checkAll := func(step string) {
		t.Helper()
		for _, tok := range inFlight {
			if resp := s.Get("/nl-query/q", "Authorization", "Bearer "+tok); resp.StatusCode != 200 {
				t.Errorf("%s: a token in flight got %d", step, resp.StatusCode)
			}
		}
	}
	kidOf := func(tok string) string {
		sig, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
		if err != nil {
			t.Fatal(err)
		}
		return sig.Signatures[0].Header.KeyID
	}
	kidA := kidOf(tokens[0])
	for i, step := range []string{"TS_KEY_A TS_KEY_B", "TS_KEY_B TS_KEY_A", "TS_KEY_B"} {
		if err := s.Reload(tokenSite(up.Addr, step, "")); err != nil {
			t.Fatalf("reload %q: %v", step, err)
		}
		if step == "TS_KEY_B" {
			inFlight = inFlight[len(inFlight)-1:] // A's tokens have "expired": only B's remain
		}
		checkAll(step)
		tok := issue()
		if wantA := i == 0; (kidOf(tok) == kidA) != wantA {
			t.Errorf("%s: new token signed by kid %s (A is %s)", step, kidOf(tok), kidA)
		}
		inFlight = append(inFlight, tok)
		var ks jose.JSONWebKeySet
		json.Unmarshal([]byte(readBody(s.Get("/.well-known/jwks.json"))), &ks)
		if want := len(strings.Fields(step)); len(ks.Keys) != want {
			t.Errorf("%s: JWKS has %d keys, want %d", step, len(ks.Keys), want)
		}
	}
	if resp := s.Get("/nl-query/q", "Authorization", "Bearer "+tokens[0]); resp.StatusCode != 401 {
		t.Errorf("a token of the removed key: %d, want 401", resp.StatusCode)
	}
	verifyWithJose(t, inFlight[len(inFlight)-1], jsonKeySet(t, s), jose.EdDSA)

	// Phases: keys are exchanged with a Deprecation header in jwt_rollout,
	// not at all in jwt_only.
	s.Reload(tokenSite(up.Addr, "TS_KEY_B", "phase jwt_rollout\n\t\t\tdeprecated 2026-01-01T00:00:00Z\n\t\t\tsunset 2027-06-30T00:00:00Z"))
	if resp, _ := postForm(t, s, url.Values{"grant_type": {"client_credentials"}}, "BI_KEY", biKeyValue); resp.StatusCode != 200 ||
		resp.Header.Get("Deprecation") != "@1767225600" || resp.Header.Get("Sunset") == "" {
		t.Errorf("jwt_rollout exchange: %d %v", resp.StatusCode, resp.Header)
	}
	// jwt_only without another credential kind is a config error, so give
	// it a client_cert line (never matched here).
	s.Reload(tokenSite(up.Addr, "TS_KEY_B", "phase jwt_only\n\t\t\tclient_cert cn:batch nl-query:read"))
	if resp, body := postForm(t, s, url.Values{"grant_type": {"client_credentials"}}, "BI_KEY", biKeyValue); resp.StatusCode != 401 || body["error"] != "invalid_client" {
		t.Errorf("jwt_only exchange: %d %v", resp.StatusCode, body)
	}

	// mode report on auth does not open the token endpoint.
	s.Reload(tokenSite(up.Addr, "TS_KEY_B", "mode report"))
	if resp, body := postForm(t, s, url.Values{"grant_type": {"client_credentials"}}, "BI_KEY", "wrong"); resp.StatusCode != 401 || body["error"] != "invalid_client" {
		t.Errorf("report mode, wrong secret: %d %v", resp.StatusCode, body)
	}

	// The endpoint is rate-limited like any path (route 60/1m).
	var last int
	for range 70 {
		resp, _ := postForm(t, s, url.Values{"grant_type": {"client_credentials"}}, "BI_KEY", "wrong")
		last = resp.StatusCode
	}
	if last != 429 {
		t.Errorf("token endpoint after 70 more attempts: %d, want 429", last)
	}
}

func jsonKeySet(t *testing.T, s *caddyServer) jose.JSONWebKeySet {
	var ks jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(readBody(s.Get("/.well-known/jwks.json"))), &ks); err != nil {
		t.Fatal(err)
	}
	return ks
}

// verifyWithJose checks token with go-jose against jwks and returns its
// claims; it also checks the RFC 9068 header.
func verifyWithJose(t *testing.T, token string, jwks jose.JSONWebKeySet, alg jose.SignatureAlgorithm) map[string]any {
	t.Helper()
	sig, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{alg})
	if err != nil {
		t.Fatal(err)
	}
	h := sig.Signatures[0].Header
	if h.ExtraHeaders["typ"] != "at+jwt" {
		t.Errorf("typ %v", h.ExtraHeaders["typ"])
	}
	keys := jwks.Key(h.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q not in the JWKS", h.KeyID)
	}
	payload, err := sig.Verify(keys[0])
	if err != nil {
		t.Fatalf("go-jose does not verify the token: %v", err)
	}
	var claims map[string]any
	json.Unmarshal(payload, &claims)
	return claims
}

// TestTokenServiceTLSClientAuth: a service certificate is exchanged for a
// token (tls_client_auth, RFC 8705 §2), and client_id must name it.
func TestTokenServiceTLSClientAuth(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newMTLSCA(t, dir, "ca")
	_, _, serverCrt, serverKey := ca.issue(t, dir, "server", mtlsCertSpec{cn: "localhost", dns: []string{"localhost"}, server: true})
	_, biCert, _, _ := ca.issue(t, dir, "bi", mtlsCertSpec{cn: "service-bi", uris: []string{biSPIFFE}})
	_, strayCert, _, _ := ca.issue(t, dir, "stray", mtlsCertSpec{cn: "stray"})
	keyA, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	up := startUpstream(t)
	s := startCaddy(t, `https://localhost:{PORT} {
	bind 127.0.0.1
	tls `+serverCrt+` `+serverKey+` {
		client_auth {
			mode verify_if_given
			trust_pool file `+ca.path+`
		}
	}
	sechard {
		auth {
			phase jwt_only
			client_cert `+biSPIFFE+` nl-query:read
			require /nl-query/* nl-query:read
		}
		token_service {
			issuer https://localhost:{PORT}
			audience nl-query-api
			signing_key TS_KEY
		}
	}
	reverse_proxy `+up.Addr+`
}`, caddyOptions{Env: []string{"TS_KEY=" + pemOf(t, keyA, "PRIVATE KEY")}})
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	addr := fmt.Sprintf("127.0.0.1:%d", s.Port)
	client := func(cert *tls.Certificate) *http.Client {
		cfg := &tls.Config{RootCAs: roots}
		if cert != nil {
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}}}
	}
	base := fmt.Sprintf("https://localhost:%d", s.Port)
	exchange := func(cert *tls.Certificate, form string) (int, map[string]any) {
		resp, err := client(cert).Post(base+"/oauth2/token", "application/x-www-form-urlencoded", strings.NewReader(form))
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		json.Unmarshal([]byte(readBody(resp)), &body)
		return resp.StatusCode, body
	}

	st, body := exchange(&biCert, "grant_type=client_credentials&client_id="+url.QueryEscape(biSPIFFE))
	if st != 200 || body["scope"] != "nl-query:read" {
		t.Fatalf("tls_client_auth: %d %v", st, body)
	}
	tok := body["access_token"].(string)
	// The token is bound to the certificate (RFC 8705 §3): it works with
	// it, and a caller without the certificate gets 401
	// (TestCertificateBoundTokens has the rest).
	req, _ := http.NewRequest(http.MethodGet, base+"/nl-query/q", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if resp, err := client(&biCert).Do(req); err != nil || resp.StatusCode != 200 || up.Last().Header.Get("X-Auth-Subject") != biSPIFFE {
		t.Fatalf("issued token with its certificate: %v %v", resp, err)
	}
	if resp, err := client(nil).Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("issued token without its certificate: %v %v", resp, err)
	}
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		form string
	}{
		{"client_id of another identity", &biCert, "grant_type=client_credentials&client_id=cn%3Astray"},
		{"unmapped certificate", &strayCert, "grant_type=client_credentials"},
		{"no certificate", nil, "grant_type=client_credentials&client_id=" + url.QueryEscape(biSPIFFE)},
	} {
		if st, body := exchange(tc.cert, tc.form); st != 401 || body["error"] != "invalid_client" {
			t.Errorf("%s: %d %v", tc.name, st, body)
		}
	}
	md := map[string]any{}
	json.Unmarshal([]byte(readBody(must(client(nil).Get(base+"/.well-known/oauth-authorization-server")))), &md)
	if fmt.Sprint(md["token_endpoint_auth_methods_supported"]) != "[tls_client_auth]" {
		t.Errorf("jwt_only metadata: %v", md)
	}
}

func must(resp *http.Response, err error) *http.Response {
	if err != nil {
		panic(err)
	}
	return resp
}

// TestTokenServiceRefreshAndFleet: a client's token source asks again when
// its short-lived token expires, and a second instance with the same
// signing key accepts the first one's tokens.
func TestTokenServiceRefreshAndFleet(t *testing.T) {
	t.Parallel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	env := append([]string{"TS_KEY_A=" + pemOf(t, key, "PRIVATE KEY")}, authEnv...)
	up := startUpstream(t)
	site := func() string {
		// Both instances are one issuer: the fleet's public name.
		return strings.Replace(strings.Replace(tokenSite(up.Addr, "TS_KEY_A", ""), "issuer http://127.0.0.1:{PORT}", "issuer https://edge.example.com", 1), "ttl 2m", "ttl 11s", 1)
	}
	s1 := startCaddy(t, site(), caddyOptions{Env: env})
	s2 := startCaddy(t, site(), caddyOptions{Env: env})

	cc := clientcredentials.Config{ClientID: "BI_KEY", ClientSecret: biKeyValue, TokenURL: s1.URL + "/oauth2/token", Scopes: []string{"nl-query:read"}}
	ts := cc.TokenSource(context.Background())
	first, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	// The token from instance 1 works on instance 2.
	if resp := s2.Get("/nl-query/q", "Authorization", "Bearer "+first.AccessToken); resp.StatusCode != 200 {
		t.Fatalf("instance 2 refused instance 1's token: %d", resp.StatusCode)
	}
	// x/oauth2 treats a token as expired 10 s early: with ttl 11s it asks
	// again after about a second, and the new token works too.
	waitFor(t, 5*time.Second, "the first token to count as expired", func() bool {
		return time.Now().After(first.Expiry.Add(-10 * time.Second))
	})
	second, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if second.AccessToken == first.AccessToken {
		t.Fatal("the token source did not fetch a new token after expiry")
	}
	if resp := s2.Get("/nl-query/q", "Authorization", "Bearer "+second.AccessToken); resp.StatusCode != 200 {
		t.Fatalf("refreshed token: %d", resp.StatusCode)
	}
}
