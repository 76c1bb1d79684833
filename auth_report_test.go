package sechard

import (
	"fmt"
	"testing"
)

// In report mode only would-be denials carry "enforced": false, so
// `jq 'select(.enforced == false)'` finds exactly what enforcement would
// refuse; allowed requests' audit entries have no enforced field in either
// mode.
func TestAuthAuditEnforcedOnlyOnDenials(t *testing.T) {
	t.Parallel()
	const key = "report-enforced-key-0123456789"
	up := startUpstream(t)
	block := func(mode string) string {
		return `sechard {
			auth {
				api_key K
				public /` + mode + `/open
				mode ` + mode + `
			}
		}
		reverse_proxy ` + up.Addr
	}
	s := startCaddy(t, `http://127.0.0.1:{PORT} {
	handle /report/* {
		`+block("report")+`
	}
	handle /enforce/* {
		`+block("enforce")+`
	}
}`, caddyOptions{Env: []string{"K=" + key}})
	type req struct {
		path, key string
		deny      bool
	}
	reqs := []req{
		{"/report/x", key, false}, {"/report/x", "wrong", true}, {"/report/x", "", true}, {"/report/open", "", false},
		{"/enforce/x", key, false}, {"/enforce/x", "wrong", true}, {"/enforce/open", "", false},
	}
	for i, r := range reqs {
		h := []string{"X-Request-ID", fmt.Sprintf("enf-%d", i)}
		if r.key != "" {
			h = append(h, "X-API-Key", r.key)
		}
		s.Get(r.path, h...)
	}
	s.SyncLogs()
	seen := map[string]bool{}
	for _, e := range s.LogEntries() {
		if e["logger"] == "http.handlers.sechard.audit" {
			seen[fmt.Sprint(e["request_id"])] = true
		}
	}
	for _, e := range s.LogEntries() {
		if e["logger"] != "http.handlers.sechard.audit" {
			continue
		}
		var i int
		if _, err := fmt.Sscanf(fmt.Sprint(e["request_id"]), "enf-%d", &i); err != nil {
			continue
		}
		r := reqs[i]
		enforced, has := e["enforced"]
		switch {
		case !r.deny && has:
			t.Errorf("%s (allowed): audit entry has enforced=%v, want no field", r.path, enforced)
		case r.deny && r.path[:7] == "/report" && enforced != false:
			t.Errorf("%s (would-be denial): enforced=%v, want false", r.path, enforced)
		case r.deny && r.path[:7] != "/report" && enforced != true:
			t.Errorf("%s (denial): enforced=%v, want true", r.path, enforced)
		}
	}
	if len(seen) < len(reqs) {
		t.Fatalf("audit entries for %d of %d requests; logs:\n%s", len(seen), len(reqs), s.Logs())
	}
}
