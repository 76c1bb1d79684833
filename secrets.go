package sechard

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/sechard/sechard/internal/secrets"
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
				if err := secrets.CheckName(n); err != nil {
					return d.Err(err.Error())
				}
			}
			s.Require = append(s.Require, names...)
		case "dir":
			var dir string
			if !d.AllArgs(&dir) {
				return d.ArgErr()
			}
			if err := secrets.CheckDir(dir); err != nil {
				return d.Err(err.Error())
			}
			s.Dirs = append(s.Dirs, dir)
		default:
			return d.Errf("unrecognized secrets option %q", d.Val())
		}
	}
	return nil
}

// resolve resolves every required secret (s.Require plus extra, such as the
// names auth's API keys use) and reports every problem at once (see
// secrets.Resolve), logging the audit on the `secrets` logger. It is
// nil-receiver safe: with no secrets block, the names in extra are still
// resolved, from the default directories.
func (s *Secrets) resolve(env *provisionEnv, extra []string) (secrets.Values, error) {
	logger := zap.NewNop()
	if env != nil && env.logger != nil {
		logger = env.logger.Named("secrets")
	}
	names, dirs := extra, []string(nil)
	if s != nil {
		names, dirs = append(s.Require[:len(s.Require):len(s.Require)], extra...), s.Dirs
	}
	return secrets.Resolve(names, dirs, logger)
}
