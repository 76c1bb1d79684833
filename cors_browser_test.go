package sechard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// fetchResult is what the page's fetch() reports back.
type fetchResult struct {
	OK         bool            `json:"ok"`
	Error      string          `json:"error"`
	Status     int             `json:"status"`
	Body       json.RawMessage `json:"body"`
	RequestID  string          `json:"requestID"`
	NotExposed *string         `json:"notExposed"`
}

// TestCORSInRealBrowser proves the allowlist where it matters: in a real
// browser (headless Chromium), which enforces CORS on fetch(). Pages are
// served from two loopback origins (one allowed, one not); the API is
// Caddy + sechard on a third.
func TestCORSInRealBrowser(t *testing.T) {
	chromium := requireTool(t, "chromium", "chromium-browser")

	page := func() *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, "<!doctype html><title>sechard cors test page</title><p>page")
		}))
		t.Cleanup(s.Close)
		return s
	}
	allowedPage, evilPage := page(), page() // http://127.0.0.1:P1, http://127.0.0.1:P3

	up := startUpstream(t)
	up.Handler = func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/star": // a permissive upstream; sechard must not let it speak
			w.Header().Set("Access-Control-Allow-Origin", "*")
		case "/v1/reflect":
			w.Header().Set("Access-Control-Allow-Origin", r.Header.Get("Origin"))
			w.Header().Set("Access-Control-Allow-Credentials", "true")
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Not-Exposed", "secret")
		json.NewEncoder(w).Encode(map[string]string{
			"path": r.URL.Path, "method": r.Method, "cookie": r.Header.Get("Cookie"),
			"authorization": r.Header.Get("Authorization"),
		})
	}
	plainPort := freePort(t)
	api := startCaddy(t, fmt.Sprintf(`http://127.0.0.1:{PORT} {
	sechard {
		cors {
			origins %[1]s
			credentials
		}
	}
	reverse_proxy %[2]s
}

http://127.0.0.1:%[3]d {
	sechard {
		cors {
			origins %[1]s
		}
	}
	reverse_proxy %[2]s
}`, allowedPage.URL, up.Addr, plainPort))
	credAPI, plainAPI := api.URL, fmt.Sprintf("http://127.0.0.1:%d", plainPort)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	// The first Run starts the browser, which lives as long as that call's
	// context: no timeout on it, a watchdog instead.
	watchdog := time.AfterFunc(30*time.Second, cancelBrowser)
	// A cookie for the API host: browsers share cookies across ports, and
	// these origins are same-site, so SameSite=Lax does not stop it.
	err := chromedp.Do(browserCtx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, network.SetCookie, network.SetCookieParams{Name: "session", Value: "s3cret", URL: credAPI})
		return err
	}))
	if !watchdog.Stop() || err != nil {
		t.Fatalf("starting chromium and setting a cookie: %v", err)
	}

	// run loads pageURL in a new tab and awaits the result of fetch(url, init).
	run := func(t *testing.T, pageURL, url, init string) fetchResult {
		t.Helper()
		tab, cancelTab := chromedp.NewContext(browserCtx)
		defer cancelTab()
		ctx, cancel := context.WithTimeout(tab, 15*time.Second)
		defer cancel()
		js := fmt.Sprintf(`(async () => {
			try {
				const r = await fetch(%q, %s);
				const body = await r.json();
				return {ok: true, status: r.status, body: body,
					requestID: r.headers.get("X-Request-ID") || "", notExposed: r.headers.get("X-Not-Exposed")};
			} catch (e) {
				return {ok: false, error: e.name + ": " + e.message};
			}
		})()`, url, init)
		if err := chromedp.Do(ctx, chromedp.Navigate(pageURL+"/")); err != nil {
			t.Fatalf("loading %s: %v", pageURL, err)
		}
		res, err := chromedp.Run(ctx, chromedp.Evaluate[fetchResult](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("fetch %s from %s: %v", url, pageURL, err)
		}
		return res
	}
	var body struct{ Path, Method, Cookie, Authorization string }

	const preflightedPOST = `{method: "POST", headers: {"Authorization": "Bearer browser-token",
		"X-Request-ID": "browser-req-1", "Content-Type": "application/json"}, body: JSON.stringify({q: 1})}`

	t.Run("allowed origin reads a preflighted POST and the exposed X-Request-ID", func(t *testing.T) {
		res := run(t, allowedPage.URL, plainAPI+"/v1/query", preflightedPOST)
		if !res.OK || res.Status != 200 {
			t.Fatalf("fetch failed: %+v", res)
		}
		if err := json.Unmarshal(res.Body, &body); err != nil || body.Method != "POST" || body.Path != "/v1/query" || body.Authorization != "Bearer browser-token" {
			t.Fatalf("body %s (%v)", res.Body, err)
		}
		last := up.Last()
		if res.RequestID == "" || res.RequestID != last.Header.Get("X-Request-ID") {
			t.Errorf("page read X-Request-ID %q; upstream saw %q", res.RequestID, last.Header.Get("X-Request-ID"))
		}
		if res.NotExposed != nil {
			t.Errorf("page read a header that is not exposed: %q", *res.NotExposed)
		}
		if last.Header.Get("Cookie") != "" {
			t.Errorf("a request without credentials carried a cookie")
		}
	})
	t.Run("disallowed origin's preflighted POST fails and never reaches the upstream", func(t *testing.T) {
		before := up.Count()
		res := run(t, evilPage.URL, plainAPI+"/v1/query", preflightedPOST)
		if res.OK || !strings.HasPrefix(res.Error, "TypeError") {
			t.Fatalf("fetch from a disallowed origin: %+v", res)
		}
		if up.Count() != before {
			t.Fatal("the POST reached the upstream after a refused preflight")
		}
	})
	t.Run("disallowed origin cannot read a simple GET", func(t *testing.T) {
		res := run(t, evilPage.URL, plainAPI+"/v1/public", `{}`)
		if res.OK || !strings.HasPrefix(res.Error, "TypeError") {
			t.Fatalf("fetch from a disallowed origin: %+v", res)
		}
	})
	t.Run("disallowed origin cannot read a simple GET whose upstream sends *", func(t *testing.T) {
		res := run(t, evilPage.URL, plainAPI+"/v1/star", `{}`)
		if res.OK || !strings.HasPrefix(res.Error, "TypeError") {
			t.Fatalf("fetch from a disallowed origin: %+v", res)
		}
	})
	t.Run("allowed origin reads a GET whose upstream sends *", func(t *testing.T) {
		res := run(t, allowedPage.URL, plainAPI+"/v1/star", `{}`)
		if !res.OK || res.Status != 200 {
			t.Fatalf("fetch from the allowed origin: %+v", res)
		}
	})
	t.Run("credentials: disallowed origin cannot read when the upstream reflects Origin", func(t *testing.T) {
		res := run(t, evilPage.URL, credAPI+"/v1/reflect", `{credentials: "include"}`)
		if res.OK || !strings.HasPrefix(res.Error, "TypeError") {
			t.Fatalf("credentialed fetch from a disallowed origin: %+v", res)
		}
	})
	t.Run("credentials: allowed origin sends the cookie and reads the response", func(t *testing.T) {
		res := run(t, allowedPage.URL, credAPI+"/v1/me", `{credentials: "include"}`)
		if !res.OK || res.Status != 200 {
			t.Fatalf("credentialed fetch failed: %+v", res)
		}
		if err := json.Unmarshal(res.Body, &body); err != nil || body.Cookie != "session=s3cret" {
			t.Fatalf("body %s (%v)", res.Body, err)
		}
		if got := up.Last().Header.Get("Cookie"); got != "session=s3cret" {
			t.Fatalf("upstream saw Cookie %q", got)
		}
	})
	t.Run("credentials: preflighted credentialed POST from the allowed origin", func(t *testing.T) {
		res := run(t, allowedPage.URL, credAPI+"/v1/query", strings.Replace(preflightedPOST, "{method", `{credentials: "include", method`, 1))
		if !res.OK || res.Status != 200 || up.Last().Header.Get("Cookie") != "session=s3cret" {
			t.Fatalf("credentialed preflighted fetch: %+v", res)
		}
	})
	t.Run("credentials: disallowed origin cannot read a cookie-bearing response", func(t *testing.T) {
		res := run(t, evilPage.URL, credAPI+"/v1/me", `{credentials: "include"}`)
		if res.OK || !strings.HasPrefix(res.Error, "TypeError") {
			t.Fatalf("credentialed fetch from a disallowed origin: %+v", res)
		}
	})
	t.Run("credentials not configured: the browser refuses a credentialed read", func(t *testing.T) {
		res := run(t, allowedPage.URL, plainAPI+"/v1/me", `{credentials: "include"}`)
		if res.OK || !strings.HasPrefix(res.Error, "TypeError") {
			t.Fatalf("credentialed fetch without Access-Control-Allow-Credentials: %+v", res)
		}
	})
}
