// Command broker compares Steward's MQTT broker with Mosquitto, side by
// side, on this machine, with the same load generator:
//
//   - fan-in: P publishers (default 100) each send M telemetry messages to
//     d/{id}/telemetry; one consumer subscribed to d/+/telemetry receives
//     them; QoS 0 and QoS 1. Delivered msg/s = messages the consumer got /
//     time from the first publish to the last delivery.
//   - TLS connection setup rate: handshake (client certificate) + CONNECT +
//     CONNACK, by 32 concurrent dialers (fewer with fewer devices), each
//     connecting only as devices of its own.
//   - RSS per idle TLS connection at 10k connections and at the most the
//     open-file limit allows: (RSS with N idle clients - RSS before) / N.
//
// Steward runs as a child process (this binary with -serve) with its real
// authentication (platform CA certificates), ACL and telemetry ingestion
// into SQLite; Mosquitto gets client certificates, use_identity_as_username
// and an ACL of the same shape, and is configured to drop nothing
// (max_queued_messages 0, max_inflight_messages 0, set_tcp_nodelay true).
// Every server listens on an ephemeral loopback port. Targets are reported
// as PASS/MISS with the figures, never enforced.
//
//	go run ./bench/broker -markdown
//
// For a closer look, STEWARD_BENCH_PPROF=127.0.0.1:6060 serves pprof from
// the Steward process, and STEWARD_BENCH_HOLD=30s keeps the idle
// connections open that long after their memory was measured (with both
// set, the server samples its heap finely, at a cost in CPU).
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/gob"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type options struct {
	Publishers int
	Messages   int
	Conns      []int
	ConnRate   time.Duration
	Markdown   bool
	Only       string // steward or mosquitto
	Tune       tuning
	Skip       string // comma list: fanin,connrate,memory
	Rounds     int    // fan-in runs per QoS and broker; the best is kept
}

func main() {
	var o options
	serve := flag.String("serve", "", "internal: run the Steward server in this data folder")
	n := flag.Int("devices", 0, "internal: devices the server enrolls")
	flag.IntVar(&o.Publishers, "publishers", 100, "fan-in publishers")
	flag.IntVar(&o.Messages, "messages", 2000, "messages per publisher and QoS")
	flag.IntVar(&o.Rounds, "rounds", 3, "fan-in runs per QoS and broker; the best is reported")
	conns := flag.String("conns", "10000,max", "idle TLS connections for the memory figure ('max' = what the open-file limit allows)")
	flag.DurationVar(&o.ConnRate, "connrate-time", 5*time.Second, "how long to measure the connection setup rate")
	flag.BoolVar(&o.Markdown, "markdown", false, "print the results as a Markdown table")
	flag.StringVar(&o.Only, "only", "", "run one broker only: steward or mosquitto")
	flag.StringVar(&o.Skip, "skip", "", "comma separated scenarios to skip: fanin,connrate,memory")
	flag.IntVar(&o.Tune.WritesPending, "writes-pending", 0, "Steward: per-client outbound queue (0 = the broker's default)")
	flag.IntVar(&o.Tune.ReadBuffer, "read-buffer", 0, "Steward: per-client read buffer (0 = default)")
	flag.IntVar(&o.Tune.WriteBuffer, "write-buffer", 0, "Steward: per-client write buffer (0 = default)")
	flag.Parse()
	if *serve != "" {
		if err := runServer(*serve, *n, o.Tune); err != nil {
			fmt.Fprintln(os.Stderr, "server:", err)
			os.Exit(1)
		}
		return
	}
	for _, c := range strings.Split(*conns, ",") {
		if c == "max" {
			o.Conns = append(o.Conns, maxConns())
		} else if v, err := strconv.Atoi(c); err == nil && v > 0 {
			o.Conns = append(o.Conns, v)
		}
	}
	rep, err := run(o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	rep.print(os.Stdout, o.Markdown)
}

// maxConns is what one process may hold open, less a margin for the
// process's own files.
func maxConns() int {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 10000
	}
	return int(l.Cur) - 600
}

// target is one broker under test.
type target struct {
	name     string
	addr     string
	appAddr  string // where the consumer connects
	tls      *tls.Config
	creds    []clientID
	consumer func() (*conn, error)
	pid      func() int
	stop     func() string // returns anything worth reporting (stats)
	freeMem  func()
	logs     func() string // the server's recent log
}

type clientID struct {
	id   string
	cert tls.Certificate
}

func (t *target) clientTLS(i int) *tls.Config {
	c := t.tls.Clone()
	c.Certificates = []tls.Certificate{t.creds[i].cert}
	return c
}

func (t *target) device(i int, keepalive uint16) (*conn, error) {
	return dial(t.addr, t.clientTLS(i), t.creds[i].id, "", "", keepalive)
}

// ---- Steward ----

func startSteward(o options, devices int, log io.Writer) (*target, error) {
	dir, err := os.MkdirTemp("", "steward-bench-")
	if err != nil {
		return nil, err
	}
	args := []string{"-serve", dir, "-devices", strconv.Itoa(devices),
		"-writes-pending", strconv.Itoa(o.Tune.WritesPending), "-read-buffer", strconv.Itoa(o.Tune.ReadBuffer),
		"-write-buffer", strconv.Itoa(o.Tune.WriteBuffer)}
	cmd := exec.Command(os.Args[0], args...)
	stderr := &tailBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("steward server did not start: %v\n%s", err, stderr.String())
	}
	var info serverInfo
	if err := json.Unmarshal([]byte(line), &info); err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("steward server: %q: %v", line, err)
	}
	f, err := os.Open(info.Creds)
	if err != nil {
		return nil, err
	}
	var creds []cred
	err = gob.NewDecoder(f).Decode(&creds)
	f.Close()
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(info.CA)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	t := &target{name: "steward", addr: info.Cert, appAddr: info.App,
		tls: &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12, ClientSessionCache: nil}}
	for _, c := range creds {
		key, err := x509.ParsePKCS8PrivateKey(c.Key)
		if err != nil {
			return nil, err
		}
		t.creds = append(t.creds, clientID{id: c.ID, cert: tls.Certificate{Certificate: [][]byte{c.Cert}, PrivateKey: key}})
	}
	t.consumer = func() (*conn, error) {
		return dial(info.App, t.tls, info.AppKeyID+"-consumer", "api-key", info.AppKey, 600)
	}
	t.pid = func() int { return cmd.Process.Pid }
	t.freeMem = func() { cmd.Process.Signal(syscall.SIGUSR1) }
	t.logs = stderr.String
	t.stop = func() string {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		os.RemoveAll(dir)
		s := stderr.String()
		if i := strings.LastIndex(s, "STATS "); i >= 0 {
			return strings.TrimSpace(s[i+6:])
		}
		return ""
	}
	fmt.Fprintf(log, "steward: %d devices, listening on %s (devices) and %s (applications)\n", devices, info.Cert, info.App)
	return t, nil
}

// ---- Mosquitto ----

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startMosquitto(devices int, log io.Writer) (*target, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, e := os.Stat("/usr/sbin/mosquitto"); e == nil {
			bin = "/usr/sbin/mosquitto"
		} else {
			return nil, errors.New("mosquitto is not installed (Debian package mosquitto)")
		}
	}
	dir, err := os.MkdirTemp("", "mosquitto-bench-")
	if err != nil {
		return nil, err
	}
	ca := newBenchCA()
	srvCert := ca.issue("localhost", true)
	writePEM(filepath.Join(dir, "ca.crt"), "CERTIFICATE", ca.cert.Raw)
	writeKeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), srvCert)
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`per_listener_settings false
listener %d 127.0.0.1
cafile %[2]s/ca.crt
certfile %[2]s/server.crt
keyfile %[2]s/server.key
require_certificate true
use_identity_as_username true
allow_anonymous false
acl_file %[2]s/acl
max_queued_messages 0
max_inflight_messages 0
set_tcp_nodelay true
max_connections -1
persistence false
log_dest stderr
log_type error
`, port, dir)
	acl := "user consumer\ntopic read d/+/telemetry\n\npattern readwrite d/%u/#\n"
	os.WriteFile(filepath.Join(dir, "mosquitto.conf"), []byte(conf), 0o644)
	os.WriteFile(filepath.Join(dir, "acl"), []byte(acl), 0o644)
	// Mosquitto started as root drops to its own user: let it read the
	// files (throw-away test material).
	os.Chmod(dir, 0o755)
	for _, f := range []string{"ca.crt", "server.crt", "server.key"} {
		os.Chmod(filepath.Join(dir, f), 0o644)
	}
	cmd := exec.Command(bin, "-c", filepath.Join(dir, "mosquitto.conf"))
	stderr := &tailBuffer{}
	cmd.Stderr, cmd.Stdout = stderr, stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i > 100 {
			cmd.Process.Kill()
			return nil, fmt.Errorf("mosquitto did not start:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	t := &target{name: "mosquitto", addr: addr, appAddr: addr,
		tls: &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}}
	for i := range devices {
		id := fmt.Sprintf("m-%06d", i)
		t.creds = append(t.creds, clientID{id: id, cert: ca.issue(id, false)})
	}
	consumer := ca.issue("consumer", false)
	t.consumer = func() (*conn, error) {
		c := t.tls.Clone()
		c.Certificates = []tls.Certificate{consumer}
		return dial(addr, c, "consumer", "", "", 600)
	}
	t.pid = func() int { return cmd.Process.Pid }
	t.freeMem = func() {}
	t.logs = stderr.String
	t.stop = func() string {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		os.RemoveAll(dir)
		return ""
	}
	fmt.Fprintf(log, "mosquitto: listening on %s\n", addr)
	return t, nil
}

// tailBuffer keeps the last 64 KiB written to it.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 64<<10 {
		t.b = t.b[len(t.b)-64<<10:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// cpuTime reads the CPU time a process has used so far: the sum of its
// threads' time on a CPU in nanoseconds (/proc/PID/task/*/schedstat), or,
// where the kernel keeps no schedstat, user + system time in clock ticks
// of 1/100 s, too coarse for a short round (a few thousand messages take
// a few ticks). Neither counts threads that ended in between; the brokers
// here keep theirs.
func cpuTime(pid int) time.Duration {
	if d, ok := schedCPU(pid); ok {
		return d
	}
	return statCPU(pid)
}

func schedCPU(pid int) (time.Duration, bool) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) == 0 {
		return 0, false
	}
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat(fmt.Sprintf("/proc/%d/task/%s", pid, t.Name())); serr != nil {
				continue // the thread ended meanwhile
			}
			return 0, false // no schedstat on this kernel
		}
		if err != nil {
			return 0, false
		}
		f := strings.Fields(string(b))
		if len(f) < 1 {
			return 0, false
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, false
		}
		sum += ns
	}
	return time.Duration(sum), true
}

// statCPU is fields 14 and 15 of /proc/PID/stat, in clock ticks of 1/100
// s, the value Linux reports on every architecture Go supports.
func statCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; count from after it.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100)
}

// rss reads a process's resident set size in bytes.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
