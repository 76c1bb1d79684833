package revocation

import (
	"testing"
	"time"
)

func TestSetRevoked(t *testing.T) {
	at := func(sec int64) time.Time { return time.Unix(sec, 0) }
	t1000, t2000 := int64(1000), int64(2000)
	s := NewSet(500,
		[]Entry{{JTI: "j1"}, {Sub: "all"}, {Sub: "s", Before: &t1000}},
		[]Entry{{Sub: "s", Before: &t2000}, {JTI: "gone", Expires: 499}, {JTI: "last-second", Expires: 500}},
	)
	for _, tc := range []struct {
		jti, sub string
		iat      int64
		want     bool
	}{
		{"j1", "", 1, true},
		{"j2", "", 1, false},
		{"", "all", 1 << 40, true},
		{"", "s", 1999, true}, // the later of the subject's two times wins
		{"", "s", 2000, false},
		{"gone", "", 1, false}, // expired before the snapshot was built
		{"last-second", "", 1, true},
		{"", "", 1, false},
		{"all", "j1", 1, false}, // a subject is not a jti, nor the reverse
	} {
		if got := s.Revoked(tc.jti, tc.sub, at(tc.iat)); got != tc.want {
			t.Errorf("Revoked(%q, %q, %d) = %v, want %v", tc.jti, tc.sub, tc.iat, got, tc.want)
		}
	}
	if n := len(s.Entries()); n != 5 {
		t.Errorf("%d entries, want the 5 unexpired ones", n)
	}
	if NewSet(0).Revoked("x", "y", at(1)) {
		t.Error("an empty set revoked something")
	}
}

func TestSetRevokedDoesNotAllocate(t *testing.T) {
	before := int64(10)
	s := NewSet(0, []Entry{{JTI: "j"}, {Sub: "s", Before: &before}})
	iat := time.Unix(5, 0)
	if n := testing.AllocsPerRun(100, func() { s.Revoked("miss", "s", iat) }); n != 0 {
		t.Fatalf("%v allocations per lookup", n)
	}
}

func TestMemoryKeepsTheStrongerRevocation(t *testing.T) {
	m := NewMemory()
	t100, t200 := int64(100), int64(200)
	m.Add(Entry{Sub: "s", Before: &t200, Expires: 50}, 0)
	m.Add(Entry{Sub: "s", Before: &t100, Expires: 90}, 0) // earlier time, later expiry
	m.Add(Entry{JTI: "old", Expires: 10}, 0)
	list := m.List()
	if len(list) != 2 {
		t.Fatalf("entries %+v", list)
	}
	for _, e := range list {
		if e.Sub == "s" && (*e.Before != 200 || e.Expires != 90) {
			t.Fatalf("subject entry %+v, want before 200 and expiry 90", e)
		}
	}
	m.Add(Entry{JTI: "new", Expires: 100}, 20) // forgets "old"
	for _, e := range m.List() {
		if e.JTI == "old" {
			t.Fatal("expired entry kept")
		}
	}
}
