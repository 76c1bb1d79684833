package revocation

import (
	"errors"
	"fmt"
	"time"
)

// Entry is one revocation: a jti, or a subject with a time before which its
// tokens are revoked (Before == nil: all its tokens).
type Entry struct {
	JTI    string `json:"jti,omitempty"`
	Exp    int64  `json:"exp,omitempty"`
	Sub    string `json:"sub,omitempty"`
	Before *int64 `json:"before,omitempty"`
	Source string `json:"source"`
	// Expires is when the entry may be forgotten (unix seconds); 0: never.
	Expires int64 `json:"-"`
}

// Bounds say how long a token can be accepted: until iat + MaxTTL + Leeway
// at most, and Leeway past its exp. A revocation must last as long.
type Bounds struct{ MaxTTL, Leeway time.Duration }

// JTIExpiry is when a jti revocation may be forgotten (unix seconds).
func (b Bounds) JTIExpiry(exp int64) int64 { return exp + ceilSeconds(b.Leeway) }

// SubExpiry is when a subject revocation may be forgotten: every token it
// covers was issued before `before`, so none is accepted after this.
func (b Bounds) SubExpiry(before int64) int64 { return before + ceilSeconds(b.MaxTTL+b.Leeway) }

// Widen returns bounds covering the tokens of both b and o.
func (b Bounds) Widen(o Bounds) Bounds {
	return Bounds{max(b.MaxTTL, o.MaxTTL), max(b.Leeway, o.Leeway)}
}

// ceilSeconds converts d to whole seconds, rounding up.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// MaxField bounds a jti or subject in a Request: they become map keys and
// Redis keys.
const MaxField = 1024

// Request asks for one revocation (the body of the admin API's POST).
type Request struct {
	// JTI revokes one token; Exp is its exp claim (unix seconds): the
	// revocation is forgotten once leeway has passed after it.
	JTI string `json:"jti,omitempty"`
	Exp int64  `json:"exp,omitempty"`
	// Sub revokes a subject's tokens issued before Before (unix seconds;
	// default: every token issued until now, this second included).
	Sub    string `json:"sub,omitempty"`
	Before *int64 `json:"before,omitempty"`
}

// Entry validates the request and turns it into an entry that expires once
// no token it covers can be accepted within b.
func (req Request) Entry(now time.Time, b Bounds) (Entry, error) {
	switch {
	case req.JTI != "" && req.Sub != "":
		return Entry{}, errors.New("give either jti (with exp) or sub (with before), not both")
	case req.JTI != "":
		if len(req.JTI) > MaxField {
			return Entry{}, fmt.Errorf("jti longer than %d bytes", MaxField)
		}
		if req.Before != nil {
			return Entry{}, errors.New("before goes with sub; a jti takes exp")
		}
		if req.Exp <= 0 {
			return Entry{}, errors.New("exp (the token's exp claim, unix seconds) is required with jti, so the revocation can expire with the token")
		}
		expires := b.JTIExpiry(req.Exp)
		if expires < now.Unix() {
			return Entry{}, fmt.Errorf("exp %d is long past: the token has already expired", req.Exp)
		}
		return Entry{JTI: req.JTI, Exp: req.Exp, Expires: expires}, nil
	case req.Sub != "":
		if len(req.Sub) > MaxField {
			return Entry{}, fmt.Errorf("sub longer than %d bytes", MaxField)
		}
		if req.Exp != 0 {
			return Entry{}, errors.New("exp goes with jti; a sub takes before")
		}
		// Default: every token issued up to now. iat has whole seconds, so
		// a token issued in this very second (iat == now) is included too.
		before := now.Unix() + 1
		if req.Before != nil {
			before = *req.Before
		}
		if before <= 0 {
			return Entry{}, errors.New("before must be unix seconds")
		}
		expires := b.SubExpiry(before)
		if expires < now.Unix() {
			return Entry{}, fmt.Errorf("before %d is long past: every token issued before it has expired", before)
		}
		return Entry{Sub: req.Sub, Before: &before, Expires: expires}, nil
	}
	return Entry{}, errors.New(`want {"jti": "...", "exp": <unix>} or {"sub": "...", "before": <unix>}`)
}
