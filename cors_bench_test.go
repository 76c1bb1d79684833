package sechard

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

func benchCORS(b *testing.B, method string, hdr http.Header, wantStatus int) {
	origins := make([]string, 0, 500)
	for i := range 499 {
		origins = append(origins, fmt.Sprintf("https://app%d.example.com", i))
	}
	origins = append(origins, appOrigin)
	h, _ := mustProvisionCORS(b, &CORS{Origins: origins, Credentials: true})
	r := httptest.NewRequest(method, "/v1/things", nil)
	r.Header = hdr
	w := &benchWriter{h: make(http.Header, 16)}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		ex := exchange{w: w, r: r, requestID: "req-1"}
		d := h.CORS.decide(&ex)
		if d.Status != wantStatus {
			b.Fatalf("status %d", d.Status)
		}
		h.conclude(&ex, h.CORS, d)
	}
}

func BenchmarkCORSAllowedSimpleRequest(b *testing.B) {
	benchCORS(b, "GET", http.Header{"Origin": {appOrigin}}, 0)
}

func BenchmarkCORSDisallowedSimpleRequest(b *testing.B) {
	benchCORS(b, "GET", http.Header{"Origin": {"https://app.example.com.evil.com"}}, 0)
}

func BenchmarkCORSNoOrigin(b *testing.B) {
	benchCORS(b, "GET", http.Header{}, 0)
}

func BenchmarkCORSPreflightAllowed(b *testing.B) {
	benchCORS(b, "OPTIONS", http.Header{"Origin": {appOrigin}, "Access-Control-Request-Method": {"POST"},
		"Access-Control-Request-Headers": {"authorization,content-type,x-request-id"}}, 204)
}

func BenchmarkCORSPreflightMegabyteOfCommas(b *testing.B) {
	huge := make([]byte, 1<<20)
	for i := range huge {
		huge[i] = ','
	}
	benchCORS(b, "OPTIONS", http.Header{"Origin": {appOrigin}, "Access-Control-Request-Method": {"POST"},
		"Access-Control-Request-Headers": {string(huge)}}, 403)
}

// BenchmarkCORSBaselineHeaderWrites is the floor the figures above sit on:
// clearing the reused header map and writing the four header entries an
// allowed simple request gets, with no CORS logic at all.
func BenchmarkCORSBaselineHeaderWrites(b *testing.B) {
	w := &benchWriter{h: make(http.Header, 16)}
	vals := []string{"Origin", appOrigin, "true", defaultExpose}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		hdr := w.Header()
		hdr["Vary"] = vals[0:1:1]
		hdr["Access-Control-Allow-Origin"] = vals[1:2:2]
		hdr["Access-Control-Allow-Credentials"] = vals[2:3:3]
		hdr["Access-Control-Expose-Headers"] = vals[3:4:4]
	}
}
