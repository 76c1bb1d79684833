package revocation

import (
	"strings"
	"testing"
	"time"
)

func TestBounds(t *testing.T) {
	b := Bounds{MaxTTL: 48 * time.Hour, Leeway: 1500 * time.Millisecond}
	if got := b.JTIExpiry(1000); got != 1002 {
		t.Errorf("JTIExpiry = %d, want exp + leeway rounded up", got)
	}
	if got := b.SubExpiry(1000); got != 1000+48*3600+2 {
		t.Errorf("SubExpiry = %d, want before + max_ttl + leeway rounded up", got)
	}
	if w := b.Widen(Bounds{MaxTTL: time.Hour, Leeway: time.Minute}); w != (Bounds{48 * time.Hour, time.Minute}) {
		t.Errorf("Widen = %+v", w)
	}
}

func TestRequestEntry(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	b := Bounds{MaxTTL: 5 * time.Minute, Leeway: 30 * time.Second}
	past := int64(10)
	e, err := Request{JTI: "j", Exp: now.Unix() + 60}.Entry(now, b)
	if err != nil || e.JTI != "j" || e.Expires != now.Unix()+90 {
		t.Fatalf("jti: %+v %v", e, err)
	}
	e, err = Request{Sub: "s"}.Entry(now, b)
	if err != nil || *e.Before != now.Unix()+1 || e.Expires != now.Unix()+1+330 {
		t.Fatalf("sub without before: %+v %v (want every token issued up to this second)", e, err)
	}
	for _, tc := range []struct {
		req  Request
		want string
	}{
		{Request{}, "want {"},
		{Request{JTI: "j", Sub: "s"}, "not both"},
		{Request{JTI: "j"}, "exp (the token's exp claim"},
		{Request{JTI: "j", Exp: 1, Before: &past}, "before goes with sub"},
		{Request{JTI: "j", Exp: 1}, "long past"},
		{Request{JTI: strings.Repeat("j", MaxField+1), Exp: now.Unix()}, "jti longer than 1024 bytes"},
		{Request{Sub: "s", Exp: 1}, "exp goes with jti"},
		{Request{Sub: "s", Before: &past}, "long past"},
		{Request{Sub: strings.Repeat("s", MaxField+1)}, "sub longer than 1024 bytes"},
	} {
		if _, err := tc.req.Entry(now, b); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.req, err, tc.want)
		}
	}
}

// FuzzRequestEntry: whatever the admin API is sent, an accepted entry is a
// jti or a subject within MaxField bytes that still covers a token.
func FuzzRequestEntry(f *testing.F) {
	f.Add("jti-1", int64(1_000_060), "", int64(0), false)
	f.Add("", int64(0), "cn:Service BI", int64(999_000), true)
	f.Add("j", int64(-1), "s", int64(-5), true)
	f.Fuzz(func(t *testing.T, jti string, exp int64, sub string, before int64, hasBefore bool) {
		now := time.Unix(1_000_000, 0)
		req := Request{JTI: jti, Exp: exp, Sub: sub}
		if hasBefore {
			req.Before = &before
		}
		e, err := req.Entry(now, Bounds{MaxTTL: time.Hour, Leeway: time.Minute})
		if err != nil {
			return
		}
		if (e.JTI == "") == (e.Sub == "") || len(e.JTI) > MaxField || len(e.Sub) > MaxField || e.Expires < now.Unix() {
			t.Fatalf("accepted %+v from %+v", e, req)
		}
		if e.Sub != "" && (e.Before == nil || *e.Before <= 0) {
			t.Fatalf("subject entry without a time: %+v", e)
		}
	})
}
