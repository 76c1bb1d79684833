package sechard

// The end-to-end harness: tests run the real Caddy binary built from
// ./cmd/caddy, each on its own free ports, so they never collide with a
// developer's Caddy or with each other. Redis tests run real redis-server
// processes the same way (startRedis). Also here: Caddy's admin API run in
// this test process, and helpers that send requests to a running Caddy and
// read its answers (statuses, metrics, config, event logs).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sechard/sechard/internal/redistest"
)

var (
	buildOnce sync.Once
	caddyBin  string
	buildErr  error
)

// skipShort skips a test under -short when it needs an outside component
// (the Caddy binary, redis-server, chromium): `go test -short` is the quick
// loop of unit tests and fuzz seed corpora. Only this decides a skip, so the
// full run never skips.
func skipShort(t testing.TB, component string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: needs %s; the full run (go test ./...) runs it", component)
	}
}

// caddyBinary builds ./cmd/caddy once per test process and returns its path;
// with -race when the tests run with it. Under -short the test skips.
func caddyBinary(t testing.TB) string {
	t.Helper()
	skipShort(t, "the Caddy binary")
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sechard-bin-")
		if err != nil {
			buildErr = err
			return
		}
		caddyBin = filepath.Join(dir, "caddy")
		args := []string{"build", "-o", caddyBin}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, "./cmd/caddy")...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building caddy: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return caddyBin
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// freePort returns a loopback TCP port that was free a moment ago and that
// no other test of this process was given. Tests run in parallel, and Caddy
// listens with SO_REUSEPORT: two Caddys given one port would both bind it
// and share its connections.
func freePort(t testing.TB) int {
	t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		portsMu.Lock()
		given := portsGiven[port]
		portsGiven[port] = true
		portsMu.Unlock()
		if !given {
			return port
		}
	}
}

// caddyServer is one running Caddy process.
type caddyServer struct {
	t         testing.TB
	cmd       *exec.Cmd
	dir       string
	AdminAddr string // host:port of the admin API
	Port      int    // a free port reserved for the test's site; use it in the Caddyfile as {PORT}
	URL       string // http://127.0.0.1:Port
	globals   string
	logs      *logBuffer
	exited    chan struct{}
	client    *http.Client // this server's own connections: see newTestClient
	reloaded  time.Time    // when Reload last returned
}

// caddyOptions tune startCaddy.
type caddyOptions struct {
	// Globals are extra lines for the global options block.
	Globals string
	// Env holds extra environment variables (KEY=value) for the process.
	Env []string
	// ExpectFail: the process is expected to exit with an error at startup;
	// startCaddy then waits for the exit instead of readiness.
	ExpectFail bool
}

// startCaddy runs the built Caddy with the given site config. Every "{PORT}"
// in site is replaced by s.Port. The process is stopped at the end of the test.
func startCaddy(t testing.TB, site string, opts ...caddyOptions) *caddyServer {
	t.Helper()
	var o caddyOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	bin := caddyBinary(t)
	s := &caddyServer{
		t:         t,
		dir:       t.TempDir(),
		AdminAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		Port:      freePort(t),
		globals:   o.Globals,
		logs:      &logBuffer{},
		exited:    make(chan struct{}),
		client:    newTestClient(),
	}
	s.URL = fmt.Sprintf("http://127.0.0.1:%d", s.Port)
	cfgPath := filepath.Join(s.dir, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(s.caddyfile(site)), 0o600); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(bin, "run", "--config", cfgPath, "--adapter", "caddyfile")
	s.cmd.Env = append(os.Environ(),
		"HOME="+s.dir, "XDG_DATA_HOME="+s.dir, "XDG_CONFIG_HOME="+s.dir)
	s.cmd.Env = append(s.cmd.Env, o.Env...)
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(s.Stop)

	if o.ExpectFail {
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("caddy did not exit; logs:\n%s", s.logs.String())
		}
		return s
	}
	s.waitReady()
	return s
}

// waitReady waits until the admin API answers; it fails the test if the
// process exits first or is not ready within 30 s.
func (s *caddyServer) waitReady() {
	s.t.Helper()
	ready := poll(30*time.Second, 20*time.Millisecond, func() bool {
		select {
		case <-s.exited:
			return true
		default:
		}
		resp, err := http.Get("http://" + s.AdminAddr + "/config/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if _, exited := s.ExitCode(); exited {
		s.t.Fatalf("caddy exited at startup: %v; logs:\n%s", s.cmd.ProcessState, s.logs.String())
	}
	if !ready {
		s.t.Fatalf("caddy not ready after 30s; logs:\n%s", s.logs.String())
	}
}

// caddyfile puts the harness's global options in front of site.
func (s *caddyServer) caddyfile(site string) string {
	return fmt.Sprintf(`{
	admin %s
	auto_https off
	storage file_system %s
	log {
		output stderr
		format json
		level DEBUG
	}
%s
}

%s
`, s.AdminAddr, filepath.Join(s.dir, "data"), s.globals, strings.ReplaceAll(site, "{PORT}", fmt.Sprint(s.Port)))
}

// Stop ends the process (idempotent).
func (s *caddyServer) Stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.client.CloseIdleConnections()
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	// A race-built Caddy reports data races on stderr (and exits 66).
	if logs := s.logs.String(); strings.Contains(logs, "WARNING: DATA RACE") {
		i := strings.Index(logs, "WARNING: DATA RACE")
		s.t.Errorf("the Caddy process reported a data race:\n%s", logs[i:min(len(logs), i+6000)])
	}
}

// Exited reports whether the process has ended, and its exit code.
func (s *caddyServer) ExitCode() (code int, exited bool) {
	select {
	case <-s.exited:
		return s.cmd.ProcessState.ExitCode(), true
	default:
		return 0, false
	}
}

// Reload loads a new site config through the admin API, as `caddy reload`
// does. It returns the admin API's error, if any.
func (s *caddyServer) Reload(site string) error {
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.AdminAddr+"/load", strings.NewReader(s.caddyfile(site)))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reload: %s: %s", resp.Status, body)
	}
	// The old config's server closes its idle connections as it stops; a
	// request on one of them would read EOF. Start afresh, as a client
	// that saw the connection close would.
	s.client.CloseIdleConnections()
	s.reloaded = time.Now()
	return nil
}

// Get sends a GET with optional header pairs ("Name", "value", ...).
func (s *caddyServer) Get(path string, headerPairs ...string) *http.Response {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	for i := 0; i+1 < len(headerPairs); i += 2 {
		req.Header.Add(headerPairs[i], headerPairs[i+1])
	}
	return s.Do(req)
}

// Do sends req and reads the body into memory (available via readBody).
func (s *caddyServer) Do(req *http.Request) *http.Response {
	s.t.Helper()
	resp, err := s.client.Do(req)
	if err != nil && s.droppedByReload(req, err) {
		resp, err = s.client.Do(req)
	}
	if err != nil {
		logs := s.Logs()
		s.t.Fatalf("%s %s: %v; caddy's last log lines:\n%s", req.Method, req.URL, err, logs[max(0, len(logs)-3000):])
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp
}

// noRedirectClient is for requests outside a caddyServer's Get and Do.
var noRedirectClient = newTestClient()

// droppedByReload reports whether a request that failed with err was one
// that the reload just before it dropped, and rewinds its body to send it
// again. Caddy binds a new SO_REUSEPORT socket for the new config and
// closes the old one once the old server's shutdown runs, which /load does
// not wait for: a connection the kernel queued on the old socket in between
// is reset without being served (a real client retries it).
func (s *caddyServer) droppedByReload(req *http.Request, err error) bool {
	if time.Since(s.reloaded) > 5*time.Second || !(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		return false
	}
	if req.Body == nil {
		return true
	}
	if req.GetBody == nil {
		return false
	}
	body, bodyErr := req.GetBody()
	req.Body = body
	return bodyErr == nil
}

// newTestClient returns a client that does not follow redirects, with a
// connection pool of its own: each caddyServer has one, so that a reload in
// one test, which drops its idle connections, touches no other test's.
func newTestClient() *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     http.DefaultTransport.(*http.Transport).Clone(),
	}
}

// readBody returns the body of a response from Do.
func readBody(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return string(b)
}

// Logs returns everything the process printed so far.
func (s *caddyServer) Logs() string { return s.logs.String() }

// LogEntries parses the JSON log lines printed so far; other lines are skipped.
func (s *caddyServer) LogEntries() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.logs.String()))
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// WaitLog waits until a log entry satisfies match and returns it.
func (s *caddyServer) WaitLog(match func(map[string]any) bool, timeout time.Duration) map[string]any {
	s.t.Helper()
	var found map[string]any
	if !poll(timeout, 20*time.Millisecond, func() bool {
		for _, e := range s.LogEntries() {
			if match(e) {
				found = e
				return true
			}
		}
		return false
	}) {
		s.t.Fatalf("no matching log entry within %v; logs:\n%s", timeout, s.Logs())
	}
	return found
}

var syncLogsSeq atomic.Int64

// SyncLogs returns once every line the process logged before the call is in
// Logs: it sends a marked request to the admin API, which logs it, and waits
// for that line, written after all earlier ones. Tests that check a line is
// absent, or count lines, call it instead of sleeping.
func (s *caddyServer) SyncLogs() {
	s.t.Helper()
	uri := fmt.Sprintf("/config/?sync=%d", syncLogsSeq.Add(1))
	resp, err := http.Get("http://" + s.AdminAddr + uri)
	if err != nil {
		s.t.Fatalf("SyncLogs: %v", err)
	}
	resp.Body.Close()
	s.WaitLog(func(e map[string]any) bool { return e["logger"] == "admin.api" && e["uri"] == uri }, 10*time.Second)
}

// runCaddy runs the built binary with args (e.g. "validate", "adapt") and
// returns its combined output and exit error.
func runCaddy(t testing.TB, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(caddyBinary(t), args...)
	dir := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// logBuffer is a goroutine-safe buffer for a process's output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// upstream is a test backend that records the last request it received.
type upstream struct {
	*http.Server
	URL  string
	Addr string
	mu   sync.Mutex
	last *http.Request
	n    int
	// Handler, when set, writes the response; default is 200 "upstream ok".
	Handler http.HandlerFunc
}

// startUpstream starts a recording backend on a free loopback port.
func startUpstream(t testing.TB) *upstream {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{Addr: l.Addr().String()}
	u.URL = "http://" + u.Addr
	u.Server = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.last = r.Clone(r.Context())
		u.n++
		h := u.Handler
		u.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		io.WriteString(w, "upstream ok")
	})}
	go u.Serve(l)
	t.Cleanup(func() { u.Close() })
	return u
}

// Last returns the last request the upstream received (nil if none).
func (u *upstream) Last() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

// Count returns how many requests the upstream received.
func (u *upstream) Count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n
}

// requireTool finds a program the tests need (redis-server, chromium). Under
// -short the test skips; in the full run a missing tool fails the test, since
// a silent skip would hide a broken pipeline.
func requireTool(t testing.TB, names ...string) string {
	t.Helper()
	skipShort(t, names[0])
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatalf("%s not found on PATH (bash .ci/run installs it; go test -short skips the tests that need it)", names[0])
	return ""
}

// redisServer is a real redis-server (or Sentinel) process on loopback
// (internal/redistest), with its URL.
type redisServer struct {
	*redistest.Server
	URL string // redis://127.0.0.1:port/0
}

// redisOptions tune startRedis: Port (0 picks a free one), Extra
// arguments, the whole command line (Args), and the Ready check.
type redisOptions = redistest.Options

// startRedis starts a redis-server for the test, by default a fresh, empty,
// non-persistent one on a free port, and waits until it answers. It is
// killed at the end of the test. Under -short the test skips; in the full
// run a missing redis-server fails it.
func startRedis(t testing.TB, opts ...redisOptions) *redisServer {
	t.Helper()
	var o redisOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Port == 0 {
		o.Port = freePort(t) // one no Caddy of this process is given
	}
	s := redistest.Start(t, o)
	return &redisServer{Server: s, URL: "redis://" + s.Addr + "/0"}
}

// startRedisWithPassword starts a fresh redis-server that requires password.
func startRedisWithPassword(t testing.TB, password string) *redisServer {
	t.Helper()
	return startRedis(t, redisOptions{
		Extra: []string{"--requirepass", password},
		Ready: redisPingsWith(&redis.Options{Password: password}),
	})
}

// redisPingsWith is a Ready check for servers a plain PING cannot reach
// (password, TLS, unix socket): a client with opts answers PING. opts.Addr
// defaults to the server's address.
func redisPingsWith(opts *redis.Options) func(addr string) bool {
	return func(addr string) bool {
		o := *opts
		if o.Addr == "" {
			o.Addr = addr
		}
		c := redis.NewClient(&o)
		defer c.Close()
		return c.Ping(context.Background()).Err() == nil
	}
}

// redisClient returns a plain client for inspecting a test Redis at addr,
// closed at the end of the test.
func redisClient(t testing.TB, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

// Caddy's admin API in this test process.

// startInProcessAdmin runs Caddy's real admin endpoint in this test process
// (with every registered admin.api.* module, sechard's included), so tests
// can reach the Revocation instances they provisioned here. It stops at the
// end of the test.
func startInProcessAdmin(t *testing.T) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := fmt.Sprintf(`{"admin": {"listen": %q, "config": {"persist": false}}}`, addr)
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { caddy.Stop() })
	return addr
}

// adminDo sends method with body (JSON, if any) to the revocations endpoint
// of the admin API at addr and returns the status and body.
func adminDo(t *testing.T, addr, method, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+"/sechard/revocations", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Requests to a running Caddy, and checks on what it answers: raw requests,
// statuses, metrics, config and event logs.

// rawGet sends a GET with the request target exactly as given, over a raw
// socket (no client library cleans or re-encodes it).
func rawGet(t *testing.T, s *caddyServer, target string, hdr ...string) (*http.Response, string) {
	t.Helper()
	host := strings.TrimPrefix(s.URL, "http://")
	c, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", target, host)
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %q: %v", target, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// scrape GETs path (served by Caddy's `metrics` handler) with a valid
// request ID, so the scrape itself counts as no replaced ID.
func scrape(t testing.TB, s *caddyServer, path string) metricSet {
	t.Helper()
	resp := s.Get(path, "X-Request-ID", "scrape")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, readBody(resp))
	}
	return parseMetrics(t, readBody(resp))
}

// serverNames maps each listen port to the Caddy server name, read from the
// running config (the Caddyfile adapter names servers srv0, srv1, ...).
func serverNames(t testing.TB, s *caddyServer) map[int]string {
	t.Helper()
	resp, err := http.Get("http://" + s.AdminAddr + "/config/apps/http/servers")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var servers map[string]struct {
		Listen []string `json:"listen"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&servers); err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for name, srv := range servers {
		for _, l := range srv.Listen {
			p, _ := strconv.Atoi(l[strings.LastIndexByte(l, ':')+1:])
			out[p] = name
		}
	}
	return out
}

// eventLogs returns the events app's debug lines for the named event.
func eventLogs(s *caddyServer, name string) []map[string]any {
	var out []map[string]any
	for _, e := range s.LogEntries() {
		if e["logger"] == "events" && e["msg"] == "event" && e["name"] == name {
			out = append(out, e)
		}
	}
	return out
}

// scrapeAdmin GETs a path of the admin API.
func scrapeAdmin(t *testing.T, s *caddyServer, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + s.AdminAddr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// requireStatus GETs /data with token as a bearer token and fails the test
// unless the status is want (and a 401 names error="invalid_token").
func requireStatus(t *testing.T, s *caddyServer, token string, want int) {
	t.Helper()
	resp := s.Get("/data", "Authorization", "Bearer "+token)
	if resp.StatusCode != want {
		t.Fatalf("GET with token: %d %q, want %d", resp.StatusCode, readBody(resp), want)
	}
	if want == http.StatusUnauthorized && !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("WWW-Authenticate %q, want error=\"invalid_token\"", resp.Header.Get("WWW-Authenticate"))
	}
}
