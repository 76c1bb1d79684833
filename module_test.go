package sechard

import "testing"

// TestBareSechardServesThroughRealCaddy proves the skeleton: a bare
// `sechard` in front of reverse_proxy, in the real binary.
func TestBareSechardServesThroughRealCaddy(t *testing.T) {
	up := startUpstream(t)
	s := startCaddy(t, `http://127.0.0.1:{PORT} {
	sechard
	reverse_proxy `+up.Addr+`
}`)
	resp := s.Get("/")
	if resp.StatusCode != 200 || readBody(resp) != "upstream ok" {
		t.Fatalf("got %d %q", resp.StatusCode, readBody(resp))
	}
	if resp.Header.Get("X-Request-ID") == "" {
		t.Fatal("no X-Request-ID on the response")
	}
}
