package redistest

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// EvalSHABenchmark runs redis-benchmark against the server at addr (with
// cluster, against the Redis Cluster it belongs to: --cluster) at 64
// connections, max(b.N, 1000) requests of `EVALSHA sha 1 key args...`,
// where redis-benchmark replaces __rand_int__ in key by one of 1024 values.
// It reports redis-benchmark's requests per second as decisions/s, and
// skips the benchmark when redis-benchmark is not installed.
func EvalSHABenchmark(b *testing.B, addr string, cluster bool, sha, key string, args ...any) {
	b.Helper()
	rb, err := exec.LookPath("redis-benchmark")
	if err != nil {
		b.Skip("redis-benchmark not installed")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		b.Fatal(err)
	}
	var cmd []string
	if cluster {
		cmd = append(cmd, "--cluster")
	}
	cmd = append(cmd, "-h", host, "-p", port, "-c", "64", "-n", fmt.Sprint(max(b.N, 1000)),
		"-r", "1024", "--csv", "EVALSHA", sha, "1", key)
	for _, a := range args {
		cmd = append(cmd, fmt.Sprint(a))
	}
	b.ResetTimer()
	out, err := exec.Command(rb, cmd...).CombinedOutput()
	if err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	b.StopTimer()
	// CSV: "test","rps",...
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	fields := strings.Split(lines[len(lines)-1], ",")
	if len(fields) < 2 {
		b.Fatalf("parsing %q: no rps field", out)
	}
	rps, err := strconv.ParseFloat(strings.Trim(fields[1], `"`), 64)
	if err != nil {
		b.Fatalf("parsing %q: %v", out, err)
	}
	b.ReportMetric(rps, "decisions/s")
	b.Logf("redis-benchmark %s\n%s", strings.Join(cmd, " "), out)
}
