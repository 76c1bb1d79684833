package sechard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"unicode"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

// Secrets names the secrets that must be present when the config loads
// (SEC-03). The config only ever holds names: values are read from the
// environment or from files each time the config is provisioned (at start and
// at every reload), never stored in the JSON config, and held in memory in a
// type that prints `[REDACTED]`.
//
// A secret NAME resolves, in this order, from:
//
//  1. the environment variable NAME, when it is not empty;
//  2. the file named by the environment variable NAME_FILE (the convention of
//     Docker's official images);
//  3. the file NAME in the first of `dirs` that has one.
//
// Setting both NAME and NAME_FILE is an error (it is ambiguous which one is
// meant). Trailing whitespace (such as the newline at the end of a file) is
// trimmed, and a value that is empty or only whitespace counts as missing.
// If any required secret is missing, the config fails to load, naming every
// missing secret at once: `caddy run` exits non-zero, `caddy validate`
// fails, and a `caddy reload` is refused while the old config keeps serving.
//
// Every load logs one `info` line per secret (logger
// `http.handlers.sechard.secrets`) with its name, where it came from and
// whether its value changed since the previous load, never the value.
type Secrets struct {
	// Names of secrets that must resolve to a non-empty value. Names are
	// letters, digits and `_`, not starting with a digit (like environment
	// variable names), so a name can never point outside a secrets
	// directory. Secrets named by `auth` API keys are required
	// automatically and need not be listed here.
	Require []string `json:"require,omitempty"`

	// Directories searched, in order, for a file named after the secret
	// (Docker secrets, Kubernetes Secret volumes, systemd credentials,
	// files written by Vault Agent or the Secrets Store CSI driver).
	// Default: `$CREDENTIALS_DIRECTORY` when systemd sets it, then
	// `/run/secrets`. Setting any directory replaces the defaults.
	Dirs []string `json:"dirs,omitempty"`
}

// unmarshalCaddyfile parses the secrets block:
//
//	secrets {
//		require <NAME...>
//		dir     <path>
//	}
//
// Both lines are repeatable.
func (s *Secrets) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "require":
			names := d.RemainingArgs()
			if len(names) == 0 {
				return d.ArgErr()
			}
			for _, n := range names {
				if !validSecretName(n) {
					return d.Errf("invalid secret name %q: %s", n, secretNameRule)
				}
			}
			s.Require = append(s.Require, names...)
		case "dir":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dir := d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			if strings.TrimSpace(dir) == "" {
				return d.Err("secret dir must not be empty")
			}
			s.Dirs = append(s.Dirs, dir)
		default:
			return d.Errf("unrecognized secrets option %q", d.Val())
		}
	}
	return nil
}

const (
	// redacted is what every printed or serialized form of a Secret says.
	redacted = "[REDACTED]"

	// maxSecretSize bounds how much of a secret file is read: a secret is a
	// key or a password, not a file to stream. A larger file is an error
	// (the read stops at maxSecretSize+1 bytes, whatever the file's size).
	maxSecretSize = 1 << 20

	// defaultSecretDir is where Docker (and Compose) mount secrets.
	defaultSecretDir = "/run/secrets"

	secretNameRule = "names are letters, digits and _, not starting with a digit"
)

var secretNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validSecretName reports whether name can name a secret. The rule keeps
// names usable as environment variables and as file names that cannot leave
// a secrets directory (no `/`, no `..`).
func validSecretName(name string) bool { return secretNameRE.MatchString(name) }

// Secret is a resolved secret value. Every way of printing or serializing it
// (fmt verbs, JSON, text, zap) gives `[REDACTED]`; only Value returns the
// secret itself. The value sits behind a pointer so that even reflection-based
// printing of a struct holding a Secret in an unexported field (which fmt
// does without calling methods) shows an address, not the value.
type Secret struct{ v *string }

func newSecret(v string) Secret { return Secret{v: &v} }

// Value returns the secret itself. Use it only to compare (in constant time)
// or to sign; never log or wrap it into an error.
func (s Secret) Value() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}

// String redacts the value.
func (s Secret) String() string { return redacted }

// GoString redacts the value (%#v).
func (s Secret) GoString() string { return redacted }

// Format redacts the value for every fmt verb (%v, %+v, %#v, %s, %q, %x...).
func (s Secret) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }

// MarshalJSON redacts the value.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText redacts the value (encoding.TextMarshaler: map keys, YAML,
// slog and others).
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Field returns a zap field holding the redacted form. zap.Any, zap.Stringer
// and zap.Reflect are redacted as well (through String and MarshalJSON).
func (s Secret) Field(key string) zap.Field { return zap.String(key, redacted) }

// secretValues maps a secret's name to its value.
type secretValues map[string]Secret

// Sources of a secret, as the audit log names them.
const (
	sourceEnv     = "env"      // the environment variable NAME
	sourceEnvFile = "env_file" // the file named by NAME_FILE
	sourceFile    = "file"     // <dir>/NAME
)

// resolvedSecret is where one secret came from.
type resolvedSecret struct {
	value  string
	source string
	path   string // for env_file and file
	// mode is the file's permission bits (files only).
	mode fs.FileMode
}

// resolve resolves every required secret (s.Require plus extra, such as the
// names auth's API keys use) and reports every problem at once: one
// `missing required secret: A, B` for the missing names, followed by any
// other problem (ambiguous NAME/NAME_FILE, unreadable or oversized files).
// It is nil-receiver safe: with no secrets block, the names in extra are
// still resolved, from the default directories.
func (s *Secrets) resolve(env *provisionEnv, extra []string) (secretValues, error) {
	logger := zap.NewNop()
	if env != nil && env.logger != nil {
		logger = env.logger.Named("secrets")
	}
	var require, configuredDirs []string
	if s != nil {
		require, configuredDirs = s.Require, s.Dirs
	}

	// One sorted, deduplicated list, so the error and the audit lines come
	// out in the same order whichever block required a name.
	seen := make(map[string]bool, len(require)+len(extra))
	var names, problems []string
	for _, n := range append(append([]string(nil), require...), extra...) {
		if seen[n] {
			continue
		}
		seen[n] = true
		if !validSecretName(n) {
			// The Caddyfile rejects these at parse time; JSON configs get here.
			problems = append(problems, fmt.Sprintf("invalid secret name %q: %s", n, secretNameRule))
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)

	dirs, err := secretDirs(configuredDirs, logger)
	if err != nil {
		problems = append(problems, err.Error())
	}

	vals := make(secretValues, len(names))
	found := make(map[string]resolvedSecret, len(names))
	var missing []string
	for _, name := range names {
		r, err := resolveSecret(name, dirs)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("secret %s: %v", name, err))
		case r.value == "":
			missing = append(missing, name)
		default:
			vals[name] = newSecret(r.value)
			found[name] = r
		}
	}

	ok := len(missing) == 0 && len(problems) == 0
	auditSecrets(logger, names, found, ok)

	if !ok {
		var msg []string
		if len(missing) > 0 {
			msg = append(msg, "missing required secret: "+strings.Join(missing, ", "))
		}
		return nil, errors.New(strings.Join(append(msg, problems...), "; "))
	}
	return vals, nil
}

// secretDirs returns the directories to search: the configured ones, or by
// default $CREDENTIALS_DIRECTORY (systemd's LoadCredential=) when set, then
// /run/secrets. A configured directory that does not exist only warns (the
// secrets in it are then reported missing); one that is not a directory is
// an error.
func secretDirs(configured []string, logger *zap.Logger) ([]string, error) {
	if len(configured) == 0 {
		var dirs []string
		if cd := os.Getenv("CREDENTIALS_DIRECTORY"); cd != "" {
			dirs = append(dirs, cd)
		}
		return append(dirs, defaultSecretDir), nil
	}
	var errs []string
	for _, dir := range configured {
		fi, err := os.Stat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			logger.Warn("secret dir does not exist", zap.String("dir", dir))
		case err != nil:
			errs = append(errs, fmt.Sprintf("secret dir: %v", err))
		case !fi.IsDir():
			errs = append(errs, fmt.Sprintf("secret dir %s is not a directory", dir))
		}
	}
	if len(errs) > 0 {
		return configured, errors.New(strings.Join(errs, "; "))
	}
	return configured, nil
}

// resolveSecret finds one secret. A zero value with a nil error means the
// secret is missing. Errors name files and variables, never contents.
func resolveSecret(name string, dirs []string) (resolvedSecret, error) {
	// An empty (or whitespace-only) NAME counts as unset, so NAME_FILE is
	// used then rather than reported as ambiguous.
	v := trimSecret(os.Getenv(name))
	fileVar := name + "_FILE"
	file := os.Getenv(fileVar)
	if strings.TrimSpace(file) == "" {
		file = ""
	}
	switch {
	case v != "" && file != "":
		return resolvedSecret{}, fmt.Errorf("both %s and %s are set; set only one", name, fileVar)
	case v != "":
		return resolvedSecret{value: v, source: sourceEnv}, nil
	case file != "":
		val, mode, err := readSecretFile(file)
		if err != nil {
			return resolvedSecret{}, fmt.Errorf("%s: %w", fileVar, err)
		}
		return resolvedSecret{value: val, source: sourceEnvFile, path: file, mode: mode}, nil
	}
	for _, dir := range dirs {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue // not in this directory; try the next
		}
		val, mode, err := readSecretFile(p)
		if err != nil {
			return resolvedSecret{}, err
		}
		return resolvedSecret{value: val, source: sourceFile, path: p, mode: mode}, nil
	}
	return resolvedSecret{}, nil
}

// readSecretFile reads a secret file through its path (so a Kubernetes
// `..data` symlink swap is seen at the next load), bounded to maxSecretSize,
// and trims trailing whitespace. Only regular files are read: a directory, a
// FIFO (whose open would block) or a device is an error, as are a dangling
// symlink and a symlink loop.
func readSecretFile(path string) (string, fs.FileMode, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, lerr := os.Lstat(path); lerr == nil {
				return "", 0, fmt.Errorf("%s is a symlink to a file that does not exist", path)
			}
		}
		return "", 0, err
	}
	if fi.IsDir() {
		return "", 0, fmt.Errorf("%s is a directory, not a file", path)
	}
	if !fi.Mode().IsRegular() {
		return "", 0, fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretSize+1))
	if err != nil {
		return "", 0, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > maxSecretSize {
		return "", 0, fmt.Errorf("%s is larger than %d bytes; a secret file holds one value", path, maxSecretSize)
	}
	return trimSecret(string(b)), fi.Mode().Perm(), nil
}

// trimSecret drops trailing whitespace (a file's final newline, CRLF); a
// whitespace-only value becomes empty, which counts as missing.
func trimSecret(v string) string { return strings.TrimRightFunc(v, unicode.IsSpace) }

// secretHistory remembers, for the whole process, a keyed digest of each
// secret's value at the last load that succeeded, so each load can say
// whether a value changed (rotation) without keeping old values in memory
// and without ever logging a value or a digest of it. The key is random per
// process, so the digests are useless outside it.
var secretHistory struct {
	sync.Mutex
	key     []byte
	digests map[string][sha256.Size]byte
}

func secretDigest(key []byte, v string) [sha256.Size]byte {
	m := hmac.New(sha256.New, key)
	io.WriteString(m, v)
	var d [sha256.Size]byte
	copy(d[:], m.Sum(nil))
	return d
}

// auditSecrets logs one info line per resolved secret: name, source, path,
// and whether the value changed since the last successful load. Only a
// successful load (commit) becomes the baseline for the next comparison, so a
// refused reload does not hide a rotation from the next one.
func auditSecrets(logger *zap.Logger, names []string, found map[string]resolvedSecret, commit bool) {
	secretHistory.Lock()
	defer secretHistory.Unlock()
	if secretHistory.key == nil {
		secretHistory.key = make([]byte, 32)
		rand.Read(secretHistory.key)
		secretHistory.digests = make(map[string][sha256.Size]byte)
	}
	for _, name := range names {
		r, ok := found[name]
		if !ok {
			continue
		}
		d := secretDigest(secretHistory.key, r.value)
		prev, seen := secretHistory.digests[name]
		fields := []zap.Field{zap.String("name", name), zap.String("source", r.source)}
		if r.path != "" {
			fields = append(fields, zap.String("path", r.path))
		}
		fields = append(fields, zap.Bool("changed", seen && prev != d), zap.Bool("first_load", !seen))
		logger.Info("secret loaded", fields...)
		if r.source != sourceEnv && runtime.GOOS != "windows" && r.mode&0o044 != 0 {
			logger.Warn("secret file is readable by other users; make it 0400 or 0600 (Kubernetes: defaultMode: 0400)",
				zap.String("name", name), zap.String("path", r.path), zap.String("mode", fmt.Sprintf("%#o", r.mode)))
		}
		if commit {
			secretHistory.digests[name] = d
		}
	}
}
