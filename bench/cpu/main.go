// Command cpu measures what sechard costs per request the way a user would:
// CPU time of the Caddy process per request under load, Caddy pinned to one
// core (GOMAXPROCS=1) and wrk to the other, in interleaved rounds, for bare
// `respond`, Caddy's own `header` directive sending the same bytes as
// sechard's core chain, the core chain, and the full chain with auth in its
// audit modes and in report mode. Every site writes Caddy's access log (to
// /dev/null), as a production edge does: with `audit_allows log` an allowed
// request then writes two lines, with `access_log` one. Every response of
// every round must be a 200. Not part of CI: it needs a quiet two-core
// machine and `wrk`.
//
//	go run ./bench/cpu                    # 8 rounds of 3 s per config, about 3 minutes
//	go run ./bench/cpu -rounds 4 -d 2s
//
// On a machine whose speed drifts from second to second (a shared VM),
// -paired measures each config side by side with the static-header one,
// both loaded at once on the same core, and reports those ratios:
//
//	go run ./bench/cpu -paired           # 8 rounds of 5 pairs of 3 s, about 2.5 minutes
//
// With -profile, it instead loads one config (by its name's first word:
// bare, static, core, log, access_log or report) for 20 s, takes a 15 s CPU
// profile from Caddy's admin endpoint, and keeps it with the binary:
//
//	go run ./bench/cpu -profile core
//	go tool pprof -top -cum /tmp/sechard-cpu/caddy /tmp/sechard-cpu/core.pb
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	rounds   = flag.Int("rounds", 8, "interleaved rounds, every other one in reverse order")
	duration = flag.Duration("d", 3*time.Second, "load per config per round")
	conns    = flag.Int("c", 16, "wrk connections")
	paired   = flag.Bool("paired", false, "measure each config side by side with the static-header one, for a machine whose speed drifts")
	profile  = flag.String("profile", "", "profile one config instead: bare, static, core, log, access_log or report")
	noLog    = flag.Bool("no-access-log", false, "sites without Caddy's access log (by default every site logs, as a production edge does)")
)

// config is one Caddy under test.
type config struct {
	name  string
	key   string // -profile's name for it
	site  string // the site block's body; {PORT} is filled in
	port  int
	cmd   *exec.Cmd
	cpu   []float64 // µs of CPU per request, per round
	pairs []float64 // -paired: CPU per request over the static config's, per round
	rates []float64
}

const origin = "https://app.example.com"

func main() {
	log.SetFlags(0)
	flag.Parse()
	for _, tool := range []string{"wrk", "taskset"} {
		if _, err := exec.LookPath(tool); err != nil {
			log.Fatalf("%s not found: apt-get install wrk util-linux", tool)
		}
	}
	dir, err := os.MkdirTemp("", "sechard-cpu-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "caddy")
	log.Printf("building ./cmd/caddy ...")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/caddy").CombinedOutput(); err != nil {
		log.Fatalf("build: %v\n%s", err, out)
	}
	pub, token := signingKey(dir)

	core := `sechard {
		cors {
			origins ` + origin + `
		}
		rate_limit {
			rate 1000000000/1s
		}
	}`
	full := func(extra, mode string) string {
		return `sechard {
		cors {
			origins ` + origin + `
			` + mode + `
		}
		rate_limit {
			rate 1000000000/1s
			` + mode + `
		}
		auth {
			jwt {
				public_key ` + pub + `
			}
			require read
			audit_allows ` + extra + `
			` + mode + `
		}
	}`
	}
	configs := []*config{
		{name: "bare respond", key: "bare", site: `respond "ok"`},
		{name: "static header directive", key: "static", site: ""}, // filled from the core chain's response
		{name: "sechard core chain", key: "core", site: core + "\n\trespond \"ok\""},
		{name: "full, audit_allows log", key: "log", site: full("log", "") + "\n\trespond \"ok\""},
		{name: "full, audit_allows access_log", key: "access_log", site: full("access_log", "") + "\n\trespond \"ok\""},
		{name: "full, mode report", key: "report", site: full("log", "mode report") + "\n\trespond \"ok\""},
	}
	hdr := []string{"Origin", origin, "Authorization", "Bearer " + token}

	defer func() {
		for _, c := range configs {
			if c.cmd != nil && c.cmd.Process != nil {
				c.cmd.Process.Kill()
			}
		}
	}()
	// The core chain first: its response headers become the static config.
	start(bin, dir, configs[2], *profile == configs[2].key)
	configs[1].site = staticHeaders(configs[2], hdr)
	if *profile != "" {
		profileOne(bin, dir, configs, hdr)
		return
	}
	for i, c := range configs {
		if i != 2 {
			start(bin, dir, c, false)
		}
		check(c, hdr)
	}

	if *paired {
		runPaired(configs, hdr)
		return
	}
	for r := 1; r <= *rounds; r++ {
		// Every other round runs the configs in reverse, so that a machine
		// slowing down or speeding up during a round favours none of them.
		order := slices.Clone(configs)
		if r%2 == 0 {
			slices.Reverse(order)
		}
		for _, c := range order {
			n, cpu, rate := measure(c, hdr)
			c.cpu = append(c.cpu, cpu/float64(n))
			c.rates = append(c.rates, rate)
		}
		log.Printf("round %d/%d done", r, *rounds)
	}

	fmt.Printf("\nCPU per request of the Caddy process (GOMAXPROCS=1, core 0; wrk -c%d on core 1), %d rounds of %s\n\n", *conns, *rounds, *duration)
	fmt.Printf("| config | µs CPU/request (median, min–max) | req/s (median) | × bare respond | × static header |\n|---|---|---|---|---|\n")
	for _, c := range configs {
		fmt.Printf("| %s | %.2f (%.2f–%.2f) | %.0f | %s | %s |\n", c.name, median(c.cpu), slices.Min(c.cpu), slices.Max(c.cpu), median(c.rates),
			ratio(c, configs[0]), ratio(c, configs[1]))
	}
}

// runPaired measures every config side by side with the static-header one:
// both Caddys share core 0 and are loaded at the same time by their own wrk
// on core 1, so both see the same machine, however fast it is that second.
// On a shared VM whose speed drifts from second to second, this is the
// ratio to trust; the absolute figures include the two processes' switching
// and are higher than in the interleaved runs.
func runPaired(configs []*config, hdr []string) {
	static := configs[1]
	for r := 1; r <= *rounds; r++ {
		for i, c := range configs {
			if i == 1 {
				continue
			}
			var sn, cn int
			var scpu, ccpu float64
			done := make(chan struct{})
			go func() {
				sn, scpu, _ = measure(static, hdr)
				close(done)
			}()
			cn, ccpu, _ = measure(c, hdr)
			<-done
			c.cpu = append(c.cpu, ccpu/float64(cn))
			c.pairs = append(c.pairs, (ccpu/float64(cn))/(scpu/float64(sn)))
			static.cpu = append(static.cpu, scpu/float64(sn))
		}
		log.Printf("round %d/%d done", r, *rounds)
	}
	bare := configs[0]
	fmt.Printf("\nCPU per request, each config side by side with the static-header one (both Caddys GOMAXPROCS=1 on core 0; a wrk -c%d each on core 1), %d rounds of %s\n\n", *conns, *rounds, *duration)
	fmt.Printf("| config | µs CPU/request (median, min–max) | × static header, side by side (median, min–max) | × bare respond |\n|---|---|---|---|\n")
	for i, c := range configs {
		if i == 1 {
			fmt.Printf("| %s | %.2f (%.2f–%.2f) | 1.00 | %s |\n", c.name, median(c.cpu), slices.Min(c.cpu), slices.Max(c.cpu), spread(inverse(bare.pairs)))
			continue
		}
		var overBare []float64
		for r := range c.pairs {
			overBare = append(overBare, c.pairs[r]/bare.pairs[r])
		}
		fmt.Printf("| %s | %.2f (%.2f–%.2f) | %s | %s |\n", c.name, median(c.cpu), slices.Min(c.cpu), slices.Max(c.cpu), spread(c.pairs), spread(overBare))
	}
}

func inverse(xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = 1 / x
	}
	return out
}

// measure loads c for one -d and returns the requests completed, the
// µs of CPU the Caddy process spent meanwhile, and the request rate.
func measure(c *config, hdr []string) (int, float64, float64) {
	before := cpuTicks(c.cmd.Process.Pid)
	n, rate := load(c, hdr)
	after := cpuTicks(c.cmd.Process.Pid)
	return n, float64(after-before) * 1e6 / float64(ticksPerSecond), rate
}

// ratio is the median over rounds of c's CPU per request over base's, with
// the spread: rounds are interleaved, so each round's ratio compares runs
// made moments apart.
func ratio(c, base *config) string {
	var rs []float64
	for i := range c.cpu {
		rs = append(rs, c.cpu[i]/base.cpu[i])
	}
	return spread(rs)
}

// spread is the median of xs, with their minimum and maximum.
func spread(xs []float64) string {
	return fmt.Sprintf("%.2f (%.2f–%.2f)", median(xs), slices.Min(xs), slices.Max(xs))
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// profileOne loads the config -profile names for 20 s and takes a 15 s CPU
// profile of it, kept in /tmp/sechard-cpu with the binary pprof reads it with.
func profileOne(bin, dir string, configs []*config, hdr []string) {
	i := slices.IndexFunc(configs, func(c *config) bool { return c.key == *profile })
	if i < 0 {
		log.Fatalf("-profile %q: want bare, static, core, log, access_log or report", *profile)
	}
	c := configs[i]
	if i != 2 { // the core chain is running already, with the admin endpoint
		start(bin, dir, c, true)
		check(c, hdr)
	}
	out := "/tmp/sechard-cpu"
	if err := os.MkdirAll(out, 0o755); err != nil {
		log.Fatal(err)
	}
	if data, err := os.ReadFile(bin); err != nil || os.WriteFile(filepath.Join(out, "caddy"), data, 0o755) != nil {
		log.Fatalf("keeping the binary: %v", err)
	}
	*duration = 20 * time.Second
	done := make(chan error, 1)
	go func() {
		time.Sleep(3 * time.Second)
		resp, err := http.Get("http://" + profileAdmin + "/debug/pprof/profile?seconds=15")
		if err == nil {
			defer resp.Body.Close()
			var data []byte
			if data, err = io.ReadAll(resp.Body); err == nil {
				err = os.WriteFile(filepath.Join(out, c.key+".pb"), data, 0o644)
			}
		}
		done <- err
	}()
	n, rate := load(c, hdr)
	if err := <-done; err != nil {
		log.Fatalf("profile: %v", err)
	}
	fmt.Printf("%s: %d requests, %.0f req/s\nprofile: %s (binary: %s)\n", c.name, n, rate,
		filepath.Join(out, c.key+".pb"), filepath.Join(out, "caddy"))
}

// profileAdmin is the admin endpoint of the profiled Caddy; the others run
// without one.
const profileAdmin = "127.0.0.1:2999"

// start runs c's Caddy on core 0 with GOMAXPROCS=1; with admin, Caddy's
// admin endpoint (and so pprof) listens on profileAdmin.
func start(bin, dir string, c *config, admin bool) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	c.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	site := c.site
	if !*noLog {
		site = "log {\n\t\toutput stderr\n\t}\n\t" + site
	}
	adminAddr := "off"
	if admin {
		adminAddr = profileAdmin
	}
	cfg := fmt.Sprintf("{\n\tadmin %s\n\tauto_https off\n\tlog {\n\t\tlevel INFO\n\t}\n}\n\nhttp://127.0.0.1:%d {\n\t%s\n}\n", adminAddr, c.port, site)
	path := filepath.Join(dir, fmt.Sprintf("Caddyfile.%d", c.port))
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		log.Fatal(err)
	}
	c.cmd = exec.Command("taskset", "-c", "0", bin, "run", "--config", path, "--adapter", "caddyfile")
	c.cmd.Env = append(os.Environ(), "GOMAXPROCS=1", "HOME="+dir)
	// Log lines are encoded and written, as in production, to /dev/null.
	c.cmd.Stdout, c.cmd.Stderr = devNull, devNull
	if err := c.cmd.Start(); err != nil {
		log.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", c.port)); err == nil {
			conn.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Fatalf("%s: caddy did not start:\n%s", c.name, cfg)
}

// check makes sure c answers 200 "ok" to the benchmark's request.
func check(c *config, hdr []string) http.Header {
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/api/q", c.port), nil)
	for i := 0; i < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatalf("%s: %v", c.name, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		log.Fatalf("%s: %d %q: the benchmark would measure refusals", c.name, resp.StatusCode, body)
	}
	return resp.Header
}

// staticHeaders is a site that sends the core chain's response headers with
// Caddy's own header directive: the same bytes on the wire.
func staticHeaders(core *config, hdr []string) string {
	h := check(core, hdr)
	var b strings.Builder
	b.WriteString("header {\n")
	for k, vs := range h {
		switch k {
		case "Date", "Content-Length", "Content-Type", "Server":
			continue
		}
		for _, v := range vs {
			fmt.Fprintf(&b, "\t\t+%s %q\n", k, v)
		}
	}
	b.WriteString("\t\t-Server\n\t}\n\trespond \"ok\"")
	return b.String()
}

var (
	reqsRE    = regexp.MustCompile(`(\d+) requests in`)
	rateRE    = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	non2xxRE  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	sockErrRE = regexp.MustCompile(`Socket errors: .*`)
)

// load runs wrk on core 1 against c and returns the requests completed.
func load(c *config, hdr []string) (int, float64) {
	args := []string{"-c", "1", "wrk", "-t1", "-c" + strconv.Itoa(*conns), "-d" + duration.String()}
	for i := 0; i < len(hdr); i += 2 {
		args = append(args, "-H", hdr[i]+": "+hdr[i+1])
	}
	args = append(args, fmt.Sprintf("http://127.0.0.1:%d/api/q", c.port))
	out, err := exec.Command("taskset", args...).CombinedOutput()
	if err != nil {
		log.Fatalf("%s: wrk: %v\n%s", c.name, err, out)
	}
	if m := non2xxRE.FindSubmatch(out); m != nil {
		log.Fatalf("%s: %s responses were not 200; the round measured refusals:\n%s", c.name, m[1], out)
	}
	if m := sockErrRE.Find(out); m != nil {
		log.Fatalf("%s: %s", c.name, m)
	}
	m := reqsRE.FindSubmatch(out)
	if m == nil {
		log.Fatalf("%s: cannot read wrk's output:\n%s", c.name, out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	rate, _ := strconv.ParseFloat(string(rateRE.FindSubmatch(out)[1]), 64)
	return n, rate
}

var devNull = func() *os.File {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		log.Fatal(err)
	}
	return f
}()

// ticksPerSecond is USER_HZ, 100 on Linux.
const ticksPerSecond = 100

// cpuTicks is the user+system CPU time of pid and its threads, in ticks.
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		log.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime
}

// signingKey writes an ES256 public key and returns its path and a token
// (sub bench, scope read) valid for the next 5 minutes: the run must end
// before it expires, or the rounds would measure 401s (check would say so).
func signingKey(dir string) (string, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	path := filepath.Join(dir, "bench.pub.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		log.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"sub": "bench", "scope": "read", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": "bench-1",
	}).SignedString(key)
	if err != nil {
		log.Fatal(err)
	}
	return path, tok
}
