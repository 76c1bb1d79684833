package secrets

import (
	"encoding"
	"encoding/json"
	"fmt"
	"io"

	"go.uber.org/zap"
)

// redacted is what every printed or serialized form of a Secret says.
const redacted = "[REDACTED]"

// Secret is a resolved secret value. Every way of printing or serializing it
// (fmt verbs, JSON, text, zap) gives `[REDACTED]`; only Value returns the
// secret itself. The value sits behind a pointer so that even reflection-based
// printing of a struct holding a Secret in an unexported field (which fmt
// does without calling methods) shows an address, not the value.
type Secret struct{ v *string }

// New holds v as a Secret.
func New(v string) Secret { return Secret{v: &v} }

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

// Values maps a secret's name to its value.
type Values map[string]Secret

// Interface guards: losing one of these methods (a changed receiver, a typo)
// would make that way of printing fall back to the raw value without a
// compile error.
var (
	_ fmt.Stringer           = Secret{}
	_ fmt.GoStringer         = Secret{}
	_ fmt.Formatter          = Secret{}
	_ json.Marshaler         = Secret{}
	_ encoding.TextMarshaler = Secret{}
	_ fmt.Stringer           = (*Secret)(nil)
	_ fmt.Formatter          = (*Secret)(nil)
	_ json.Marshaler         = (*Secret)(nil)
	_ encoding.TextMarshaler = (*Secret)(nil)
)
