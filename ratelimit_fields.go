package sechard

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unsafe"

	"github.com/dunglas/httpsfv"
)

// The RateLimit-Policy and RateLimit fields (draft-ietf-httpapi-ratelimit-
// headers-10) are structured-field Lists (RFC 9651) with one Item per
// budget a request spends: the policy's name, a String, with parameters.
// What is fixed for a limit (the quoted name and the policy member) is
// serialised once, by httpsfv, when the config is provisioned; the numbers
// of each request are appended to those bytes without allocating.

// policyFields serialises a limit's name as a structured-field String
// (quoted and escaped) and its RateLimit-Policy member, `"name";q=N;w=W`
// (W in seconds, rounded up). A name a String cannot hold (outside
// printable ASCII) is an error.
func policyFields(name string, spec *RateSpec) (quotedName, policy string, err error) {
	quotedName, err = httpsfv.Marshal(httpsfv.NewItem(name))
	if err != nil {
		return "", "", fmt.Errorf("a RateLimit policy name must be printable ASCII: %w", err)
	}
	item := httpsfv.NewItem(name)
	item.Params.Add("q", int64(spec.Events))
	item.Params.Add("w", ceilSeconds(int64(spec.Window)))
	if policy, err = httpsfv.Marshal(item); err != nil {
		return "", "", fmt.Errorf("RateLimit-Policy: %w", err)
	}
	return quotedName, policy, nil
}

// appendPolicies appends the RateLimit-Policy list members of sp to b.
func appendPolicies(b []byte, sp *spending) []byte {
	for i := range sp.n {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, sp.limits[i].policy...)
	}
	return b
}

// appendRateLimitItems appends the RateLimit list members of sp to b.
func appendRateLimitItems(b []byte, sp *spending) []byte {
	for i := range sp.n {
		if i > 0 {
			b = append(b, ", "...)
		}
		res := &sp.budgets[i].Result
		b = append(b, sp.limits[i].quotedName...)
		b = append(b, ";r="...)
		b = strconv.AppendInt(b, res.Remaining, 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, ceilSeconds(int64(res.ResetAfter)), 10)
	}
	return b
}

// ceilSeconds converts nanoseconds to whole seconds, rounding up.
func ceilSeconds(ns int64) int64 {
	if ns <= 0 {
		return 0
	}
	return (ns + int64(time.Second) - 1) / int64(time.Second)
}

// rlFields holds the RateLimit-Policy and RateLimit values of one request,
// so that the rate-limit steps set them without allocating: the
// per-address step writes both, and the identity step, after auth, adds
// its policy to the same values.
type rlFields struct {
	policy, value rlField
}

// rlField is one header field's value, built in a per-request arena.
//
// A value handed to the header map is a string over the arena's bytes
// [start, end). Bytes are only ever written at or after end, and end only
// grows, so no byte under a string given out is ever written again:
// every such string stays immutable, as Go requires of strings. A value
// that does not fit in the arena is built on the heap as usual. The arena
// lives in the request's gateScratch, which those strings keep alive for
// as long as the header map holds them.
type rlField struct {
	vals       [1]string // the header map's []string for this field
	start, end int       // the value in the arena is buf[start:end]
	buf        [rlFieldArena]byte
}

// rlFieldArena is the room for one field's value: a route, total and
// identity policy with everyday names and numbers (about 70 bytes); longer
// values go to the heap.
const rlFieldArena = 128

// current reports whether vals is the field's value in hdr and still the
// arena's latest value, which can then be extended in place.
func (f *rlField) current(vals []string) bool {
	return len(vals) == 1 && &vals[0] == &f.vals[0] && f.end > f.start &&
		unsafe.StringData(f.vals[0]) == &f.buf[f.start] && len(f.vals[0]) == f.end-f.start
}

// extend returns a buffer holding the field's current value in hdr,
// followed by ", " when there is one, to append list members to; fresh
// true starts an empty value.
func (f *rlField) extend(hdr http.Header, k string, fresh bool) []byte {
	old := hdr[k]
	if !fresh && f.current(old) {
		return append(f.buf[f.start:f.end], ", "...)
	}
	f.start = f.end
	b := f.buf[f.start:f.end]
	if !fresh && len(old) == 1 {
		b = append(append(b, old[0]...), ", "...)
	}
	return b
}

// set makes b, returned by extend and appended to, the field's value in
// hdr.
func (f *rlField) set(hdr http.Header, k string, b []byte) {
	if len(b) > 0 && f.start < len(f.buf) && &b[0] == &f.buf[f.start] {
		// Still in the arena: b only wrote at or after f.end.
		f.end = f.start + len(b)
		f.vals[0] = unsafe.String(&f.buf[f.start], len(b))
	} else {
		// append moved b to the heap, where nothing else holds it and
		// nothing writes to it again (the next extend copies): no second
		// copy needed.
		f.vals[0] = unsafe.String(unsafe.SliceData(b), len(b))
		f.start, f.end = len(f.buf), len(f.buf) // the arena holds no current value
	}
	hdr[k] = f.vals[:]
}
