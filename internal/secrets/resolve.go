package secrets

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"go.uber.org/zap"
)

const (
	// MaxSize bounds how much of a secret file is read: a secret is a key or
	// a password, not a file to stream. A larger file is an error (the read
	// stops at MaxSize+1 bytes, whatever the file's size).
	MaxSize = 1 << 20

	// defaultDir is where Docker (and Compose) mount secrets.
	defaultDir = "/run/secrets"

	nameRule = "names are letters, digits and _, not starting with a digit"
)

var nameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// CheckName reports why name cannot name a secret (nil if it can). The rule
// keeps names usable as environment variables and as file names that cannot
// leave a secret directory (no `/`, no `..`).
func CheckName(name string) error {
	if nameRE.MatchString(name) {
		return nil
	}
	return fmt.Errorf("invalid secret name %q: %s", name, nameRule)
}

// CheckDir reports why dir cannot be a secret directory before looking at
// the file system (nil if it can).
func CheckDir(dir string) error {
	if strings.TrimSpace(dir) == "" {
		return errors.New("secret dir must not be empty")
	}
	return nil
}

// Sources of a secret, as the audit log names them.
const (
	sourceEnv     = "env"      // the environment variable NAME
	sourceEnvFile = "env_file" // the file named by NAME_FILE
	sourceFile    = "file"     // <dir>/NAME
)

// found is where one secret came from.
type found struct {
	value  string
	source string
	path   string      // for env_file and file
	mode   fs.FileMode // the file's permission bits (files only)
}

// Resolve resolves every name and reports every problem at once: one
// `missing required secret: A, B` for the missing names, followed by any
// other problem (invalid names, ambiguous NAME/NAME_FILE, unreadable or
// oversized files). dirs replace the default directories when not empty.
// Names may repeat; each is resolved and logged once, in sorted order.
func Resolve(names, dirs []string, logger *zap.Logger) (Values, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	var valid, problems []string
	for _, n := range names {
		if slices.Contains(valid, n) {
			continue
		}
		if err := CheckName(n); err != nil {
			// The Caddyfile rejects these at parse time; JSON configs get here.
			if !slices.Contains(problems, err.Error()) {
				problems = append(problems, err.Error())
			}
			continue
		}
		valid = append(valid, n)
	}
	slices.Sort(valid)

	dirs, err := searchDirs(dirs, logger)
	if err != nil {
		problems = append(problems, err.Error())
	}

	vals := make(Values, len(valid))
	sources := make(map[string]found, len(valid))
	var missing []string
	for _, name := range valid {
		f, err := resolveOne(name, dirs)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("secret %s: %v", name, err))
		case f.value == "":
			missing = append(missing, name)
		default:
			vals[name] = New(f.value)
			sources[name] = f
		}
	}

	ok := len(missing) == 0 && len(problems) == 0
	audit(logger, valid, sources, ok)

	if !ok {
		var msg []string
		if len(missing) > 0 {
			msg = append(msg, "missing required secret: "+strings.Join(missing, ", "))
		}
		return nil, errors.New(strings.Join(append(msg, problems...), "; "))
	}
	return vals, nil
}

// searchDirs returns the directories to search: the configured ones, or by
// default $CREDENTIALS_DIRECTORY (systemd's LoadCredential=) when set, then
// /run/secrets. A configured directory that does not exist only warns (the
// secrets in it are then reported missing); one that is not a directory is
// an error.
func searchDirs(configured []string, logger *zap.Logger) ([]string, error) {
	if len(configured) == 0 {
		var dirs []string
		if cd := os.Getenv("CREDENTIALS_DIRECTORY"); cd != "" {
			dirs = append(dirs, cd)
		}
		return append(dirs, defaultDir), nil
	}
	var errs []string
	for _, dir := range configured {
		if err := CheckDir(dir); err != nil {
			errs = append(errs, err.Error())
			continue
		}
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

// resolveOne finds one secret. A zero value with a nil error means the
// secret is missing. Errors name files and variables, never contents.
func resolveOne(name string, dirs []string) (found, error) {
	// An empty (or whitespace-only) NAME counts as unset, so NAME_FILE is
	// used then rather than reported as ambiguous.
	v := trim(os.Getenv(name))
	fileVar := name + "_FILE"
	file := os.Getenv(fileVar)
	if strings.TrimSpace(file) == "" {
		file = ""
	}
	switch {
	case v != "" && file != "":
		return found{}, fmt.Errorf("both %s and %s are set; set only one", name, fileVar)
	case v != "":
		return found{value: v, source: sourceEnv}, nil
	case file != "":
		val, mode, err := readFile(file)
		if err != nil {
			return found{}, fmt.Errorf("%s: %w", fileVar, err)
		}
		return found{value: val, source: sourceEnvFile, path: file, mode: mode}, nil
	}
	for _, dir := range dirs {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue // not in this directory; try the next
		}
		val, mode, err := readFile(p)
		if err != nil {
			return found{}, err
		}
		return found{value: val, source: sourceFile, path: p, mode: mode}, nil
	}
	return found{}, nil
}

// readFile reads a secret file through its path (so a Kubernetes `..data`
// symlink swap is seen at the next load), bounded to MaxSize, and trims
// trailing whitespace. Only regular files are read: a directory, a FIFO
// (whose open would block) or a device is an error, as are a dangling
// symlink and a symlink loop.
func readFile(path string) (string, fs.FileMode, error) {
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
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return "", 0, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > MaxSize {
		return "", 0, fmt.Errorf("%s is larger than %d bytes; a secret file holds one value", path, MaxSize)
	}
	return trim(string(b)), fi.Mode().Perm(), nil
}

// trim drops trailing whitespace (a file's final newline, CRLF); a
// whitespace-only value becomes empty, which counts as missing.
func trim(v string) string { return strings.TrimRightFunc(v, unicode.IsSpace) }
