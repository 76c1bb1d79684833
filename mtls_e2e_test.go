package sechard

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sechard/sechard/internal/jwttest"
)

// mtlsSite is an HTTPS site whose TLS stack verifies client certificates
// against caPath (clientAuth is the client_auth block's body) and whose
// sechard maps three identities; JWTs and an API key stay available for the
// fallback and precedence cases.
func mtlsSite(ti *testIssuer, upstream, serverCrt, serverKey, clientAuth, authExtra string) string {
	return `https://localhost:{PORT} {
	bind 127.0.0.1
	tls ` + serverCrt + ` ` + serverKey + ` {
		client_auth {
			` + clientAuth + `
		}
	}
	log {
		output stderr
		format filter {
			request>headers>X-Api-Key delete
		}
	}
	sechard {
		auth {
			api_key BI_KEY nl-query:read
			` + ti.jwtBlock("\t\t\t\tissuer https://auth.test\n\t\t\t\taudience nl-query-api\n") + `
			client_cert ` + biSPIFFE + ` nl-query:read schema:read
			client_cert cn:reporting-job reports:read
			client_cert dns:etl.internal.example nl-query:read
			require /nl-query/* nl-query:read
			require /admin/* admin:write
			require /reports/* reports:read
			` + authExtra + `
		}
	}
	reverse_proxy ` + upstream + `
}`
}

// TestMTLSEndToEnd drives client certificates through a real Caddy with
// client_auth: Caddy's TLS stack verifies them, sechard maps them.
func TestMTLSEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newMTLSCA(t, dir, "ca")
	otherCA := newMTLSCA(t, dir, "other-ca")
	_, _, serverCrt, serverKey := ca.issue(t, dir, "server", mtlsCertSpec{cn: "localhost", dns: []string{"localhost"}, server: true})
	_, biCert, _, _ := ca.issue(t, dir, "bi", mtlsCertSpec{cn: "service-bi", uris: []string{biSPIFFE}})
	_, cnCert, _, _ := ca.issue(t, dir, "reporting", mtlsCertSpec{cn: "reporting-job"})
	// DNS names compare case-insensitively.
	_, dnsCert, _, _ := ca.issue(t, dir, "etl", mtlsCertSpec{cn: "etl", dns: []string{"ETL.internal.example"}})
	_, unmappedCert, _, _ := ca.issue(t, dir, "intruder", mtlsCertSpec{cn: "intruder", uris: []string{"spiffe://cluster.local/ns/x/sa/intruder"}})
	// Another CA issuing the very identity that is mapped.
	_, foreignCert, _, _ := otherCA.issue(t, dir, "foreign", mtlsCertSpec{cn: "service-bi", uris: []string{biSPIFFE}})

	ti := newTestIssuer(t)
	up := startUpstream(t)
	verifyIfGiven := "mode verify_if_given\n\t\t\ttrust_pool file " + ca.path
	site := func(clientAuth, extra string) string {
		return mtlsSite(ti, up.Addr, serverCrt, serverKey, clientAuth, extra)
	}
	s := startCaddy(t, site(verifyIfGiven, ""), caddyOptions{Env: authEnv})
	// The site is named (clients send SNI `localhost`; with client_auth
	// Caddy refuses a Host that differs from the SNI with 421), and every
	// connection goes to 127.0.0.1.
	base := fmt.Sprintf("https://localhost:%d", s.Port)
	addr := fmt.Sprintf("127.0.0.1:%d", s.Port)
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	// do sends a GET presenting cert (nil: none). A new connection every
	// time, so each request sees the config loaded when it was sent.
	do := func(t *testing.T, cert *tls.Certificate, path string, hdr ...string) (*http.Response, error) {
		t.Helper()
		cfg := &tls.Config{RootCAs: roots}
		if cert != nil {
			// Always present it, even when it is not from a CA the server
			// names in its CertificateRequest (Go's client would otherwise
			// quietly send none), as a hostile client would.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true, DialContext: dial}}
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Add(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	get := func(t *testing.T, cert *tls.Certificate, path string, hdr ...string) *http.Response {
		t.Helper()
		resp, err := do(t, cert, path, hdr...)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp
	}
	expect := func(t *testing.T, resp *http.Response, status int, wwwAuth string) {
		t.Helper()
		if resp.StatusCode != status {
			t.Fatalf("status %d, want %d (WWW-Authenticate %q)", resp.StatusCode, status, resp.Header.Get("WWW-Authenticate"))
		}
		if got := resp.Header.Get("WWW-Authenticate"); got != wwwAuth {
			t.Fatalf("WWW-Authenticate %q, want %q", got, wwwAuth)
		}
	}
	expectIdentity := func(t *testing.T, method, subject, scopes string) {
		t.Helper()
		h := up.Last().Header
		if got := h.Values("X-Auth-Subject"); len(got) != 1 || got[0] != subject {
			t.Fatalf("upstream X-Auth-Subject %q, want %q", got, subject)
		}
		if got := h.Values("X-Auth-Method"); len(got) != 1 || got[0] != method {
			t.Fatalf("upstream X-Auth-Method %q, want %q", got, method)
		}
		if got := h.Values("X-Auth-Scopes"); len(got) != 1 || got[0] != scopes {
			t.Fatalf("upstream X-Auth-Scopes %q, want %q", got, scopes)
		}
	}
	auditFor := func(t *testing.T, resp *http.Response) map[string]any {
		t.Helper()
		rid := resp.Header.Get("X-Request-ID")
		return s.WaitLog(func(e map[string]any) bool {
			return e["logger"] == "http.handlers.sechard.audit" && e["request_id"] == rid && rid != ""
		}, 3*time.Second)
	}
	bearer := func(claims map[string]any) []string {
		return []string{"Authorization", "Bearer " + ti.sign("es256", jwttest.Claims(time.Now(), claims), nil)}
	}

	t.Run("mapped SPIFFE certificate passes with its scopes", func(t *testing.T) {
		expect(t, get(t, &biCert, "/nl-query/ask"), 200, "")
		expectIdentity(t, "mtls", biSPIFFE, "nl-query:read schema:read")
	})

	t.Run("client-sent identity headers are overwritten", func(t *testing.T) {
		spoof := []string{"X-Auth-Subject", "root", "X-Auth-Scopes", "admin:write", "X-Auth-Method", "jwt"}
		expect(t, get(t, &biCert, "/nl-query/ask", spoof...), 200, "")
		expectIdentity(t, "mtls", biSPIFFE, "nl-query:read schema:read")
		// Spoofed headers grant nothing either.
		before := up.Count()
		expect(t, get(t, &biCert, "/admin/users", spoof...), 403, `Bearer error="insufficient_scope", scope="admin:write"`)
		if up.Count() != before {
			t.Fatal("a refused request reached the upstream")
		}
	})

	t.Run("cn and dns mappings", func(t *testing.T) {
		expect(t, get(t, &cnCert, "/reports/daily"), 200, "")
		expectIdentity(t, "mtls", "cn:reporting-job", "reports:read")
		expect(t, get(t, &cnCert, "/nl-query/ask"), 403, `Bearer error="insufficient_scope", scope="nl-query:read"`)
		expect(t, get(t, &dnsCert, "/nl-query/ask"), 200, "")
		expectIdentity(t, "mtls", "dns:etl.internal.example", "nl-query:read")
	})

	t.Run("require rules apply to mTLS scopes", func(t *testing.T) {
		before := up.Count()
		resp := get(t, &biCert, "/admin/users")
		expect(t, resp, 403, `Bearer error="insufficient_scope", scope="admin:write"`)
		if up.Count() != before {
			t.Fatal("a refused request reached the upstream")
		}
		deny := auditFor(t, resp)
		for k, want := range map[string]any{"level": "warn", "decision": "deny", "reason": "auth_insufficient_scope", "method": "mtls",
			"subject": biSPIFFE, "scopes": "nl-query:read schema:read", "required_scopes": "admin:write"} {
			if deny[k] != want {
				t.Errorf("deny entry %s = %v, want %v (%v)", k, deny[k], want, deny)
			}
		}
	})

	t.Run("unmapped certificate is 401 and grants nothing", func(t *testing.T) {
		before := up.Count()
		resp := get(t, &unmappedCert, "/data")
		expect(t, resp, 401, wwwAuth401("client certificate not mapped"))
		if up.Count() != before {
			t.Fatal("a refused request reached the upstream")
		}
		deny := auditFor(t, resp)
		for k, want := range map[string]any{"decision": "deny", "reason": "auth_invalid", "method": "mtls",
			"subject": "spiffe://cluster.local/ns/x/sa/intruder", "detail": "client certificate not mapped"} {
			if deny[k] != want {
				t.Errorf("deny entry %s = %v, want %v (%v)", k, deny[k], want, deny)
			}
		}
		// Spoofing the mapped identity in headers does not help.
		expect(t, get(t, &unmappedCert, "/nl-query/x", "X-Auth-Subject", biSPIFFE, "X-Auth-Method", "mtls"), 401, wwwAuth401("client certificate not mapped"))
		// Other credentials still decide.
		expect(t, get(t, &unmappedCert, "/nl-query/x", bearer(nil)...), 200, "")
		expectIdentity(t, "jwt", "service-bi", "nl-query:read schema:read")
		expect(t, get(t, &unmappedCert, "/nl-query/x", "X-API-Key", biKeyValue), 200, "")
		expectIdentity(t, "api_key", "BI_KEY", "nl-query:read")
		expect(t, get(t, &unmappedCert, "/nl-query/x", "X-API-Key", "wrong"), 401, wwwAuth401("unknown API key"))
	})

	t.Run("no certificate: JWT and API key as before", func(t *testing.T) {
		expect(t, get(t, nil, "/data"), 401, `Bearer realm="sechard"`)
		expect(t, get(t, nil, "/nl-query/x", bearer(nil)...), 200, "")
		expectIdentity(t, "jwt", "service-bi", "nl-query:read schema:read")
		expect(t, get(t, nil, "/nl-query/x", "X-API-Key", biKeyValue), 200, "")
		expectIdentity(t, "api_key", "BI_KEY", "nl-query:read")
	})

	t.Run("precedence: mTLS, then JWT, then API key", func(t *testing.T) {
		// A JWT for another subject with more scopes: the certificate decides.
		resp := get(t, &biCert, "/nl-query/x", bearer(map[string]any{"sub": "jwt-user", "scopes": []string{"nl-query:read", "admin:write"}})...)
		expect(t, resp, 200, "")
		expectIdentity(t, "mtls", biSPIFFE, "nl-query:read schema:read")
		expect(t, get(t, &biCert, "/admin/x", bearer(map[string]any{"scopes": []string{"admin:write"}})...), 403,
			`Bearer error="insufficient_scope", scope="admin:write"`)
		// An invalid JWT next to a mapped certificate is not looked at.
		expect(t, get(t, &biCert, "/nl-query/x", "Authorization", "Bearer not-a-jwt"), 200, "")
		expectIdentity(t, "mtls", biSPIFFE, "nl-query:read schema:read")
		// The API key is removed even when the certificate decided.
		expect(t, get(t, &biCert, "/nl-query/x", "X-API-Key", biKeyValue), 200, "")
		expectIdentity(t, "mtls", biSPIFFE, "nl-query:read schema:read")
		if v := up.Last().Header.Get("X-Api-Key"); v != "" {
			t.Fatal("the API key reached the upstream")
		}
	})

	t.Run("audit entries and access log show mtls", func(t *testing.T) {
		resp := get(t, &biCert, "/nl-query/audit")
		expect(t, resp, 200, "")
		allow := auditFor(t, resp)
		for k, want := range map[string]any{"level": "info", "decision": "allow", "reason": "authenticated", "method": "mtls",
			"subject": biSPIFFE, "scopes": "nl-query:read schema:read", "path": "/nl-query/audit", "client_ip": "127.0.0.1", "enforced": nil} {
			if allow[k] != want {
				t.Errorf("allow entry %s = %v, want %v (%v)", k, allow[k], want, allow)
			}
		}
		if _, ok := allow["jti"]; ok {
			t.Errorf("mtls audit entry has a jti: %v", allow)
		}
		s.WaitLog(func(e map[string]any) bool {
			l, _ := e["logger"].(string)
			return strings.HasPrefix(l, "http.log.access") && e["user_id"] == biSPIFFE
		}, 3*time.Second)
	})

	t.Run("certificate from another CA never reaches sechard", func(t *testing.T) {
		before := up.Count()
		s.SyncLogs()
		beforeAudit := len(mtlsAuditEntries(s))
		_, err := do(t, &foreignCert, "/nl-query/x")
		if err == nil || !strings.Contains(err.Error(), "tls:") {
			t.Fatalf("want a TLS handshake error, got %v", err)
		}
		if up.Count() != before {
			t.Fatal("the request reached the upstream")
		}
		s.SyncLogs()
		if n := len(mtlsAuditEntries(s)); n != beforeAudit {
			t.Fatalf("sechard saw the request: %d new audit entries", n-beforeAudit)
		}
	})

	t.Run("jwt_only accepts mTLS", func(t *testing.T) {
		if err := s.Reload(site(verifyIfGiven, "phase jwt_only")); err != nil {
			t.Fatal(err)
		}
		expect(t, get(t, &biCert, "/nl-query/x"), 200, "")
		expectIdentity(t, "mtls", biSPIFFE, "nl-query:read schema:read")
		expect(t, get(t, nil, "/nl-query/x", "X-API-Key", biKeyValue), 401, wwwAuth401("API keys are no longer accepted; use a JWT"))
		expect(t, get(t, nil, "/nl-query/x", bearer(nil)...), 200, "")
	})

	t.Run("require_and_verify: no certificate, no request", func(t *testing.T) {
		if err := s.Reload(site("mode require_and_verify\n\t\t\ttrust_pool file "+ca.path, "")); err != nil {
			t.Fatal(err)
		}
		before := up.Count()
		if _, err := do(t, nil, "/nl-query/x", bearer(nil)...); err == nil || !strings.Contains(err.Error(), "tls:") {
			t.Fatalf("want a TLS handshake error without a certificate, got %v", err)
		}
		if _, err := do(t, &foreignCert, "/nl-query/x"); err == nil || !strings.Contains(err.Error(), "tls:") {
			t.Fatalf("want a TLS handshake error for another CA, got %v", err)
		}
		if up.Count() != before {
			t.Fatal("a request without a verified certificate reached the upstream")
		}
		expect(t, get(t, &biCert, "/nl-query/x"), 200, "")
		expectIdentity(t, "mtls", biSPIFFE, "nl-query:read schema:read")
		expect(t, get(t, &unmappedCert, "/nl-query/x"), 401, wwwAuth401("client certificate not mapped"))
	})

	t.Run("a certificate Caddy did not verify grants nothing", func(t *testing.T) {
		// mode request: Caddy asks for a certificate but verifies nothing,
		// so the other CA's certificate with the mapped SPIFFE ID gets in,
		// and must count for nothing.
		if err := s.Reload(site("mode request", "")); err != nil {
			t.Fatal(err)
		}
		before := up.Count()
		expect(t, get(t, &foreignCert, "/nl-query/x"), 401, `Bearer realm="sechard"`)
		expect(t, get(t, &biCert, "/nl-query/x"), 401, `Bearer realm="sechard"`)
		if up.Count() != before {
			t.Fatal("an unverified certificate reached the upstream")
		}
		expect(t, get(t, &foreignCert, "/nl-query/x", bearer(nil)...), 200, "")
		expectIdentity(t, "jwt", "service-bi", "nl-query:read schema:read")
	})
}

// mtlsAuditEntries returns the audit log entries printed so far.
func mtlsAuditEntries(s *caddyServer) []map[string]any {
	var out []map[string]any
	for _, e := range s.LogEntries() {
		if e["logger"] == "http.handlers.sechard.audit" {
			out = append(out, e)
		}
	}
	return out
}
