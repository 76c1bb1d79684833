package sechard

import (
	"fmt"
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Secrets names the secrets that must be present when the config loads
// (SEC-03). STUB: the secrets issue replaces this.
type Secrets struct {
	// Names of secrets that must resolve to a non-empty value.
	Require []string `json:"require,omitempty"`
}

func (s *Secrets) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "require":
			s.Require = append(s.Require, d.RemainingArgs()...)
		default:
			return d.Errf("unrecognized secrets option %q", d.Val())
		}
	}
	return nil
}

// Secret is a resolved secret value. It never prints its value.
type Secret struct{ value string }

// Value returns the secret itself; only for comparing or signing.
func (s Secret) Value() string { return s.value }

// String redacts the value.
func (s Secret) String() string { return "[REDACTED]" }

// secretValues maps a secret's name to its value.
type secretValues map[string]Secret

// resolve resolves every required secret (s.Require plus extra) and fails
// with all missing names at once.
func (s *Secrets) resolve(env *provisionEnv, extra []string) (secretValues, error) {
	var names []string
	if s != nil {
		names = append(names, s.Require...)
	}
	names = append(names, extra...)
	vals := make(secretValues, len(names))
	var missing []string
	for _, n := range names {
		v := strings.TrimSpace(os.Getenv(n))
		if v == "" {
			missing = append(missing, n)
			continue
		}
		vals[n] = Secret{value: v}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing required secret: %s", strings.Join(missing, ", "))
	}
	return vals, nil
}
