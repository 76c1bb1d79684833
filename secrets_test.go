package sechard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// secretTestEnv returns a provisionEnv whose logs the test can read.
func secretTestEnv(t *testing.T) (*provisionEnv, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	return &provisionEnv{logger: zap.New(core), now: time.Now}, logs
}

func TestSecretsCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		input   string
		want    Secrets
		wantErr string // substring; includes file:line
	}{
		{
			name: "require and dir are repeatable",
			input: `sechard {
	secrets {
		require API_KEY DB_PASSWORD
		require _private x9
		dir /run/secrets
		dir /etc/sechard/secrets
	}
}`,
			want: Secrets{Require: []string{"API_KEY", "DB_PASSWORD", "_private", "x9"}, Dirs: []string{"/run/secrets", "/etc/sechard/secrets"}},
		},
		{name: "empty block", input: "sechard {\n\tsecrets\n}", want: Secrets{}},
		{name: "slash in name", input: "sechard {\n\tsecrets {\n\t\trequire API_KEY a/b\n\t}\n}", wantErr: `invalid secret name "a/b"`},
		{name: "dot dot name", input: "sechard {\n\tsecrets {\n\t\trequire ..\n\t}\n}", wantErr: `invalid secret name ".."`},
		{name: "path traversal name", input: "sechard {\n\tsecrets {\n\t\trequire ../../etc/shadow\n\t}\n}", wantErr: `invalid secret name "../../etc/shadow"`},
		{name: "leading digit", input: "sechard {\n\tsecrets {\n\t\trequire 1KEY\n\t}\n}", wantErr: `invalid secret name "1KEY"`},
		{name: "dash", input: "sechard {\n\tsecrets {\n\t\trequire API-KEY\n\t}\n}", wantErr: `invalid secret name "API-KEY"`},
		{name: "require without names", input: "sechard {\n\tsecrets {\n\t\trequire\n\t}\n}", wantErr: "Testfile:3"},
		{name: "dir without path", input: "sechard {\n\tsecrets {\n\t\tdir\n\t}\n}", wantErr: "Testfile:3"},
		{name: "dir with two paths", input: "sechard {\n\tsecrets {\n\t\tdir /a /b\n\t}\n}", wantErr: "Testfile:3"},
		{name: "unknown option", input: "sechard {\n\tsecrets {\n\t\tvalue hunter2\n\t}\n}", wantErr: `unrecognized secrets option "value", at Testfile:3`},
		{name: "arguments on the secrets line", input: "sechard {\n\tsecrets API_KEY\n}", wantErr: "Testfile:2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), "Testfile:") {
					t.Fatalf("error %v does not name the file and line", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Secrets == nil {
				t.Fatal("no secrets block parsed")
			}
			got, _ := json.Marshal(h.Secrets)
			want, _ := json.Marshal(tc.want)
			if !bytes.Equal(got, want) {
				t.Fatalf("parsed %s, want %s", got, want)
			}
		})
	}
}

// TestSecretsInvalidNameInJSONConfig: a JSON config bypasses the Caddyfile
// parser, so resolve checks names too.
func TestSecretsInvalidNameInJSONConfig(t *testing.T) {
	env, _ := secretTestEnv(t)
	_, err := (&Secrets{Require: []string{"../etc/passwd"}, Dirs: []string{t.TempDir()}}).resolve(env, nil)
	if err == nil || !strings.Contains(err.Error(), `invalid secret name "../etc/passwd"`) {
		t.Fatalf("got %v", err)
	}
}

// unsetSecretEnv returns environment entries that unset NAME and NAME_FILE
// for each name (an empty value counts as unset), and systemd's
// CREDENTIALS_DIRECTORY, so a developer's environment cannot leak in.
func unsetSecretEnv(names ...string) []string {
	env := []string{"CREDENTIALS_DIRECTORY="}
	for _, n := range names {
		env = append(env, n+"=", n+"_FILE=")
	}
	return env
}

func secretsSite(dir, require, body string) string {
	return fmt.Sprintf(`http://127.0.0.1:{PORT} {
	sechard {
		secrets {
			require %s
			dir %s
		}
	}
	respond %q
}`, require, dir, body)
}

func TestSecretsMissingSecretStopsCaddyRun(t *testing.T) {
	s := startCaddy(t, secretsSite(t.TempDir(), "DB_PASSWORD API_KEY", "up"), caddyOptions{
		ExpectFail: true,
		Env:        unsetSecretEnv("API_KEY", "DB_PASSWORD"),
	})
	code, exited := s.ExitCode()
	if !exited || code == 0 {
		t.Fatalf("caddy run: exited=%v code=%d, want a non-zero exit", exited, code)
	}
	if !strings.Contains(s.Logs(), "missing required secret: API_KEY, DB_PASSWORD") {
		t.Fatalf("logs do not name every missing secret:\n%s", s.Logs())
	}
}

func TestSecretsMissingSecretFailsValidate(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "Caddyfile")
	site := strings.ReplaceAll(secretsSite(dir, "API_KEY DB_PASSWORD", "up"), "{PORT}", "8080")
	if err := os.WriteFile(cfg, []byte("{\n\tadmin off\n}\n"+site), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCaddy(t, unsetSecretEnv("API_KEY", "DB_PASSWORD"), "validate", "--config", cfg, "--adapter", "caddyfile")
	if err == nil || !strings.Contains(out, "missing required secret: API_KEY, DB_PASSWORD") {
		t.Fatalf("validate: err=%v\n%s", err, out)
	}
	// The same config validates once the secrets are there (env and file).
	writeTestFile(t, filepath.Join(dir, "DB_PASSWORD"), "pw\n")
	env := append(unsetSecretEnv("API_KEY", "DB_PASSWORD"), "API_KEY=k")
	if out, err := runCaddy(t, env, "validate", "--config", cfg, "--adapter", "caddyfile"); err != nil || !strings.Contains(out, "Valid configuration") {
		t.Fatalf("validate with secrets present: err=%v\n%s", err, out)
	}
}

func TestSecretsReloadRefusedWhileOldConfigServes(t *testing.T) {
	dir := t.TempDir()
	s := startCaddy(t, secretsSite(dir, "SECHARD_E2E_OLD", "old config"), caddyOptions{
		Env: append(unsetSecretEnv("SECHARD_E2E_OLD", "SECHARD_E2E_NEW", "SECHARD_E2E_NEW2"), "SECHARD_E2E_OLD=present"),
	})
	err := s.Reload(secretsSite(dir, "SECHARD_E2E_OLD SECHARD_E2E_NEW2 SECHARD_E2E_NEW", "new config"))
	if err == nil || !strings.Contains(err.Error(), "missing required secret: SECHARD_E2E_NEW, SECHARD_E2E_NEW2") {
		t.Fatalf("reload: %v, want it refused naming every missing secret", err)
	}
	if _, exited := s.ExitCode(); exited {
		t.Fatal("caddy exited after a refused reload")
	}
	resp := s.Get("/")
	if resp.StatusCode != 200 || readBody(resp) != "old config" {
		t.Fatalf("after refused reload: %d %q, want the old config answering", resp.StatusCode, readBody(resp))
	}
}

// TestSecretsReloadRereadsRotatedFile follows the documented rotation
// procedure through the real CLI: replace the file, `caddy reload --force`,
// and the audit log says changed: true.
func TestSecretsReloadRereadsRotatedFile(t *testing.T) {
	const name = "SECHARD_E2E_ROTATED"
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, name), "version-1\n")
	site := secretsSite(dir, name, "up")
	s := startCaddy(t, site, caddyOptions{Env: unsetSecretEnv(name)})
	audit := func(changed bool, n int) {
		t.Helper()
		var lines []map[string]any
		s.WaitLog(func(e map[string]any) bool {
			lines = lines[:0]
			for _, e := range s.LogEntries() {
				if e["logger"] == "http.handlers.sechard.secrets" && e["msg"] == "secret loaded" && e["name"] == name {
					lines = append(lines, e)
				}
			}
			return len(lines) >= n
		}, 10*time.Second)
		last := lines[n-1]
		if last["level"] != "info" || last["source"] != "file" || last["path"] != filepath.Join(dir, name) || last["changed"] != changed {
			t.Fatalf("audit line %d: %v, want info, file, changed=%v", n, last, changed)
		}
	}
	audit(false, 1)

	cfg := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(cfg, []byte(s.caddyfile(site)), 0o600); err != nil {
		t.Fatal(err)
	}
	reload := func() {
		t.Helper()
		if out, err := runCaddy(t, nil, "reload", "--config", cfg, "--adapter", "caddyfile", "--address", s.AdminAddr, "--force"); err != nil {
			t.Fatalf("caddy reload: %v\n%s", err, out)
		}
	}
	writeTestFile(t, filepath.Join(dir, name), "version-2\n")
	reload()
	audit(true, 2)
	reload()
	audit(false, 3)
}

// TestSecretsValuesNeverLeak runs Caddy at DEBUG with known secret values
// from every source and looks for them in the process's logs, in the errors
// of a refused reload, in `caddy adapt` output and in the admin API's config.
func TestSecretsValuesNeverLeak(t *testing.T) {
	const (
		envVal     = "canary-ENV-5c1e0a7b"
		envFileVal = "canary-ENVFILE-93d2f4e6"
		fileVal    = "canary-FILE-0b8a61c2"
	)
	names := []string{"SECHARD_E2E_ENV", "SECHARD_E2E_ENVFILE", "SECHARD_E2E_FILE"}
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "SECHARD_E2E_FILE"), fileVal+"\n", 0o644) // also warns
	envFile := writeTestFile(t, filepath.Join(t.TempDir(), "envfile"), envFileVal)
	env := append(unsetSecretEnv(names...), "SECHARD_E2E_ENV="+envVal, "SECHARD_E2E_ENVFILE_FILE="+envFile)
	site := secretsSite(dir, strings.Join(names, " "), "up")

	s := startCaddy(t, site, caddyOptions{Env: env})
	s.WaitLog(func(e map[string]any) bool { return e["name"] == "SECHARD_E2E_FILE" && e["msg"] == "secret loaded" }, 10*time.Second)
	if resp := s.Get("/"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var evidence []string

	// The admin API's view of the config names the secrets, nothing more.
	resp, err := http.Get("http://" + s.AdminAddr + "/config/")
	if err != nil {
		t.Fatal(err)
	}
	cfgJSON := readBody(resp)
	resp.Body.Close()
	if !strings.Contains(cfgJSON, `"require":["SECHARD_E2E_ENV","SECHARD_E2E_ENVFILE","SECHARD_E2E_FILE"]`) {
		t.Fatalf("admin /config/ does not show the secrets block: %s", cfgJSON)
	}
	evidence = append(evidence, cfgJSON)

	// A refused reload (one more secret missing) and a rotation.
	err = s.Reload(secretsSite(dir, strings.Join(names, " ")+" SECHARD_E2E_ABSENT", "up"))
	if err == nil {
		t.Fatal("reload with a missing secret was accepted")
	}
	evidence = append(evidence, err.Error())
	writeTestFile(t, filepath.Join(dir, "SECHARD_E2E_FILE"), fileVal+"-rotated", 0o600)
	if err := s.Reload(strings.Replace(site, `"up"`, `"up2"`, 1)); err != nil {
		t.Fatal(err)
	}
	s.WaitLog(func(e map[string]any) bool { return e["name"] == "SECHARD_E2E_FILE" && e["changed"] == true }, 10*time.Second)

	// caddy adapt of the same Caddyfile, with the same environment.
	cfg := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(cfg, []byte(s.caddyfile(site)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCaddy(t, env, "adapt", "--config", cfg, "--adapter", "caddyfile")
	if err != nil || !strings.Contains(out, "SECHARD_E2E_ENVFILE") {
		t.Fatalf("adapt: %v\n%s", err, out)
	}
	evidence = append(evidence, out)

	s.Stop()
	logs := s.Logs()
	if !strings.Contains(logs, `"level":"debug"`) || !strings.Contains(logs, "readable by other users") {
		t.Fatalf("expected DEBUG logging and the permission warning; logs:\n%s", logs)
	}
	evidence = append(evidence, logs)
	for _, text := range evidence {
		for _, v := range []string{envVal, envFileVal, fileVal} {
			if strings.Contains(text, v) {
				t.Fatalf("secret value %q leaked into:\n%s", v, text)
			}
		}
	}
}

// TestSecretsEnvPlaceholderBakesValueIntoConfig pins the trap the README
// warns about: `{$NAME}` is substituted when the Caddyfile is parsed, so the
// value ends up in the JSON config (`caddy adapt`, admin API, autosave).
func TestSecretsEnvPlaceholderBakesValueIntoConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(cfg, []byte("http://127.0.0.1:8080 {\n\trespond \"{$SECHARD_E2E_BAKED}\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCaddy(t, []string{"SECHARD_E2E_BAKED=baked-canary-77"}, "adapt", "--config", cfg, "--adapter", "caddyfile")
	if err != nil || !strings.Contains(out, "baked-canary-77") {
		t.Fatalf("adapt: %v\n%s", err, out)
	}
}
