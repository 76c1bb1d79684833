package sechard

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/sechard/sechard/internal/jwttest"
	"github.com/sechard/sechard/internal/secrets"
)

func TestAuthCaddyfileParsesEveryOption(t *testing.T) {
	d := caddyfile.NewTestDispenser(`auth {
		phase jwt_rollout
		api_key BI_API_KEY nl-query:read schema:read
		api_key LEGACY
		api_key_header X-Key
		deprecated 2026-12-01T00:00:00Z
		sunset 2027-06-30T00:00:00Z
		jwt {
			public_key /k1.pem
			public_key /k2.pem kid-2
			jwks_file /jwks.json
			jwks_url https://auth.internal/jwks.json
			refresh 1m
			issuer https://auth.internal
			audience nl-query-api
			algorithms ES256 EdDSA
			leeway 10s
			max_ttl 2m
		}
		require /nl-query/* nl-query:read
		require /me
		require schema:read
		public /healthz /metrics
		public /ping
		mode report
		revocation {
		}
	}`)
	d.Next()
	var a Auth
	if err := a.unmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	leeway := caddy.Duration(10 * time.Second)
	want := Auth{
		Phase:        "jwt_rollout",
		APIKeys:      []APIKey{{Secret: "BI_API_KEY", Scopes: []string{"nl-query:read", "schema:read"}}, {Secret: "LEGACY", Scopes: []string{}}},
		APIKeyHeader: "X-Key",
		Deprecated:   "2026-12-01T00:00:00Z",
		Sunset:       "2027-06-30T00:00:00Z",
		JWT: &JWT{
			PublicKeys: []PublicKey{{File: "/k1.pem"}, {File: "/k2.pem", KID: "kid-2"}},
			JWKSFile:   "/jwks.json", JWKSURL: "https://auth.internal/jwks.json",
			Refresh: caddy.Duration(time.Minute), Issuer: "https://auth.internal", Audience: "nl-query-api",
			Algorithms: []string{"ES256", "EdDSA"}, Leeway: &leeway, MaxTTL: caddy.Duration(2 * time.Minute),
		},
		Require: []Requirement{
			{Path: "/nl-query/*", Scopes: []string{"nl-query:read"}},
			{Path: "/me", Scopes: []string{}},
			{Scopes: []string{"schema:read"}},
		},
		Public:     []string{"/healthz", "/metrics", "/ping"},
		Mode:       "report",
		Revocation: &Revocation{},
	}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("got  %+v\nwant %+v", a, want)
	}
}

func TestAuthCaddyfileErrorsCarryTheLine(t *testing.T) {
	for name, in := range map[string]string{
		"unknown option":    "auth {\n\tfoo bar\n}",
		"alg none":          "auth {\n\tjwt {\n\t\talgorithms none\n\t}\n}",
		"alg HS256":         "auth {\n\tjwt {\n\t\talgorithms ES256 HS256\n\t}\n}",
		"bad phase":         "auth {\n\tphase triple\n}",
		"bad deprecated":    "auth {\n\tdeprecated tomorrow\n}",
		"bad mode":          "auth {\n\tmode maybe\n}",
		"unknown jwt opt":   "auth {\n\tjwt {\n\t\tjku https://x\n\t}\n}",
		"api_key no name":   "auth {\n\tapi_key\n}",
		"bad leeway":        "auth {\n\tjwt {\n\t\tleeway soon\n\t}\n}",
		"public no pattern": "auth {\n\tpublic\n}",
	} {
		t.Run(name, func(t *testing.T) {
			d := caddyfile.NewTestDispenser(in)
			d.Next()
			err := new(Auth).unmarshalCaddyfile(d)
			if err == nil || !strings.Contains(err.Error(), "Testfile:") {
				t.Fatalf("want an error with file:line, got %v", err)
			}
		})
	}
}

func TestAuthAdaptsToJSON(t *testing.T) {
	adapter := caddyconfig.GetAdapter("caddyfile")
	out, _, err := adapter.Adapt([]byte(`:8080 {
	sechard {
		auth {
			api_key BI_KEY nl-query:read
			jwt {
				public_key /k.pem main
			}
			require /nl-query/* nl-query:read
			public /healthz
		}
	}
}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"auth":{"api_keys":[{"scopes":["nl-query:read"],"secret":"BI_KEY"}],"jwt":{"public_keys":[{"file":"/k.pem","kid":"main"}]},"public":["/healthz"],"require":[{"path":"/nl-query/*","scopes":["nl-query:read"]}]}`,
	} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("adapted JSON lacks %s:\n%s", want, out)
		}
	}
}

func TestAuthProvisionRejectsBadConfig(t *testing.T) {
	ti := newTestIssuer(t)
	jwtCfg := func() *JWT { return &JWT{PublicKeys: []PublicKey{{File: ti.pemPath("es256")}}} }
	secrets := map[string]string{"A": "key-a", "B": "key-b", "SAME": "key-a"}
	for name, tc := range map[string]struct {
		a    Auth
		want string
	}{
		"rollout without deprecated": {Auth{Phase: "jwt_rollout", JWT: jwtCfg()}, "requires `deprecated`"},
		"sunset before deprecated":   {Auth{Phase: "jwt_rollout", JWT: jwtCfg(), Deprecated: "2027-01-01T00:00:00Z", Sunset: "2026-01-01T00:00:00Z"}, "earlier than deprecated"},
		"HS256 in JSON":              {Auth{JWT: &JWT{PublicKeys: jwtCfg().PublicKeys, Algorithms: []string{"HS256"}}}, "not accepted"},
		"none in JSON":               {Auth{JWT: &JWT{PublicKeys: jwtCfg().PublicKeys, Algorithms: []string{"none"}}}, "not accepted"},
		"no credentials":             {Auth{}, "no usable credentials"},
		"jwt_only without jwt":       {Auth{Phase: "jwt_only", APIKeys: []APIKey{{Secret: "A"}}}, "no usable credentials"},
		"two holders one value":      {Auth{APIKeys: []APIKey{{Secret: "A"}, {Secret: "SAME"}}}, "same value"},
		"key named twice":            {Auth{APIKeys: []APIKey{{Secret: "A"}, {Secret: "A"}}}, "twice"},
		"missing key file":           {Auth{JWT: &JWT{PublicKeys: []PublicKey{{File: "/nonexistent.pem"}}}}, "public_key"},
		"private key as public_key":  {Auth{JWT: &JWT{PublicKeys: []PublicKey{{File: writePrivatePEM(t)}}}}, "private key"},
		"jwt without keys":           {Auth{JWT: &JWT{}}, "no keys configured"},
		"header Authorization":       {Auth{APIKeys: []APIKey{{Secret: "A"}}, APIKeyHeader: "authorization"}, "api_key_header"},
	} {
		t.Run(name, func(t *testing.T) {
			err := tc.a.provision(authTestEnv(t, time.Now, secrets))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestAPIKeySetMatchesEveryKeyByName(t *testing.T) {
	keys := []APIKey{{Secret: "A", Scopes: []string{"x"}}, {Secret: "B"}, {Secret: "C", Scopes: []string{"y", "y"}}}
	s := newAPIKeySet(keys, secrets.Values{"A": secrets.New("alpha"), "B": secrets.New("bravo-longer-key"), "C": secrets.New("c")})
	for in, want := range map[string]string{"alpha": "A", "bravo-longer-key": "B", "c": "C", "": "", "alph": "", "alphaa": ""} {
		id := s.match(in)
		got := ""
		if id != nil {
			got = id.subject
		}
		if got != want {
			t.Errorf("match(%q) = %q, want %q", in, got, want)
		}
	}
	if id := s.match("bravo-longer-key"); !id.full || !id.has("anything") {
		t.Fatal("a key without scopes must be legacy full access")
	}
	if id := s.match("c"); id.joined != "y" {
		t.Fatalf("scopes %q", id.joined)
	}
}

func TestBearerTokenParsing(t *testing.T) {
	for in, want := range map[string]struct {
		tok string
		ok  bool
	}{
		"Bearer abc":  {"abc", true},
		"bearer abc":  {"abc", true},
		"BEARER  abc": {"abc", true},
		"Bearer":      {"", true},
		"Bearerabc":   {"", false},
		"Basic abc":   {"", false},
		"":            {"", false},
	} {
		tok, ok := bearerToken(in)
		if tok != want.tok || ok != want.ok {
			t.Errorf("%q: got %q %v", in, tok, ok)
		}
	}
}

func TestAuthDecideSetsIdentityAndPlaceholders(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Now()
	a := fuzzAuth(t, ti, now)
	ex := newAuthExchange("/x")
	ex.r.Header.Set("Authorization", "Bearer "+ti.sign("es256", jwttest.Claims(now, nil), nil))
	ex.r.Header.Set("X-Auth-Subject", "admin")
	ex.r.Header.Set("X-Api-Key", "the-key")
	if d := a.decide(ex); d.Status != 0 {
		t.Fatalf("refused: %+v", d)
	}
	h := ex.r.Header
	if h.Get("X-Auth-Subject") != "service-bi" || h.Get("X-Auth-Method") != "jwt" || h.Get("X-Auth-Scopes") != "nl-query:read schema:read" {
		t.Fatalf("identity headers %v", h)
	}
	if h.Get("X-Api-Key") != "" {
		t.Fatal("API key left on the request")
	}
	for k, want := range map[string]string{"http.auth.user.id": "service-bi", "http.auth.user.method": "jwt", "http.auth.user.scopes": "nl-query:read schema:read"} {
		if got, _ := ex.repl.GetString(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

// BenchmarkAPIKeyCheck50Keys: the constant-time comparison against 50
// configured keys (SHA-256 of the presented key, then every digest).
func BenchmarkAPIKeyCheck50Keys(b *testing.B) {
	var keys []APIKey
	sv := secrets.Values{}
	for i := range 50 {
		name := fmt.Sprintf("KEY_%d", i)
		keys = append(keys, APIKey{Secret: name, Scopes: []string{"s"}})
		sv[name] = secrets.New(fmt.Sprintf("key-value-%d-0123456789abcdef0123456789abcdef", i))
	}
	s := newAPIKeySet(keys, sv)
	presented := "key-value-25-0123456789abcdef0123456789abcdef"
	b.ReportAllocs()
	for b.Loop() {
		if s.match(presented) == nil {
			b.Fatal("no match")
		}
	}
}

// BenchmarkAuthCachedTokenRequest: a full auth decision for a token seen
// before (cache hit, revocation check, scope rule, identity headers).
func BenchmarkAuthCachedTokenRequest(b *testing.B) {
	ti := newTestIssuer(b)
	now := time.Now()
	a := fuzzAuth(b, ti, now)
	a.Require = nil
	tok := "Bearer " + ti.sign("es256", jwttest.Claims(now, nil), nil)
	ex := newAuthExchange("/x")
	ex.r.Header.Set("Authorization", tok)
	if d := a.decide(ex); d.Status != 0 {
		b.Fatalf("refused: %+v", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := a.decide(ex); d.Status != 0 {
			b.Fatal("refused")
		}
	}
}
