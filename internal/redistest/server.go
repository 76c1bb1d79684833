package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Options tune Start.
type Options struct {
	// Port is the port to serve on; 0 picks a free one.
	Port int
	// Extra are arguments added after the default command line (a fresh,
	// empty, non-persistent server on Port, bound to 127.0.0.1).
	Extra []string
	// Args, when set, are the whole command line instead of the default
	// one: they name the port (Port) and everything else themselves.
	Args []string
	// Ready reports whether the server at addr (127.0.0.1:Port) answers;
	// nil: Ping, a plain PING answers PONG.
	Ready func(addr string) bool
}

// Server is a real redis-server (or Sentinel) process on loopback.
type Server struct {
	Port int
	Addr string // 127.0.0.1:Port

	t    testing.TB
	bin  string
	opts Options
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts a redis-server for the test, by default a fresh, empty,
// non-persistent one on a free port, and waits until it answers. It is
// killed at the end of the test. Under -short the test skips; in the full
// run a missing redis-server fails it.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{t: t, bin: requireServer(t), opts: opts, Port: opts.Port}
	if s.Port == 0 {
		s.Port = freePort(t)
	}
	s.Addr = fmt.Sprintf("127.0.0.1:%d", s.Port)
	t.Cleanup(s.Stop)
	s.Start()
	return s
}

// requireServer finds redis-server, with the messages of the root
// package's skipShort and requireTool.
func requireServer(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: needs redis-server; the full run (go test ./...) runs it")
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server not found on PATH (bash .ci/run installs it; go test -short skips the tests that need it)")
	}
	return bin
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start (re)starts the server on the same port and waits until it answers;
// it fails the test if the process exits first.
func (s *Server) Start() {
	s.t.Helper()
	args := s.opts.Args
	if args == nil {
		args = append([]string{"--port", fmt.Sprint(s.Port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", s.t.TempDir()}, s.opts.Extra...)
	}
	s.cmd = exec.Command(s.bin, args...)
	s.done = make(chan struct{})
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); close(done) }(s.cmd, s.done)
	ready := s.opts.Ready
	if ready == nil {
		ready = Ping
	}
	exited := false
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case <-s.done:
			exited = true
		default:
			if ready(s.Addr) {
				return
			}
		}
		if exited || time.Now().After(deadline) {
			s.t.Fatalf("redis-server %v on %s not ready (exited: %v)", args, s.Addr, exited)
		}
	}
}

// Stop kills the server (idempotent): an outage, or a crash, as far as
// clients can tell.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	select {
	case <-s.done:
	default:
		s.cmd.Process.Kill()
		<-s.done
	}
}

// Process is the running redis-server process (to pause it with SIGSTOP,
// say).
func (s *Server) Process() *os.Process { return s.cmd.Process }

// Ping reports whether the server at addr answers a plain PING (no AUTH,
// no TLS) with PONG.
func Ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	fmt.Fprint(c, "PING\r\n")
	c.SetReadDeadline(time.Now().Add(time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.HasPrefix(line, "+PONG")
}
