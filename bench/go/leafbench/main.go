// leafbench: messages through two servers (e.g. a leaf link) on the official
// Go client: one publisher connected to --pub-url, one subscriber connected
// to --sub-url.
//
// The subscriber subscribes, then probes are published through the
// publisher's server (with a reply subject, so they are told apart) until
// the subscriber has seen one: the interest has crossed the link. Then
// counting starts fresh: --msgs messages, timed from the first publish to
// the last receive, bounded by --timeout.
//
// Server CPU is utime+stime from /proc/<pid>/stat of each server over the
// measured phase (first publish .. last receive or timeout); a server's PID
// is --pub-pid / --sub-pid, else the owner of the URL's listening port.
//
// Prints one JSON line on stdout, a summary on stderr. Built offline in
// GOPATH mode from Debian's golang-github-nats-io-go-nats-dev (build.sh).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

const clkTck = 100.0 // USER_HZ on Linux

const probeReply = "_LEAFBENCH_PROBE"

type result struct {
	Tool             string   `json:"tool"`
	Scenario         string   `json:"scenario"`
	PubURL           string   `json:"pub_url"`
	SubURL           string   `json:"sub_url"`
	PubServerVersion string   `json:"pub_server_version,omitempty"`
	SubServerVersion string   `json:"sub_server_version,omitempty"`
	Size             int      `json:"size"`
	Msgs             int      `json:"msgs"`
	Published        int64    `json:"published"`
	Received         int64    `json:"received"`
	Lost             int64    `json:"lost"`
	ElapsedS         float64  `json:"elapsed_s"`
	MsgsPerSec       float64  `json:"msgs_per_sec"`
	PubMsgsPerSec    float64  `json:"pub_msgs_per_sec"`
	InterestWaitMs   float64  `json:"interest_wait_ms"`
	Probes           int      `json:"probes"`
	PubPID           int      `json:"pub_server_pid"`
	SubPID           int      `json:"sub_server_pid"`
	PubServerCPUS    *float64 `json:"pub_server_cpu_s"`
	SubServerCPUS    *float64 `json:"sub_server_cpu_s"`
	ServerCPUS       *float64 `json:"server_cpu_s"`
	PubServerUsMsg   *float64 `json:"pub_server_cpu_us_per_msg"`
	SubServerUsMsg   *float64 `json:"sub_server_cpu_us_per_msg"`
	ServerUsMsg      *float64 `json:"server_cpu_us_per_msg"`
	ClientCPUS       float64  `json:"client_cpu_s"`
	ClientUsMsg      float64  `json:"client_cpu_us_per_msg"`
	ClientCPUPct     float64  `json:"client_cpu_pct"`
	OtherCPUPct      *float64 `json:"other_cpu_pct"`
	TimedOut         bool     `json:"timed_out"`
	Errors           int64    `json:"errors"`
	ErrorMsg         string   `json:"error,omitempty"`
	GoMaxProcs       int      `json:"gomaxprocs"`
	Timestamp        string   `json:"timestamp"`
}

func fptr(v float64) *float64  { return &v }
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// ---------------------------------------------------------------------------
// /proc accounting

func clientCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// procCPU: utime+stime seconds of a process, from /proc/<pid>/stat.
func procCPU(pid int) (float64, bool) {
	if pid <= 0 {
		return 0, false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state); utime 14, stime 15
	if len(f) < 13 {
		return 0, false
	}
	ut, e1 := strconv.ParseFloat(f[11], 64)
	st, e2 := strconv.ParseFloat(f[12], 64)
	if e1 != nil || e2 != nil {
		return 0, false
	}
	return (ut + st) / clkTck, true
}

// machineBusy: user+system+irq+softirq+steal seconds of the whole machine.
func machineBusy() (float64, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	if len(f) < 9 || f[0] != "cpu" {
		return 0, false
	}
	v := make([]float64, 8)
	for i := range v {
		v[i], _ = strconv.ParseFloat(f[i+1], 64)
	}
	return (v[0] + v[2] + v[5] + v[6] + v[7]) / clkTck, true
}

// listenerPID: the process owning a LISTEN socket on the port (inode in
// /proc/net/tcp{,6}, then a scan of /proc/*/fd); 0 if not found.
func listenerPID(port int) int {
	inodes := map[string]bool{}
	for _, fn := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(fn)
		if err != nil {
			continue
		}
		lines := strings.Split(string(b), "\n")
		for _, line := range lines[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" {
				continue
			}
			c := strings.LastIndexByte(fs[1], ':')
			if c < 0 {
				continue
			}
			p, err := strconv.ParseInt(fs[1][c+1:], 16, 32)
			if err == nil && int(p) == port && fs[9] != "0" {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	self := os.Getpid()
	for _, pd := range procs {
		pid, err := strconv.Atoi(filepath.Base(pd))
		if err != nil || pid == self {
			continue
		}
		fds, err := os.ReadDir(pd + "/fd")
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(pd + "/fd/" + fd.Name()); err == nil && inodes[l] {
				return pid
			}
		}
	}
	return 0
}

func portOf(u string) int {
	first := strings.Split(u, ",")[0]
	if !strings.Contains(first, "://") {
		first = "nats://" + first
	}
	pu, err := url.Parse(first)
	if err != nil || pu.Port() == "" {
		return 4222
	}
	n, _ := strconv.Atoi(pu.Port())
	return n
}

type snap struct {
	pub, sub     float64
	pubOK, subOK bool
	client       float64
	machine      float64
	machineOK    bool
	at           time.Time
}

func take(pubPID, subPID int) snap {
	s := snap{at: time.Now(), client: clientCPU()}
	s.pub, s.pubOK = procCPU(pubPID)
	if subPID == pubPID {
		s.sub, s.subOK = 0, s.pubOK // same process: counted once, as "pub"
	} else {
		s.sub, s.subOK = procCPU(subPID)
	}
	s.machine, s.machineOK = machineBusy()
	return s
}

// ---------------------------------------------------------------------------

func main() {
	var (
		pubURL, subURL, subject string
		size, msgs              int
		timeout, interestWait   time.Duration
		pubPID, subPID          int
	)
	flag.StringVar(&pubURL, "pub-url", "nats://127.0.0.1:4222", "the publisher's server (e.g. the leaf)")
	flag.StringVar(&subURL, "sub-url", "", "the subscriber's server (e.g. the hub; default: --pub-url)")
	flag.StringVar(&subject, "subject", "leafbench.pubsub", "subject")
	flag.IntVar(&size, "size", 128, "payload bytes")
	flag.IntVar(&msgs, "msgs", 100000, "messages to publish")
	flag.DurationVar(&timeout, "timeout", 60*time.Second, "bound on the measured phase")
	flag.DurationVar(&interestWait, "interest-timeout", 15*time.Second, "bound on waiting for the subscription to reach the publisher's server")
	flag.IntVar(&pubPID, "pub-pid", 0, "PID of the --pub-url server (default: owner of its listening port)")
	flag.IntVar(&subPID, "sub-pid", 0, "PID of the --sub-url server (default: owner of its listening port)")
	flag.Parse()
	if subURL == "" {
		subURL = pubURL
	}
	if pubPID == 0 {
		pubPID = listenerPID(portOf(pubURL))
	}
	if subPID == 0 {
		subPID = listenerPID(portOf(subURL))
	}
	res := &result{
		Tool: "leafbench", Scenario: "pubsub", PubURL: pubURL, SubURL: subURL,
		Size: size, Msgs: msgs, PubPID: pubPID, SubPID: subPID,
		GoMaxProcs: runtime.GOMAXPROCS(0),
	}
	err := run(res, subject, timeout, interestWait)
	if err != nil {
		res.Errors++
		res.ErrorMsg = err.Error()
	}
	res.Timestamp = time.Now().UTC().Format(time.RFC3339)
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	cpu := "-"
	if res.ServerUsMsg != nil {
		cpu = fmt.Sprintf("%.3f", *res.ServerUsMsg)
	}
	fmt.Fprintf(os.Stderr, "leafbench size=%d recv=%d/%d %.0f msgs/s server %s µs/msg timed_out=%v errors=%d\n",
		size, res.Received, msgs, res.MsgsPerSec, cpu, res.TimedOut, res.Errors)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
	if res.Lost > 0 || res.TimedOut {
		os.Exit(1)
	}
}

var asyncErrs int64
var firstAsync atomic.Value

func connect(u, name string) (*nats.Conn, error) {
	return nats.Connect(u,
		nats.Name("leafbench-"+name),
		nats.NoReconnect(),
		nats.Timeout(5*time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			atomic.AddInt64(&asyncErrs, 1)
			firstAsync.CompareAndSwap(nil, err.Error())
		}),
	)
}

func run(res *result, subject string, timeout, interestWait time.Duration) error {
	snc, err := connect(res.SubURL, "sub")
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", res.SubURL, err)
	}
	defer snc.Close()
	res.SubServerVersion = snc.ConnectedServerVersion()
	pnc, err := connect(res.PubURL, "pub")
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", res.PubURL, err)
	}
	defer pnc.Close()
	res.PubServerVersion = pnc.ConnectedServerVersion()

	n := int64(res.Msgs)
	var count, firstNs, lastNs int64
	var probeSeen int32
	done := make(chan struct{})
	sub, err := snc.Subscribe(subject, func(m *nats.Msg) {
		if m.Reply != "" { // interest probe
			atomic.StoreInt32(&probeSeen, 1)
			return
		}
		now := time.Now().UnixNano()
		c := atomic.AddInt64(&count, 1)
		if c == 1 {
			atomic.StoreInt64(&firstNs, now)
		}
		atomic.StoreInt64(&lastNs, now)
		if c == n {
			close(done)
		}
	})
	if err != nil {
		return err
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return err
	}
	if err := snc.Flush(); err != nil {
		return err
	}

	// Wait until the subscription's interest has reached the publisher's
	// server: publish probes there until the subscriber sees one.
	t0 := time.Now()
	for atomic.LoadInt32(&probeSeen) == 0 {
		if time.Since(t0) > interestWait {
			return fmt.Errorf("no probe published through %s reached the subscriber on %s within %v", res.PubURL, res.SubURL, interestWait)
		}
		if err := pnc.PublishRequest(subject, probeReply, nil); err != nil {
			return err
		}
		if err := pnc.Flush(); err != nil {
			return err
		}
		res.Probes++
		time.Sleep(10 * time.Millisecond)
	}
	res.InterestWaitMs = round3(float64(time.Since(t0).Microseconds()) / 1e3)
	// Late probes still in flight are ignored by the callback (reply set).
	time.Sleep(50 * time.Millisecond)

	data := make([]byte, res.Size)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	s0 := take(res.PubPID, res.SubPID)
	start := s0.at
	deadline := start.Add(timeout)
	var sent int64
	var pubEnd time.Time
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for sent = 0; sent < n; sent++ {
			if err := pnc.Publish(subject, data); err != nil {
				atomic.AddInt64(&asyncErrs, 1)
				firstAsync.CompareAndSwap(nil, err.Error())
				break
			}
			if sent&1023 == 0 && time.Now().After(deadline) {
				break
			}
		}
		rem := time.Until(deadline)
		if rem < time.Second {
			rem = time.Second
		}
		if err := pnc.FlushTimeout(rem); err != nil {
			atomic.AddInt64(&asyncErrs, 1)
			firstAsync.CompareAndSwap(nil, err.Error())
		}
		pubEnd = time.Now()
	}()
	select {
	case <-done:
	case <-time.After(time.Until(deadline)):
		res.TimedOut = true
	}
	<-pubDone
	s1 := take(res.PubPID, res.SubPID)

	got := atomic.LoadInt64(&count)
	res.Published = sent
	res.Received = got
	res.Lost = sent - got
	if res.Lost < 0 {
		res.Lost = 0
	}
	end := s1.at
	if l := atomic.LoadInt64(&lastNs); l != 0 {
		end = time.Unix(0, l)
	}
	el := end.Sub(start).Seconds()
	res.ElapsedS = round3(el)
	if el > 0 {
		res.MsgsPerSec = math.Round(float64(got) / el)
	}
	if pe := pubEnd.Sub(start).Seconds(); pe > 0 {
		res.PubMsgsPerSec = math.Round(float64(sent) / pe)
	}
	span := s1.at.Sub(s0.at).Seconds()
	client := s1.client - s0.client
	res.ClientCPUS = round3(client)
	if span > 0 {
		res.ClientCPUPct = math.Round(client / span * 100)
	}
	per := func(cpu float64) *float64 {
		if got == 0 {
			return nil
		}
		return fptr(round3(cpu * 1e6 / float64(got)))
	}
	if got > 0 {
		res.ClientUsMsg = round3(client * 1e6 / float64(got))
	}
	servers := 0.0
	if s0.pubOK && s1.pubOK {
		d := s1.pub - s0.pub
		res.PubServerCPUS, res.PubServerUsMsg = fptr(round3(d)), per(d)
		servers += d
	}
	if s0.subOK && s1.subOK {
		d := s1.sub - s0.sub
		res.SubServerCPUS, res.SubServerUsMsg = fptr(round3(d)), per(d)
		servers += d
	}
	if res.PubServerCPUS != nil && res.SubServerCPUS != nil {
		res.ServerCPUS, res.ServerUsMsg = fptr(round3(servers)), per(servers)
	}
	if s0.machineOK && s1.machineOK && span > 0 {
		res.OtherCPUPct = fptr(math.Round((s1.machine - s0.machine - client - servers) / span * 100))
	}
	res.Errors += atomic.LoadInt64(&asyncErrs)
	if v, ok := firstAsync.Load().(string); ok && res.ErrorMsg == "" {
		res.ErrorMsg = v
	}
	if got < sent {
		return fmt.Errorf("received %d of %d published", got, sent)
	}
	return nil
}
