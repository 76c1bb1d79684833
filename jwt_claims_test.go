package sechard

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sechard/sechard/internal/jwttest"
)

func TestAuthClaimFormsEndToEnd(t *testing.T) {
	ti := newTestIssuer(t)
	s := startCaddy(t, `http://127.0.0.1:{PORT} {
	sechard {
		auth {
			`+ti.jwtBlock("")+`
		}
	}
	respond "ok"
}`)
	now := time.Now()
	for name, over := range map[string]map[string]any{
		"exp as a string": {"exp": strconv.FormatInt(now.Add(time.Minute).Unix(), 10)},
		"iat as a string": {"iat": strconv.FormatInt(now.Unix(), 10)},
		"sub and SUB":     {"SUB": "admin"},
	} {
		resp := s.Get("/", "Authorization", "Bearer "+ti.sign("es256", jwttest.Claims(now, over), nil))
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s: %d %s", name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if resp := s.Get("/", "Authorization", "Bearer "+ti.sign("es256", jwttest.Claims(now, nil), nil)); resp.StatusCode != 200 {
		t.Fatalf("valid token: %d", resp.StatusCode)
	}
}
