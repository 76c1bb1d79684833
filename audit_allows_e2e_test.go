package sechard

import (
	"strings"
	"testing"
	"time"
)

// TestAuditAllowsEndToEnd: with access_log, an allowed request's decision
// rides on Caddy's access-log line and gets no audit entry of its own; with
// off, nothing; a denial always gets its entry.
func TestAuditAllowsEndToEnd(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	for _, mode := range []string{"log", "access_log", "off"} {
		t.Run(mode, func(t *testing.T) {
			s := startCaddy(t, `http://127.0.0.1:{PORT} {
	log {
		output stderr
		format filter {
			request>headers>X-Api-Key delete
		}
	}
	sechard {
		auth {
			api_key BI_KEY nl-query:read
			require /nl-query/* nl-query:read
			audit_allows `+mode+`
		}
	}
	reverse_proxy `+up.Addr+`
}`, caddyOptions{Env: authEnv})
			if resp := s.Get("/nl-query/q", "X-API-Key", biKeyValue); resp.StatusCode != 200 {
				t.Fatalf("allowed request: %d", resp.StatusCode)
			}
			if resp := s.Get("/nl-query/q", "X-API-Key", "wrong"); resp.StatusCode != 401 {
				t.Fatalf("denied request: %d", resp.StatusCode)
			}
			isAccess := func(uri string) func(map[string]any) bool {
				return func(e map[string]any) bool {
					req, _ := e["request"].(map[string]any)
					return e["logger"] == "http.log.access.log0" && req != nil && req["uri"] == uri && e["status"] != nil
				}
			}
			allowLine := s.WaitLog(func(e map[string]any) bool { return isAccess("/nl-query/q")(e) && e["status"] == float64(200) }, 5*time.Second)
			s.WaitLog(func(e map[string]any) bool {
				return e["logger"] == "http.handlers.sechard.audit" && e["decision"] == "deny"
			}, 5*time.Second)
			s.SyncLogs()
			var allowAudits int
			for _, e := range s.LogEntries() {
				if e["logger"] == "http.handlers.sechard.audit" && e["decision"] == "allow" {
					allowAudits++
				}
			}
			if allowLine == nil || allowLine["user_id"] != "BI_KEY" {
				t.Fatalf("access-log line of the allowed request: %v", allowLine)
			}
			switch mode {
			case "log":
				if allowAudits != 1 || allowLine["auth_method"] != nil {
					t.Errorf("log: %d allow audit entries, access line auth_method %v", allowAudits, allowLine["auth_method"])
				}
			case "access_log":
				if allowAudits != 0 || allowLine["auth_method"] != "api_key" || allowLine["auth_key"] != "BI_KEY" || allowLine["auth_scopes"] != "nl-query:read" {
					t.Errorf("access_log: %d allow audit entries, access line %v", allowAudits, allowLine)
				}
			case "off":
				if allowAudits != 0 || allowLine["auth_method"] != nil {
					t.Errorf("off: %d allow audit entries, access line %v", allowAudits, allowLine)
				}
			}
			if strings.Contains(s.Logs(), biKeyValue) {
				t.Error("the key reached a log")
			}
		})
	}
}
