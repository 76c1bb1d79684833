package jwtverify

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// errDuplicateKey is returned for a JSON object that names a member twice.
// encoding/json (and so golang-jwt) silently keeps the last value, so a token
// carrying {"sub":"alice","sub":"admin"} would mean different things to
// different parsers on the way to the upstream; RFC 7515 §5.2 and RFC 8725
// §3.5 let a verifier reject it, and this package does.
var errDuplicateKey = errors.New("duplicate JSON member name")

// errJSONShape is returned for input that is not one JSON object.
var errJSONShape = errors.New("not a JSON object")

// maxJSONDepth bounds nesting: no JWT header or claim set needs more.
const maxJSONDepth = 32

// jsonChecker is a decoder plus, per open object, the case-folded member
// names seen so far; reused, since its buffers cost more than the check.
type jsonChecker struct {
	dec   *jsontext.Decoder
	names []map[string]struct{} // by stack depth - 1
	fold  []byte
}

var jsonCheckers = sync.Pool{New: func() any { return &jsonChecker{dec: jsontext.NewDecoder(bytes.NewReader(nil))} }}

// checkJSONObject reports whether b is exactly one valid JSON object in
// which no object, at any depth, names a member twice (names compared after
// unescaping: "\u0061lg" duplicates "alg"; and case-insensitively, as
// encoding/json matches them: "SUB" duplicates "sub"), nested at most
// maxJSONDepth deep. jsontext's decoder rejects exact duplicates itself.
func checkJSONObject(b []byte) error {
	c := jsonCheckers.Get().(*jsonChecker)
	defer jsonCheckers.Put(c)
	dec := c.dec
	dec.Reset(bytes.NewReader(b))
	if dec.PeekKind() != '{' {
		return errJSONShape
	}
	for {
		tok, err := dec.ReadToken()
		if err != nil {
			if errors.Is(err, jsontext.ErrDuplicateName) {
				return errDuplicateKey
			}
			return errJSONShape
		}
		depth := dec.StackDepth()
		if depth > maxJSONDepth {
			return errJSONShape
		}
		switch kind, n := dec.StackIndex(depth); {
		case tok.Kind() == '{':
			for len(c.names) < depth {
				c.names = append(c.names, make(map[string]struct{}))
			}
			clear(c.names[depth-1])
		case kind == '{' && n%2 == 1: // a member name
			c.fold = foldName(c.fold[:0], tok.String())
			seen := c.names[depth-1]
			if _, dup := seen[string(c.fold)]; dup {
				return errDuplicateKey
			}
			seen[string(c.fold)] = struct{}{}
		}
		if depth == 0 {
			break
		}
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return errJSONShape // something after the object
	}
	return nil
}

// foldName appends the case-folded name, folded as encoding/json matches
// names (its foldName): "ſub" and "SUB" both fold to "SUB".
func foldName(out []byte, name string) []byte {
	for _, r := range name {
		if r < utf8.RuneSelf {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			out = append(out, byte(r))
			continue
		}
		out = utf8.AppendRune(out, unicode.ToUpper(unicode.ToLower(r)))
	}
	return out
}
