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

// writeSecretFile writes a secret file with the given mode (0600 unless told).
func writeSecretFile(t *testing.T, path, content string, mode ...os.FileMode) string {
	t.Helper()
	m := os.FileMode(0o600)
	if len(mode) > 0 {
		m = mode[0]
	}
	if err := os.WriteFile(path, []byte(content), m); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, m); err != nil { // WriteFile's mode is subject to umask
		t.Fatal(err)
	}
	return path
}

// secretLog returns the "secret loaded" entry for name (fails if not exactly one).
func secretLog(t *testing.T, logs *observer.ObservedLogs, name string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, e := range logs.FilterMessage("secret loaded").All() {
		if f := e.ContextMap(); f["name"] == name {
			if e.Level != zapcore.InfoLevel || e.LoggerName != "secrets" {
				t.Errorf("audit line at %v on logger %q, want info on secrets", e.Level, e.LoggerName)
			}
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one audit line for %s, got %d: %v", name, len(found), found)
	}
	return found[0]
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

func TestSecretsResolutionOrder(t *testing.T) {
	const name = "SECHARD_T_ORDER"
	for _, tc := range []struct {
		name       string
		envValue   string // NAME
		envFile    string // content of the file NAME_FILE points at ("" = NAME_FILE unset)
		dir1, dir2 string // content of <dir1>/NAME, <dir2>/NAME ("" = no file)
		want       string
		wantSource string
		wantDir    int // 1 or 2 for source file
		wantErr    string
	}{
		{name: "env wins over files", envValue: "from-env", dir1: "from-dir", want: "from-env", wantSource: "env"},
		{name: "NAME_FILE wins over dir", envFile: "from-env-file\n", dir1: "from-dir", want: "from-env-file", wantSource: "env_file"},
		{name: "first dir that has it", dir2: "from-dir2\n", want: "from-dir2", wantSource: "file", wantDir: 2},
		{name: "first dir wins over second", dir1: "one", dir2: "two", want: "one", wantSource: "file", wantDir: 1},
		{name: "both NAME and NAME_FILE is ambiguous", envValue: "a", envFile: "b", wantErr: "secret SECHARD_T_ORDER: both SECHARD_T_ORDER and SECHARD_T_ORDER_FILE are set; set only one"},
		{name: "trailing whitespace trimmed, leading kept", dir1: "  s3cr3t \t\r\n\n", want: "  s3cr3t", wantSource: "file", wantDir: 1},
		{name: "env trailing whitespace trimmed", envValue: "v\n", want: "v", wantSource: "env"},
		{name: "whitespace-only NAME counts as unset", envValue: " \t", envFile: "filed", want: "filed", wantSource: "env_file"},
		{name: "whitespace-only file is missing", dir1: " \n\t\n", wantErr: "missing required secret: SECHARD_T_ORDER"},
		{name: "whitespace-only NAME_FILE file is missing, no fallback to dir", envFile: "\n", dir1: "from-dir", wantErr: "missing required secret: SECHARD_T_ORDER"},
		{name: "nothing anywhere", wantErr: "missing required secret: SECHARD_T_ORDER"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d1, d2, other := t.TempDir(), t.TempDir(), t.TempDir()
			t.Setenv(name, tc.envValue)
			t.Setenv(name+"_FILE", "")
			if tc.envFile != "" {
				t.Setenv(name+"_FILE", writeSecretFile(t, filepath.Join(other, "f"), tc.envFile))
			}
			if tc.dir1 != "" {
				writeSecretFile(t, filepath.Join(d1, name), tc.dir1)
			}
			if tc.dir2 != "" {
				writeSecretFile(t, filepath.Join(d2, name), tc.dir2)
			}
			env, logs := secretTestEnv(t)
			vals, err := (&Secrets{Require: []string{name}, Dirs: []string{d1, d2}}).resolve(env, nil)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := vals[name].Value(); got != tc.want {
				t.Fatalf("value %q, want %q", got, tc.want)
			}
			line := secretLog(t, logs, name)
			if line["source"] != tc.wantSource {
				t.Fatalf("source %v, want %s", line["source"], tc.wantSource)
			}
			switch tc.wantSource {
			case "env":
				if _, ok := line["path"]; ok {
					t.Fatalf("env source logged a path: %v", line)
				}
			case "env_file":
				if line["path"] != filepath.Join(other, "f") {
					t.Fatalf("path %v", line["path"])
				}
			case "file":
				if want := filepath.Join([]string{d1, d2}[tc.wantDir-1], name); line["path"] != want {
					t.Fatalf("path %v, want %s", line["path"], want)
				}
			}
		})
	}
}

func TestSecretsDefaultDirs(t *testing.T) {
	t.Run("CREDENTIALS_DIRECTORY then /run/secrets", func(t *testing.T) {
		t.Setenv("CREDENTIALS_DIRECTORY", "/run/credentials/caddy.service")
		dirs, err := secretDirs(nil, zap.NewNop())
		if err != nil || strings.Join(dirs, ",") != "/run/credentials/caddy.service,/run/secrets" {
			t.Fatalf("dirs %v, %v", dirs, err)
		}
	})
	t.Run("only /run/secrets without systemd", func(t *testing.T) {
		t.Setenv("CREDENTIALS_DIRECTORY", "")
		dirs, err := secretDirs(nil, zap.NewNop())
		if err != nil || strings.Join(dirs, ",") != "/run/secrets" {
			t.Fatalf("dirs %v, %v", dirs, err)
		}
	})
	t.Run("configured dirs replace the defaults", func(t *testing.T) {
		t.Setenv("CREDENTIALS_DIRECTORY", "/run/credentials/caddy.service")
		d := t.TempDir()
		dirs, err := secretDirs([]string{d}, zap.NewNop())
		if err != nil || strings.Join(dirs, ",") != d {
			t.Fatalf("dirs %v, %v", dirs, err)
		}
	})
	t.Run("systemd credential found with no secrets block", func(t *testing.T) {
		const name = "SECHARD_T_SYSTEMD"
		cd := t.TempDir()
		t.Setenv("CREDENTIALS_DIRECTORY", cd)
		t.Setenv(name, "")
		t.Setenv(name+"_FILE", "")
		writeSecretFile(t, filepath.Join(cd, name), "cred\n", 0o400)
		env, logs := secretTestEnv(t)
		var s *Secrets // nil: no secrets block; auth's names still resolve
		vals, err := s.resolve(env, []string{name})
		if err != nil || vals[name].Value() != "cred" {
			t.Fatalf("got %v, %v", vals, err)
		}
		if line := secretLog(t, logs, name); line["source"] != "file" || line["path"] != filepath.Join(cd, name) {
			t.Fatalf("audit %v", line)
		}
	})
	t.Run("configured dir that does not exist warns", func(t *testing.T) {
		core, logs := observer.New(zapcore.WarnLevel)
		gone := filepath.Join(t.TempDir(), "gone")
		if _, err := secretDirs([]string{gone}, zap.New(core)); err != nil {
			t.Fatal(err)
		}
		if logs.FilterMessage("secret dir does not exist").Len() != 1 {
			t.Fatalf("no warning: %v", logs.All())
		}
	})
	t.Run("configured dir that is a file is an error", func(t *testing.T) {
		f := writeSecretFile(t, filepath.Join(t.TempDir(), "file"), "x")
		if _, err := secretDirs([]string{f}, zap.NewNop()); err == nil || !strings.Contains(err.Error(), f+" is not a directory") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestSecretsMissingListsEveryNameAtOnce(t *testing.T) {
	for _, n := range []string{"SECHARD_T_DB_PASSWORD", "SECHARD_T_API_KEY", "SECHARD_T_PRESENT", "SECHARD_T_FROM_AUTH"} {
		t.Setenv(n, "")
		t.Setenv(n+"_FILE", "")
	}
	t.Setenv("SECHARD_T_PRESENT", "here")
	env, _ := secretTestEnv(t)
	s := &Secrets{Require: []string{"SECHARD_T_DB_PASSWORD", "SECHARD_T_PRESENT", "SECHARD_T_API_KEY"}, Dirs: []string{t.TempDir()}}
	_, err := s.resolve(env, []string{"SECHARD_T_FROM_AUTH", "SECHARD_T_API_KEY"})
	const want = "missing required secret: SECHARD_T_API_KEY, SECHARD_T_DB_PASSWORD, SECHARD_T_FROM_AUTH"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
}

func TestSecretsMissingAndBrokenReportedTogether(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"SECHARD_T_A", "SECHARD_T_B"} {
		t.Setenv(n, "")
		t.Setenv(n+"_FILE", "")
	}
	if err := os.Mkdir(filepath.Join(dir, "SECHARD_T_B"), 0o700); err != nil {
		t.Fatal(err)
	}
	env, _ := secretTestEnv(t)
	_, err := (&Secrets{Require: []string{"SECHARD_T_B", "SECHARD_T_A"}, Dirs: []string{dir}}).resolve(env, nil)
	want := "missing required secret: SECHARD_T_A; secret SECHARD_T_B: " + filepath.Join(dir, "SECHARD_T_B") + " is a directory, not a file"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v\nwant  %s", err, want)
	}
}

func TestSecretsBadFilesFailClearly(t *testing.T) {
	const name = "SECHARD_T_BAD"
	t.Setenv(name, "")
	const content = "SECRET-CONTENT-MUST-NOT-APPEAR"
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, path string) // creates <dir>/NAME
		wantErr string                          // after "<path>"
		skip    func() string
	}{
		{name: "directory", setup: func(t *testing.T, p string) { os.Mkdir(p, 0o700) }, wantErr: " is a directory, not a file"},
		{name: "100 MB file", setup: func(t *testing.T, p string) {
			writeSecretFile(t, p, content)
			if err := os.Truncate(p, 100<<20); err != nil { // sparse: cheap to create
				t.Fatal(err)
			}
		}, wantErr: " is larger than 1048576 bytes; a secret file holds one value"},
		{name: "one byte over the bound", setup: func(t *testing.T, p string) {
			writeSecretFile(t, p, strings.Repeat("a", maxSecretSize+1))
		}, wantErr: " is larger than 1048576 bytes"},
		{name: "symlink loop", setup: func(t *testing.T, p string) {
			os.Symlink(p+".b", p)
			os.Symlink(p, p+".b")
		}, wantErr: ": too many levels of symbolic links"},
		{name: "dangling symlink", setup: func(t *testing.T, p string) {
			os.Symlink(p+".gone", p)
		}, wantErr: " is a symlink to a file that does not exist"},
		{name: "FIFO (open would block)", setup: func(t *testing.T, p string) {
			if err := mkfifo(p); err != nil {
				t.Skip("mkfifo:", err)
			}
		}, wantErr: " is not a regular file (p---------)"},
		{name: "unreadable file", setup: func(t *testing.T, p string) {
			writeSecretFile(t, p, content, 0o000)
		}, wantErr: ": permission denied", skip: func() string {
			if os.Geteuid() == 0 {
				return "root reads mode 0000 files; the FIFO and directory cases cover unreadable paths"
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip != nil {
				if why := tc.skip(); why != "" {
					t.Skip(why)
				}
			}
			for _, via := range []string{"dir", "NAME_FILE"} {
				dir := t.TempDir()
				p := filepath.Join(dir, name)
				tc.setup(t, p)
				t.Setenv(name+"_FILE", "")
				dirs := []string{dir}
				if via == "NAME_FILE" {
					t.Setenv(name+"_FILE", p)
					dirs = []string{t.TempDir()}
				}
				env, logs := secretTestEnv(t)
				done := make(chan error, 1)
				go func() {
					_, err := (&Secrets{Require: []string{name}, Dirs: dirs}).resolve(env, nil)
					done <- err
				}()
				var err error
				select {
				case err = <-done:
				case <-time.After(5 * time.Second):
					t.Fatalf("%s: resolve hangs", via)
				}
				if err == nil || !strings.Contains(err.Error(), p+tc.wantErr) {
					t.Fatalf("%s: error %v, want one containing %q", via, err, p+tc.wantErr)
				}
				if via == "NAME_FILE" && !strings.Contains(err.Error(), name+"_FILE: ") {
					t.Fatalf("error %v does not name %s_FILE", err, name)
				}
				if strings.Contains(err.Error(), content) {
					t.Fatal("error holds the file's content")
				}
				for _, e := range logs.All() {
					if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), content) {
						t.Fatal("log holds the file's content")
					}
				}
			}
		})
	}
}

func TestSecretsExactlyOneMiBIsAccepted(t *testing.T) {
	const name = "SECHARD_T_MIB"
	t.Setenv(name, "")
	t.Setenv(name+"_FILE", "")
	dir := t.TempDir()
	writeSecretFile(t, filepath.Join(dir, name), strings.Repeat("k", maxSecretSize))
	env, _ := secretTestEnv(t)
	vals, err := (&Secrets{Require: []string{name}, Dirs: []string{dir}}).resolve(env, nil)
	if err != nil || len(vals[name].Value()) != maxSecretSize {
		t.Fatalf("got %d bytes, %v", len(vals[name].Value()), err)
	}
}

func TestSecretsWarnWhenReadableByOthers(t *testing.T) {
	const name = "SECHARD_T_PERM"
	t.Setenv(name, "")
	t.Setenv(name+"_FILE", "")
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{
		{0o644, true}, // Kubernetes Secret volume default
		{0o640, true},
		{0o604, true},
		{0o600, false},
		{0o400, false},
		{0o700, false},
	} {
		t.Run(fmt.Sprintf("%#o", tc.mode), func(t *testing.T) {
			dir := t.TempDir()
			p := writeSecretFile(t, filepath.Join(dir, name), "v", tc.mode)
			env, logs := secretTestEnv(t)
			if _, err := (&Secrets{Require: []string{name}, Dirs: []string{dir}}).resolve(env, nil); err != nil {
				t.Fatal(err) // a warning, never a failure
			}
			warns := logs.FilterLevelExact(zapcore.WarnLevel).All()
			if !tc.warn {
				if len(warns) != 0 {
					t.Fatalf("unexpected warning %v", warns)
				}
				return
			}
			if len(warns) != 1 {
				t.Fatalf("want one warning, got %v", warns)
			}
			f := warns[0].ContextMap()
			if !strings.Contains(warns[0].Message, "readable by other users") || f["name"] != name || f["path"] != p || f["mode"] != fmt.Sprintf("%#o", tc.mode) {
				t.Fatalf("warning %q %v", warns[0].Message, f)
			}
		})
	}
}

func TestSecretsAuditTracksRotation(t *testing.T) {
	const name = "SECHARD_T_ROTATE"
	forgetSecretHistory(name) // the history is per process; -count=N runs this test again
	t.Setenv(name, "")
	t.Setenv(name+"_FILE", "")
	dir := t.TempDir()
	p := filepath.Join(dir, name)
	s := &Secrets{Require: []string{name, "SECHARD_T_ROTATE_GATE"}, Dirs: []string{dir}}
	t.Setenv("SECHARD_T_ROTATE_GATE", "gate")
	load := func() (map[string]any, error) {
		t.Helper()
		env, logs := secretTestEnv(t)
		_, err := s.resolve(env, nil)
		return secretLog(t, logs, name), err
	}
	check := func(step string, line map[string]any, err error, wantErr bool, changed, first bool) {
		t.Helper()
		if (err != nil) != wantErr {
			t.Fatalf("%s: error %v", step, err)
		}
		if line["changed"] != changed || line["first_load"] != first || line["source"] != "file" || line["path"] != p {
			t.Fatalf("%s: audit %v, want changed=%v first_load=%v", step, line, changed, first)
		}
		for k := range line {
			if k != "name" && k != "source" && k != "path" && k != "changed" && k != "first_load" {
				t.Fatalf("%s: unexpected audit field %q", step, k)
			}
		}
	}
	writeSecretFile(t, p, "v1\n")
	line, err := load()
	check("first load", line, err, false, false, true)
	line, err = load()
	check("same value", line, err, false, false, false)
	writeSecretFile(t, p, "v2\n")
	line, err = load()
	check("rotated", line, err, false, true, false)
	writeSecretFile(t, p, "v2") // only the trailing newline differs: same secret
	line, err = load()
	check("same after trim", line, err, false, false, false)

	// A refused load does not become the baseline: the next successful load
	// still reports the rotation.
	writeSecretFile(t, p, "v3")
	t.Setenv("SECHARD_T_ROTATE_GATE", "")
	line, err = load()
	check("rotated, load refused", line, err, true, true, false)
	t.Setenv("SECHARD_T_ROTATE_GATE", "gate")
	line, err = load()
	check("rotated, load accepted", line, err, false, true, false)
	line, err = load()
	check("settled", line, err, false, false, false)
}

// TestSecretsKubernetesSymlinkSwap: Kubernetes updates a Secret volume by
// pointing the `..data` symlink at a new timestamped directory; each load
// reads through the path, so a reload sees the new value.
func TestSecretsKubernetesSymlinkSwap(t *testing.T) {
	const name = "SECHARD_T_K8S"
	t.Setenv(name, "")
	t.Setenv(name+"_FILE", "")
	vol := t.TempDir()
	version := func(ts, value string) string {
		d := filepath.Join(vol, ts)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		writeSecretFile(t, filepath.Join(d, name), value, 0o644)
		return ts
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(version("..2026_11_26_20_00_00.1", "first"), filepath.Join(vol, "..data")))
	must(os.Symlink(filepath.Join("..data", name), filepath.Join(vol, name)))

	s := &Secrets{Require: []string{name}, Dirs: []string{vol}}
	env, logs := secretTestEnv(t)
	vals, err := s.resolve(env, nil)
	if err != nil || vals[name].Value() != "first" {
		t.Fatalf("got %v %v", vals[name].Value(), err)
	}
	if logs.FilterMessageSnippet("readable by other users").Len() != 1 {
		t.Fatal("0644 (the Kubernetes default) should warn")
	}

	// The kubelet's atomic swap: new symlink, renamed over ..data.
	must(os.Symlink(version("..2026_11_26_21_00_00.2", "second"), filepath.Join(vol, "..data_tmp")))
	must(os.Rename(filepath.Join(vol, "..data_tmp"), filepath.Join(vol, "..data")))
	env, logs = secretTestEnv(t)
	vals, err = s.resolve(env, nil)
	if err != nil || vals[name].Value() != "second" {
		t.Fatalf("got %v %v", vals[name].Value(), err)
	}
	if line := secretLog(t, logs, name); line["changed"] != true {
		t.Fatalf("swap not reported as a change: %v", line)
	}
}

func TestSecretNeverPrintsItsValue(t *testing.T) {
	const v = "hunter2-very-secret"
	s := newSecret(v)
	vals := secretValues{"API_KEY": s}
	type holder struct {
		Exported Secret
		hidden   Secret
		vals     secretValues
		Ptr      *Secret
	}
	h := holder{Exported: s, hidden: s, vals: vals, Ptr: &s}

	var forms []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s"} {
		forms = append(forms, fmt.Sprintf(verb, s), fmt.Sprintf(verb, &s), fmt.Sprintf(verb, vals), fmt.Sprintf(verb, h), fmt.Sprintf(verb, &h))
	}
	forms = append(forms, s.String(), s.GoString(), fmt.Sprint(s), fmt.Sprintln(s, vals), fmt.Errorf("wrapped %v", s).Error())
	for _, x := range []any{s, &s, vals, h, []Secret{s}} {
		b, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		forms = append(forms, string(b))
	}
	txt, _ := s.MarshalText()
	forms = append(forms, string(txt))

	var buf bytes.Buffer
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	logger := zap.New(zapcore.NewCore(enc, zapcore.AddSync(&buf), zapcore.DebugLevel))
	logger.Debug("fields", zap.Any("any", s), zap.Any("anyptr", &s), zap.Stringer("stringer", s),
		zap.Reflect("reflect", s), s.Field("field"), zap.Any("map", vals), zap.Any("holder", h), zap.Reflect("holder_reflect", h))
	console := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	zap.New(zapcore.NewCore(console, zapcore.AddSync(&buf), zapcore.DebugLevel)).Debug("console", zap.Any("s", s), zap.Any("map", vals))
	forms = append(forms, buf.String())

	for _, f := range forms {
		if strings.Contains(f, v) || strings.Contains(f, fmt.Sprintf("%x", v)) || strings.Contains(f, fmt.Sprintf("%X", v)) {
			t.Fatalf("value leaked: %s", f)
		}
	}
	for _, f := range []string{fmt.Sprintf("%v", s), fmt.Sprintf("%#v", s), fmt.Sprintf("%q", s), s.String()} {
		if f != "[REDACTED]" {
			t.Fatalf("got %q, want [REDACTED]", f)
		}
	}
	if b, _ := json.Marshal(s); string(b) != `"[REDACTED]"` {
		t.Fatalf("JSON %s", b)
	}
	if !strings.Contains(buf.String(), `"any":"[REDACTED]"`) || !strings.Contains(buf.String(), `"field":"[REDACTED]"`) || !strings.Contains(buf.String(), `"map":{"API_KEY":"[REDACTED]"}`) {
		t.Fatalf("zap output: %s", buf.String())
	}
	if s.Value() != v || (Secret{}).Value() != "" {
		t.Fatal("Value must return the secret")
	}
}

// BenchmarkResolve: resolution runs at provision (start and reload), never
// per request; this shows its cost for a typical set of names.
func BenchmarkResolve(b *testing.B) {
	dir := b.TempDir()
	names := []string{"SECHARD_B_API_KEY", "SECHARD_B_DB_PASSWORD", "SECHARD_B_JWT_KEY"}
	for _, n := range names {
		os.Unsetenv(n)
		os.Unsetenv(n + "_FILE")
		if err := os.WriteFile(filepath.Join(dir, n), []byte("value-of-"+n+"\n"), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	b.Setenv("SECHARD_B_ENV", "from-env")
	s := &Secrets{Require: append(names, "SECHARD_B_ENV"), Dirs: []string{b.TempDir(), dir}}
	env := &provisionEnv{logger: zap.NewNop(), now: time.Now}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.resolve(env, nil); err != nil {
			b.Fatal(err)
		}
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
	writeSecretFile(t, filepath.Join(dir, "DB_PASSWORD"), "pw\n")
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
	writeSecretFile(t, filepath.Join(dir, name), "version-1\n")
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
	writeSecretFile(t, filepath.Join(dir, name), "version-2\n")
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
	writeSecretFile(t, filepath.Join(dir, "SECHARD_E2E_FILE"), fileVal+"\n", 0o644) // also warns
	envFile := writeSecretFile(t, filepath.Join(t.TempDir(), "envfile"), envFileVal)
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
	writeSecretFile(t, filepath.Join(dir, "SECHARD_E2E_FILE"), fileVal+"-rotated", 0o600)
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

// forgetSecretHistory drops what this process remembers of the named
// secrets, so a test sees a first load again.
func forgetSecretHistory(names ...string) {
	secretHistory.Lock()
	defer secretHistory.Unlock()
	for _, n := range names {
		delete(secretHistory.digests, n)
	}
}
