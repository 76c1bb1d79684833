package sechard

import (
	"bytes"
	"encoding/json"
	"errors"
)

// errDuplicateKey is returned for a JSON object that names a member twice.
// encoding/json (and so golang-jwt) silently keeps the last value, so a token
// carrying {"sub":"alice","sub":"admin"} would mean different things to
// different parsers on the way to the upstream; RFC 7515 §5.2 and RFC 8725
// §3.5 let a verifier reject it, and sechard does.
var errDuplicateKey = errors.New("duplicate JSON member name")

// errJSONShape is returned for input that is not one JSON object.
var errJSONShape = errors.New("not a JSON object")

// maxJSONDepth bounds nesting, so hostile input costs stack proportional to
// this constant and never to its size.
const maxJSONDepth = 32

// checkJSONObject reports whether b is one JSON object in which no object, at
// any depth, names a member twice. Member names are compared after
// unescaping ("\u0061lg" duplicates "alg"). It does not fully validate the
// JSON grammar (numbers are not checked digit by digit): the JSON decoder
// that runs after it does. It is linear in len(b) for objects of up to
// smallObject members, and never allocates for names without escapes.
func checkJSONObject(b []byte) error {
	s := jsonScanner{b: b}
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return errJSONShape
	}
	if err := s.object(0); err != nil {
		return err
	}
	s.ws()
	if s.i != len(s.b) {
		return errJSONShape
	}
	return nil
}

type jsonScanner struct {
	b []byte
	i int
}

func (s *jsonScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// smallObject is how many member names are compared pairwise before a map
// takes over.
const smallObject = 16

func (s *jsonScanner) object(depth int) error {
	if depth >= maxJSONDepth {
		return errJSONShape
	}
	s.i++ // '{'
	var small [smallObject][]byte
	n := 0
	var seen map[string]struct{}
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return errJSONShape
		}
		name, err := s.str()
		if err != nil {
			return err
		}
		switch {
		case seen != nil:
			if _, dup := seen[string(name)]; dup {
				return errDuplicateKey
			}
			seen[string(name)] = struct{}{}
		case n < smallObject:
			for _, k := range small[:n] {
				if bytes.Equal(k, name) {
					return errDuplicateKey
				}
			}
			small[n] = name
			n++
		default:
			seen = make(map[string]struct{}, 2*smallObject)
			for _, k := range small[:n] {
				seen[string(k)] = struct{}{}
			}
			if _, dup := seen[string(name)]; dup {
				return errDuplicateKey
			}
			seen[string(name)] = struct{}{}
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return errJSONShape
		}
		s.i++
		if err := s.value(depth + 1); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return errJSONShape
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return errJSONShape
		}
	}
}

func (s *jsonScanner) array(depth int) error {
	if depth >= maxJSONDepth {
		return errJSONShape
	}
	s.i++ // '['
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return nil
	}
	for {
		if err := s.value(depth + 1); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return errJSONShape
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return errJSONShape
		}
	}
}

func (s *jsonScanner) value(depth int) error {
	s.ws()
	if s.i >= len(s.b) {
		return errJSONShape
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object(depth)
	case c == '[':
		return s.array(depth)
	case c == '"':
		_, err := s.str()
		return err
	default:
		// true, false, null or a number: a run of literal bytes; the decoder
		// that runs next validates them.
		start := s.i
		for s.i < len(s.b) {
			c := s.b[s.i]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
				break
			}
			s.i++
		}
		if s.i == start {
			return errJSONShape
		}
		return nil
	}
}

// str consumes a string starting at the opening quote and returns its
// content, unescaped when it contains escapes.
func (s *jsonScanner) str() ([]byte, error) {
	start := s.i
	s.i++
	escaped := false
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			raw := s.b[start:s.i]
			if !escaped {
				return raw[1 : len(raw)-1], nil
			}
			var out string
			// A copy, so the caller's buffer (on its stack) does not escape.
			if err := json.Unmarshal(bytes.Clone(raw), &out); err != nil {
				return nil, errJSONShape
			}
			return []byte(out), nil
		case c == '\\':
			escaped = true
			s.i += 2
		case c < 0x20:
			return nil, errJSONShape
		default:
			s.i++
		}
	}
	return nil, errJSONShape
}
