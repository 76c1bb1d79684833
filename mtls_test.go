package sechard

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/sechard/sechard/internal/jwttest"
)

func TestClientCertCaddyfileParses(t *testing.T) {
	d := caddyfile.NewTestDispenser(`auth {
		client_cert spiffe://cluster.local/ns/bi/sa/service-bi nl-query:read schema:read
		client_cert cn:reporting-job
		client_cert dns:etl.internal.example nl-query:read
	}`)
	d.Next()
	var a Auth
	if err := a.unmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := []ClientCert{
		{Identity: "spiffe://cluster.local/ns/bi/sa/service-bi", Scopes: []string{"nl-query:read", "schema:read"}},
		{Identity: "cn:reporting-job", Scopes: []string{}},
		{Identity: "dns:etl.internal.example", Scopes: []string{"nl-query:read"}},
	}
	if !reflect.DeepEqual(a.ClientCerts, want) {
		t.Fatalf("got  %+v\nwant %+v", a.ClientCerts, want)
	}
}

func TestClientCertAdaptsToJSON(t *testing.T) {
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(`:8443 {
	sechard {
		auth {
			client_cert spiffe://cluster.local/ns/bi/sa/service-bi nl-query:read
			client_cert cn:reporting-job
		}
	}
}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `"auth":{"client_certs":[{"identity":"spiffe://cluster.local/ns/bi/sa/service-bi","scopes":["nl-query:read"]},{"identity":"cn:reporting-job"}]}`
	if !strings.Contains(string(out), want) {
		t.Fatalf("adapted JSON lacks %s:\n%s", want, out)
	}
}

func TestClientCertCaddyfileErrorsCarryTheLine(t *testing.T) {
	for name, tc := range map[string]struct{ line, want string }{
		"no identity":                  {`client_cert`, "wrong argument count"},
		"empty identity":               {`client_cert ""`, "empty identity"},
		"unknown prefix":               {`client_cert uri:spiffe://a/b`, "must start with"},
		"bare name":                    {`client_cert service-bi`, "must start with"},
		"https URI":                    {`client_cert https://cluster.local/ns/bi`, "must start with"},
		"upper-case prefix":            {`client_cert SPIFFE://cluster.local/ns/bi`, "must start with"},
		"duplicate":                    {"client_cert cn:job a\n\tclient_cert cn:job b", "given twice"},
		"spiffe without path":          {`client_cert spiffe://cluster.local`, "workload path"},
		"spiffe trailing slash":        {`client_cert spiffe://cluster.local/ns/bi/`, "empty path segment"},
		"spiffe empty segment":         {`client_cert spiffe://cluster.local/ns//bi`, "empty path segment"},
		"spiffe dot segment":           {`client_cert spiffe://cluster.local/ns/../admin`, "relative path segment"},
		"spiffe upper-case domain":     {`client_cert spiffe://Cluster.Local/ns/bi`, "trust domain"},
		"spiffe port":                  {`client_cert spiffe://cluster.local:443/ns/bi`, "trust domain"},
		"spiffe user info":             {`client_cert spiffe://me@cluster.local/ns/bi`, "trust domain"},
		"spiffe no trust domain":       {`client_cert spiffe:///ns/bi`, "no trust domain"},
		"spiffe query":                 {`client_cert spiffe://cluster.local/ns/bi?x=1`, "no query"},
		"spiffe fragment":              {`client_cert spiffe://cluster.local/ns/bi#x`, "no query"},
		"spiffe percent-escape":        {`client_cert spiffe://cluster.local/ns/b%69`, "no query"},
		"spiffe too long":              {`client_cert spiffe://cluster.local/` + strings.Repeat("a", 2048), "longer than 2048"},
		"cn empty":                     {`client_cert cn:`, "needs a common name"},
		"dns empty":                    {`client_cert dns:`, "needs a name"},
		"dns upper case":               {`client_cert dns:ETL.example`, "lower case"},
		"dns wildcard":                 {`client_cert dns:*.example`, "wildcards"},
		"dns trailing dot":             {`client_cert dns:etl.example.`, "empty or over-long label"},
		"dns bad character":            {`client_cert dns:etl/x.example`, "invalid character"},
		"dns long label":               {`client_cert dns:` + strings.Repeat("a", 64) + `.example`, "over-long label"},
		"second line without identity": {`client_cert dns:a.example x` + "\n\tclient_cert", "wrong argument count"},
	} {
		t.Run(name, func(t *testing.T) {
			d := caddyfile.NewTestDispenser("auth {\n\t" + tc.line + "\n}")
			d.Next()
			err := new(Auth).unmarshalCaddyfile(d)
			if err == nil || !strings.Contains(err.Error(), "Testfile:") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error with file:line containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestClientCertProvisionRejectsBadIdentities(t *testing.T) {
	for name, tc := range map[string]struct {
		certs []ClientCert
		want  string
	}{
		"empty":          {[]ClientCert{{Identity: ""}}, "empty identity"},
		"bad prefix":     {[]ClientCert{{Identity: "CN=job"}}, "must start with"},
		"duplicate":      {[]ClientCert{{Identity: "dns:a.example"}, {Identity: "dns:a.example", Scopes: []string{"x"}}}, "mapped twice"},
		"spiffe no path": {[]ClientCert{{Identity: "spiffe://td"}}, "workload path"},
		"cn control":     {[]ClientCert{{Identity: "cn:a\nb"}}, "control character"},
	} {
		t.Run(name, func(t *testing.T) {
			a := Auth{ClientCerts: tc.certs}
			err := a.provision(authTestEnv(t, time.Now, nil))
			if err == nil || !strings.Contains(err.Error(), "client_cert") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want a client_cert error containing %q, got %v", tc.want, err)
			}
		})
	}
	// client_cert lines alone are usable credentials, in every phase.
	for _, phase := range []string{"", phaseDual, phaseJWTOnly} {
		a := Auth{Phase: phase, ClientCerts: []ClientCert{{Identity: "cn:job"}}}
		if err := a.provision(authTestEnv(t, time.Now, nil)); err != nil {
			t.Fatalf("phase %q: %v", phase, err)
		}
	}
}

func TestClientCertMatchIsExact(t *testing.T) {
	ci, err := newCertIdentities([]ClientCert{
		{Identity: "spiffe://cluster.local/ns/bi/sa/service-bi", Scopes: []string{"nl-query:read"}},
		{Identity: "cn:reporting-job"},
		{Identity: "dns:etl.internal.example"},
		{Identity: "spiffe://cluster.local/ns/etl/sa/etl"},
	})
	if err != nil {
		t.Fatal(err)
	}
	const bi = "spiffe://cluster.local/ns/bi/sa/service-bi"
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		want string // subject; "" = no match
	}{
		{"SPIFFE ID", mtlsLeaf("", nil, bi), bi},
		{"SPIFFE ID as second URI SAN", mtlsLeaf("", nil, "https://example.com/x", bi), bi},
		{"scheme case is normalised by URI parsing (as go-spiffe reads it)", mtlsLeaf("", nil, "SPIFFE://cluster.local/ns/bi/sa/service-bi"), bi},
		{"longer path", mtlsLeaf("", nil, bi+"-2"), ""},
		{"sub-path", mtlsLeaf("", nil, bi+"/x"), ""},
		{"parent path", mtlsLeaf("", nil, "spiffe://cluster.local/ns/bi/sa"), ""},
		{"other trust domain", mtlsLeaf("", nil, "spiffe://evil.local/ns/bi/sa/service-bi"), ""},
		{"trust domain upper case", mtlsLeaf("", nil, "spiffe://Cluster.local/ns/bi/sa/service-bi"), ""},
		{"port", mtlsLeaf("", nil, "spiffe://cluster.local:8443/ns/bi/sa/service-bi"), ""},
		{"user info", mtlsLeaf("", nil, "spiffe://bi@cluster.local/ns/bi/sa/service-bi"), ""},
		{"query", mtlsLeaf("", nil, bi+"?x=1"), ""},
		{"empty query", mtlsLeaf("", nil, bi+"?"), ""},
		{"fragment", mtlsLeaf("", nil, bi+"#x"), ""},
		{"percent-escaped character", mtlsLeaf("", nil, "spiffe://cluster.local/ns/bi/sa/service%2Dbi"), ""},
		{"escaped slash", mtlsLeaf("", nil, "spiffe://cluster.local/ns%2Fbi/sa/service-bi"), ""},
		{"https scheme", mtlsLeaf("", nil, "https://cluster.local/ns/bi/sa/service-bi"), ""},
		{"SPIFFE ID as CN is not a URI SAN", mtlsLeaf(bi, nil), ""},
		{"SPIFFE ID as DNS SAN is not a URI SAN", mtlsLeaf("", []string{bi}), ""},
		{"CN", mtlsLeaf("reporting-job", nil), "cn:reporting-job"},
		{"CN is case-sensitive", mtlsLeaf("Reporting-Job", nil), ""},
		{"CN with prefix in it", mtlsLeaf("cn:reporting-job", nil), ""},
		{"DNS SAN", mtlsLeaf("", []string{"x.example", "etl.internal.example"}), "dns:etl.internal.example"},
		{"DNS SAN case-insensitive", mtlsLeaf("", []string{"ETL.Internal.Example"}), "dns:etl.internal.example"},
		{"DNS SAN suffix", mtlsLeaf("", []string{"x.etl.internal.example"}), ""},
		{"DNS name as CN is not a DNS SAN", mtlsLeaf("etl.internal.example", nil), ""},
		{"nothing", mtlsLeaf("", nil), ""},
		{"several lines name it: the first configured wins", mtlsLeaf("reporting-job", []string{"etl.internal.example"}, "spiffe://cluster.local/ns/etl/sa/etl"), "cn:reporting-job"},
		{"several lines name it: SPIFFE line first", mtlsLeaf("reporting-job", nil, bi), bi},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if id := ci.match(tc.cert); id != nil {
				got = id.subject
				if id.method != "mtls" {
					t.Fatalf("method %q", id.method)
				}
			}
			if got != tc.want {
				t.Fatalf("matched %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAuthDecideMTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newMTLSCA(t, dir, "ca")
	now := time.Now()
	bi, _, _, _ := ca.issue(t, dir, "bi", mtlsCertSpec{uris: []string{biSPIFFE}, notBefore: now.Add(-time.Hour), notAfter: now.Add(time.Hour)})
	noScopes, _, _, _ := ca.issue(t, dir, "ns", mtlsCertSpec{cn: "no-scopes"})
	unmapped, _, _, _ := ca.issue(t, dir, "x", mtlsCertSpec{cn: "nobody"})
	ti := newTestIssuer(t)

	type result struct {
		status          int
		wwwAuth, method string
	}
	run := func(a *Auth, cs *tls.ConnectionState, path string, hdr ...string) (result, *exchange) {
		ex := newAuthExchange(path)
		ex.r.TLS = cs
		for i := 0; i+1 < len(hdr); i += 2 {
			ex.r.Header.Set(hdr[i], hdr[i+1])
		}
		d := a.decide(ex)
		return result{d.Status, d.Header.Get("WWW-Authenticate"), ex.r.Header.Get("X-Auth-Method")}, ex
	}
	clock := now
	a := mtlsUnitAuth(t, &clock, nil)
	jwtHdr := []string{"Authorization", "Bearer " + ti.sign("es256", jwttest.Claims(now, nil), nil)}

	t.Run("verified and mapped: identity, scopes and placeholders", func(t *testing.T) {
		got, ex := run(a, mtlsVerifiedState(t, ca, bi), "/nl-query/x", "X-Auth-Subject", "root")
		if got != (result{0, "", "mtls"}) {
			t.Fatalf("%+v", got)
		}
		h := ex.r.Header
		if h.Get("X-Auth-Subject") != biSPIFFE || h.Get("X-Auth-Scopes") != "nl-query:read schema:read" {
			t.Fatalf("identity headers %v", h)
		}
		for k, want := range map[string]string{"http.auth.user.id": biSPIFFE, "http.auth.user.method": "mtls", "http.auth.user.scopes": "nl-query:read schema:read"} {
			if got, _ := ex.repl.GetString(k); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
	})

	t.Run("no scopes is no scope, not full access", func(t *testing.T) {
		if got, _ := run(a, mtlsVerifiedState(t, ca, noScopes), "/other"); got != (result{0, "", "mtls"}) {
			t.Fatalf("%+v", got)
		}
		if got, _ := run(a, mtlsVerifiedState(t, ca, noScopes), "/nl-query/x"); got.status != http.StatusForbidden {
			t.Fatalf("%+v", got)
		}
	})

	t.Run("presented but not verified: ignored", func(t *testing.T) {
		cs := &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{bi}}
		if got, _ := run(a, cs, "/x"); got != (result{401, `Bearer realm="sechard"`, ""}) {
			t.Fatalf("%+v", got)
		}
		if got, _ := run(a, cs, "/x", jwtHdr...); got != (result{0, "", "jwt"}) {
			t.Fatalf("%+v", got)
		}
		// An empty chain list or an empty chain counts as unverified too.
		cs.VerifiedChains = [][]*x509.Certificate{{}}
		if got, _ := run(a, cs, "/x"); got.status != 401 {
			t.Fatalf("%+v", got)
		}
	})

	t.Run("plain HTTP", func(t *testing.T) {
		if got, _ := run(a, nil, "/x"); got != (result{401, `Bearer realm="sechard"`, ""}) {
			t.Fatalf("%+v", got)
		}
	})

	t.Run("unmapped: 401 alone, other credentials decide", func(t *testing.T) {
		cs := mtlsVerifiedState(t, ca, unmapped)
		if got, _ := run(a, cs, "/x"); got != (result{401, wwwAuth401("client certificate not mapped"), ""}) {
			t.Fatalf("%+v", got)
		}
		if got, _ := run(a, cs, "/x", jwtHdr...); got != (result{0, "", "jwt"}) {
			t.Fatalf("%+v", got)
		}
		if got, _ := run(a, cs, "/x", "X-API-Key", "the-key"); got != (result{0, "", "api_key"}) {
			t.Fatalf("%+v", got)
		}
		if got, _ := run(a, cs, "/x", "Authorization", "Bearer bad"); got != (result{401, wwwAuth401("malformed token"), ""}) {
			t.Fatalf("%+v", got)
		}
	})

	t.Run("mapped certificate wins over JWT and API key", func(t *testing.T) {
		for _, hdr := range [][]string{jwtHdr, {"Authorization", "Bearer bad"}, {"X-API-Key", "wrong"}, {"X-API-Key", "the-key"}} {
			got, ex := run(a, mtlsVerifiedState(t, ca, bi), "/x", hdr...)
			if got != (result{0, "", "mtls"}) || ex.r.Header.Get("X-Api-Key") != "" {
				t.Fatalf("%v: %+v %v", hdr, got, ex.r.Header)
			}
		}
	})

	t.Run("expired since the handshake grants nothing", func(t *testing.T) {
		cs := mtlsVerifiedState(t, ca, bi)
		clock = bi.NotAfter.Add(time.Second)
		defer func() { clock = now }()
		if got, _ := run(a, cs, "/x"); got != (result{401, wwwAuth401("client certificate expired"), ""}) {
			t.Fatalf("%+v", got)
		}
		clock = bi.NotAfter
		if got, _ := run(a, cs, "/x"); got.status != 0 {
			t.Fatalf("at NotAfter: %+v", got)
		}
	})

	t.Run("jwt_only accepts mTLS", func(t *testing.T) {
		only := mtlsUnitAuth(t, &clock, func(a *Auth) { a.Phase = phaseJWTOnly })
		if got, _ := run(only, mtlsVerifiedState(t, ca, bi), "/nl-query/x"); got != (result{0, "", "mtls"}) {
			t.Fatalf("%+v", got)
		}
		if got, _ := run(only, nil, "/nl-query/x", "X-API-Key", "the-key"); got.status != 401 {
			t.Fatalf("%+v", got)
		}
	})

	t.Run("jwt_rollout: no deprecation headers when the certificate decided", func(t *testing.T) {
		ro := mtlsUnitAuth(t, &clock, func(a *Auth) { a.Phase = phaseJWTRollout; a.Deprecated = "2026-12-01T00:00:00Z" })
		got, ex := run(ro, mtlsVerifiedState(t, ca, bi), "/x", "X-API-Key", "the-key")
		if got.method != "mtls" || ex.w.Header().Get("Deprecation") != "" {
			t.Fatalf("%+v %v", got, ex.w.Header())
		}
	})

	t.Run("subject revocation applies by NotBefore", func(t *testing.T) {
		cs := mtlsVerifiedState(t, ca, bi)
		for i, tc := range []struct {
			line string
			want int
		}{
			{"", 0},
			{"sub:" + biSPIFFE, 401},
			{fmt.Sprintf("sub:%s %d", biSPIFFE, bi.NotBefore.Unix()+1), 401},
			{fmt.Sprintf("sub:%s %d", biSPIFFE, bi.NotBefore.Unix()), 0}, // reissued at that time
			{"sub:spiffe://cluster.local/ns/bi/sa/other", 0},
		} {
			file := filepath.Join(dir, fmt.Sprintf("revoked-%d.txt", i))
			writeTestFile(t, file, tc.line+"\n")
			rv := mtlsUnitAuth(t, &clock, func(a *Auth) { a.Revocation = &Revocation{File: file} })
			got, _ := run(rv, cs, "/x")
			if got.status != tc.want {
				t.Fatalf("%q: %+v", tc.line, got)
			}
			if tc.want == 401 && got.wwwAuth != wwwAuth401("client certificate revoked") {
				t.Fatalf("%q: %+v", tc.line, got)
			}
		}
	})
}

// BenchmarkMTLSIdentityLookup: finding the client_cert line of a verified
// leaf among 50 (SPIFFE, DNS and CN lines), for a SPIFFE certificate that
// also carries DNS SANs and a CN. Run with -benchmem: it must not allocate.
func BenchmarkMTLSIdentityLookup(b *testing.B) {
	var certs []ClientCert
	for i := range 50 {
		switch i % 3 {
		case 0:
			certs = append(certs, ClientCert{Identity: fmt.Sprintf("spiffe://cluster.local/ns/ns%d/sa/svc%d", i, i), Scopes: []string{"s"}})
		case 1:
			certs = append(certs, ClientCert{Identity: fmt.Sprintf("dns:svc%d.internal.example", i)})
		default:
			certs = append(certs, ClientCert{Identity: fmt.Sprintf("cn:job-%d", i)})
		}
	}
	ci, err := newCertIdentities(certs)
	if err != nil {
		b.Fatal(err)
	}
	leaf := mtlsLeaf("job-unmapped", []string{"svc-x.internal.example", "svc-y.internal.example"}, "spiffe://cluster.local/ns/ns24/sa/svc24")
	cs := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}
	b.ReportAllocs()
	for b.Loop() {
		if id := ci.match(verifiedLeaf(cs)); id == nil {
			b.Fatal("no match")
		}
	}
}

// BenchmarkAuthMTLSRequest: a full auth decision for a mapped certificate
// (lookup, expiry and revocation checks, identity headers, placeholders,
// audit check), under the same conditions as
// BenchmarkAuthCachedTokenRequest (no require rule).
func BenchmarkAuthMTLSRequest(b *testing.B) {
	dir := b.TempDir()
	ca := newMTLSCA(b, dir, "ca")
	leaf, _, _, _ := ca.issue(b, dir, "bi", mtlsCertSpec{uris: []string{biSPIFFE}})
	now := time.Now()
	a := mtlsUnitAuth(b, &now, nil)
	a.rules = nil
	ex := newAuthExchange("/x")
	ex.r.TLS = mtlsVerifiedState(b, ca, leaf)
	b.ReportAllocs()
	for b.Loop() {
		if d := a.decide(ex); d.Status != 0 {
			b.Fatalf("refused: %+v", d)
		}
	}
}

// FuzzClientCertIdentity: validation never panics, and every identity it
// accepts is matched by a certificate carrying exactly that name (so the
// load-time rules and the request-time comparison agree).
func FuzzClientCertIdentity(f *testing.F) {
	for _, s := range []string{biSPIFFE, "spiffe://td/a", "spiffe://td/a/../b", "spiffe://td/a%2Fb", "spiffe://td:1/a",
		"cn:job", "cn:", "dns:a.example", "dns:A.example", "dns:*.x", "uri:x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkCertIdentity(s) != nil {
			return
		}
		ci, err := newCertIdentities([]ClientCert{{Identity: s}})
		if err != nil {
			t.Fatalf("accepted by checkCertIdentity, refused by newCertIdentities: %v", err)
		}
		var cert *x509.Certificate
		switch {
		case strings.HasPrefix(s, certPrefixSPIFFE):
			u, err := url.Parse(s)
			if err != nil {
				t.Fatalf("accepted SPIFFE ID %q is no URI: %v", s, err)
			}
			if u.String() != s {
				t.Fatalf("accepted SPIFFE ID %q reads back as %q", s, u.String())
			}
			cert = &x509.Certificate{URIs: []*url.URL{u}}
		case strings.HasPrefix(s, certPrefixCN):
			cert = mtlsLeaf(s[len(certPrefixCN):], nil)
		default:
			cert = mtlsLeaf("", []string{s[len(certPrefixDNS):]})
		}
		if id := ci.match(cert); id == nil || id.subject != s {
			t.Fatalf("a certificate naming %q is not matched", s)
		}
	})
}
