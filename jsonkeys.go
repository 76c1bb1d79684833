package sechard

import (
	"bytes"
	"errors"
	"io"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// errDuplicateKey is returned for a JSON object that names a member twice.
// encoding/json (and so golang-jwt) silently keeps the last value, so a token
// carrying {"sub":"alice","sub":"admin"} would mean different things to
// different parsers on the way to the upstream; RFC 7515 §5.2 and RFC 8725
// §3.5 let a verifier reject it, and sechard does.
var errDuplicateKey = errors.New("duplicate JSON member name")

// errJSONShape is returned for input that is not one JSON object.
var errJSONShape = errors.New("not a JSON object")

// maxJSONDepth bounds nesting: no JWT header or claim set needs more.
const maxJSONDepth = 32

// jsonDecoders are reused: a decoder's buffers cost more than the check.
var jsonDecoders = sync.Pool{New: func() any { return jsontext.NewDecoder(bytes.NewReader(nil)) }}

// checkJSONObject reports whether b is exactly one valid JSON object in
// which no object, at any depth, names a member twice (names compared after
// unescaping: "\u0061lg" duplicates "alg"), nested at most maxJSONDepth
// deep. jsontext's decoder rejects duplicate names by default.
func checkJSONObject(b []byte) error {
	dec := jsonDecoders.Get().(*jsontext.Decoder)
	defer jsonDecoders.Put(dec)
	dec.Reset(bytes.NewReader(b))
	if dec.PeekKind() != '{' {
		return errJSONShape
	}
	for {
		if _, err := dec.ReadToken(); err != nil {
			if errors.Is(err, jsontext.ErrDuplicateName) {
				return errDuplicateKey
			}
			return errJSONShape
		}
		if dec.StackDepth() > maxJSONDepth {
			return errJSONShape
		}
		if dec.StackDepth() == 0 {
			break
		}
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return errJSONShape // something after the object
	}
	return nil
}
