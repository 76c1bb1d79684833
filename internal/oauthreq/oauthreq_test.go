package oauthreq

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func post(body string, hdr ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	return r
}

func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name     string
		r        *http.Request
		code     string // "" for success
		id, sec  string
		method   string
		scopes   string
		noScopes bool
	}{
		{name: "basic", r: post("grant_type=client_credentials&scope=a+b+a", "Authorization", basic("BI KEY", "s3:cr+t")), id: "BI KEY", sec: "s3:cr+t", method: ClientSecretBasic, scopes: "a b"},
		{name: "post", r: post("grant_type=client_credentials&client_id=K&client_secret=v"), id: "K", sec: "v", method: ClientSecretPost, noScopes: true},
		{name: "no secret (tls_client_auth candidate)", r: post("grant_type=client_credentials&client_id=spiffe%3A%2F%2Fx%2Fy"), id: "spiffe://x/y", noScopes: true},
		{name: "GET", r: httptest.NewRequest(http.MethodGet, "/oauth2/token", nil), code: "invalid_request"},
		{name: "JSON body", r: post(`{"grant_type":"client_credentials"}`, "Content-Type", "application/json"), code: "invalid_request"},
		{name: "no grant_type", r: post("client_id=K&client_secret=v"), code: "invalid_request"},
		{name: "password grant", r: post("grant_type=password&username=a&password=b"), code: "unsupported_grant_type"},
		{name: "repeated parameter", r: post("grant_type=client_credentials&scope=a&scope=b"), code: "invalid_request"},
		{name: "both methods", r: post("grant_type=client_credentials&client_secret=v", "Authorization", basic("K", "v")), code: "invalid_request"},
		{name: "bearer at the token endpoint", r: post("grant_type=client_credentials", "Authorization", "Bearer eyJ"), code: "invalid_client"},
		{name: "bad base64", r: post("grant_type=client_credentials", "Authorization", "Basic !!!"), code: "invalid_client"},
		{name: "secret without id", r: post("grant_type=client_credentials&client_secret=v"), code: "invalid_request"},
		{name: "bad scope byte", r: post("grant_type=client_credentials&scope=a%22b"), code: "invalid_scope"},
		{name: "too large", r: post("grant_type=client_credentials&x=" + strings.Repeat("a", MaxBody)), code: "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := Parse(tc.r)
			if tc.code != "" {
				if err == nil || err.Code != tc.code {
					t.Fatalf("got %+v, %v; want %s", req, err, tc.code)
				}
				if tc.code == "invalid_client" && err.Status != 401 || tc.code != "invalid_client" && err.Status < 400 {
					t.Errorf("status %d for %s", err.Status, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if req.ClientID != tc.id || req.ClientSecret != tc.sec || req.AuthMethod != tc.method ||
				strings.Join(req.Scopes, " ") != tc.scopes || (req.Scopes == nil) != tc.noScopes {
				t.Errorf("got %+v", req)
			}
		})
	}
}

func TestParseIgnoresQueryCredentials(t *testing.T) {
	r := post("grant_type=client_credentials")
	r.URL.RawQuery = "client_id=K&client_secret=v"
	req, err := Parse(r)
	if err != nil || req.ClientSecret != "" || req.ClientID != "" {
		t.Fatalf("credentials taken from the query: %+v %v", req, err)
	}
}

// FuzzParse: any body and Authorization value gives a request or an RFC
// 6749 error, never a panic; scopes are distinct and valid.
func FuzzParse(f *testing.F) {
	f.Add("grant_type=client_credentials&scope=a+b", basic("K", "v"))
	f.Add("grant_type=client_credentials&client_id=K&client_secret=v", "")
	f.Add("grant_type=client_credentials&scope=%zz", "Basic Og==")
	f.Fuzz(func(t *testing.T, body, auth string) {
		r := post(body)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		req, err := Parse(r)
		if err != nil {
			if err.Code == "" || err.Status < 400 || len(err.JSON()) == 0 {
				t.Fatalf("bad error %+v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, s := range req.Scopes {
			if s == "" || seen[s] || strings.ContainsAny(s, " \"\\") {
				t.Fatalf("bad scopes %q", req.Scopes)
			}
			seen[s] = true
		}
		if req.ClientSecret != "" && req.ClientID == "" {
			t.Fatalf("secret without client: %+v", req)
		}
	})
}
