package secrets

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// testLogger returns a logger named as the module names it, and its logs.
func testLogger(t *testing.T) (*zap.Logger, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	return zap.New(core).Named("secrets"), logs
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
			logger, logs := testLogger(t)
			vals, err := Resolve([]string{name}, []string{d1, d2}, logger)
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
		dirs, err := searchDirs(nil, zap.NewNop())
		if err != nil || strings.Join(dirs, ",") != "/run/credentials/caddy.service,/run/secrets" {
			t.Fatalf("dirs %v, %v", dirs, err)
		}
	})
	t.Run("only /run/secrets without systemd", func(t *testing.T) {
		t.Setenv("CREDENTIALS_DIRECTORY", "")
		dirs, err := searchDirs(nil, zap.NewNop())
		if err != nil || strings.Join(dirs, ",") != "/run/secrets" {
			t.Fatalf("dirs %v, %v", dirs, err)
		}
	})
	t.Run("configured dirs replace the defaults", func(t *testing.T) {
		t.Setenv("CREDENTIALS_DIRECTORY", "/run/credentials/caddy.service")
		d := t.TempDir()
		dirs, err := searchDirs([]string{d}, zap.NewNop())
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
		logger, logs := testLogger(t)
		vals, err := Resolve([]string{name}, nil, logger) // no dirs: the defaults
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
		if _, err := searchDirs([]string{gone}, zap.New(core)); err != nil {
			t.Fatal(err)
		}
		if logs.FilterMessage("secret dir does not exist").Len() != 1 {
			t.Fatalf("no warning: %v", logs.All())
		}
	})
	t.Run("an empty configured dir is an error", func(t *testing.T) {
		if _, err := searchDirs([]string{" "}, zap.NewNop()); err == nil || err.Error() != "secret dir must not be empty" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("configured dir that is a file is an error", func(t *testing.T) {
		f := writeSecretFile(t, filepath.Join(t.TempDir(), "file"), "x")
		if _, err := searchDirs([]string{f}, zap.NewNop()); err == nil || !strings.Contains(err.Error(), f+" is not a directory") {
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
	logger, _ := testLogger(t)
	names := []string{"SECHARD_T_DB_PASSWORD", "SECHARD_T_PRESENT", "SECHARD_T_API_KEY", "SECHARD_T_FROM_AUTH", "SECHARD_T_API_KEY"}
	_, err := Resolve(names, []string{t.TempDir()}, logger)
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
	logger, _ := testLogger(t)
	_, err := Resolve([]string{"SECHARD_T_B", "SECHARD_T_A"}, []string{dir}, logger)
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
			writeSecretFile(t, p, strings.Repeat("a", MaxSize+1))
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
				logger, logs := testLogger(t)
				done := make(chan error, 1)
				go func() {
					_, err := Resolve([]string{name}, dirs, logger)
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
	writeSecretFile(t, filepath.Join(dir, name), strings.Repeat("k", MaxSize))
	logger, _ := testLogger(t)
	vals, err := Resolve([]string{name}, []string{dir}, logger)
	if err != nil || len(vals[name].Value()) != MaxSize {
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
			logger, logs := testLogger(t)
			if _, err := Resolve([]string{name}, []string{dir}, logger); err != nil {
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
	names, dirs := []string{name, "SECHARD_T_ROTATE_GATE"}, []string{dir}
	t.Setenv("SECHARD_T_ROTATE_GATE", "gate")
	load := func() (map[string]any, error) {
		t.Helper()
		logger, logs := testLogger(t)
		_, err := Resolve(names, dirs, logger)
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

	names, dirs := []string{name}, []string{vol}
	logger, logs := testLogger(t)
	vals, err := Resolve(names, dirs, logger)
	if err != nil || vals[name].Value() != "first" {
		t.Fatalf("got %v %v", vals[name].Value(), err)
	}
	if logs.FilterMessageSnippet("readable by other users").Len() != 1 {
		t.Fatal("0644 (the Kubernetes default) should warn")
	}

	// The kubelet's atomic swap: new symlink, renamed over ..data.
	must(os.Symlink(version("..2026_11_26_21_00_00.2", "second"), filepath.Join(vol, "..data_tmp")))
	must(os.Rename(filepath.Join(vol, "..data_tmp"), filepath.Join(vol, "..data")))
	logger, logs = testLogger(t)
	vals, err = Resolve(names, dirs, logger)
	if err != nil || vals[name].Value() != "second" {
		t.Fatalf("got %v %v", vals[name].Value(), err)
	}
	if line := secretLog(t, logs, name); line["changed"] != true {
		t.Fatalf("swap not reported as a change: %v", line)
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
	names = append(names, "SECHARD_B_ENV")
	dirs := []string{b.TempDir(), dir}
	logger := zap.NewNop()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Resolve(names, dirs, logger); err != nil {
			b.Fatal(err)
		}
	}
}

// forgetSecretHistory drops what this process remembers of the named
// secrets, so a test sees a first load again.
func forgetSecretHistory(names ...string) {
	history.Lock()
	defer history.Unlock()
	for _, n := range names {
		delete(history.digests, n)
	}
}
