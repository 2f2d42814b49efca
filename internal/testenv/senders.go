package testenv

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// senderStartTimeout bounds how long Prometheus or Alertmanager may take to
// answer /-/ready; on a loaded 2-core CI machine they need a few seconds.
const senderStartTimeout = 60 * time.Second

// senderLogTail is how much of a sender's log a failed test shows.
const senderLogTail = 64 << 10

// Prometheus starts Debian's prometheus (2.42 in bookworm) with configYAML
// as its configuration, its TSDB in a temp dir and its web API on a free port,
// waits until it is ready and returns its URL (http://127.0.0.1:port). It is
// stopped when the test ends; if the test failed, its log is in the test's.
// A missing binary fails the test with the instruction to install it.
func Prometheus(t testing.TB, configYAML string) string {
	t.Helper()
	bin := findSender(t, "prometheus")
	dir := t.TempDir()
	config := writeConfig(t, dir, "prometheus.yml", configYAML)
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	return startSender(t, bin, addr,
		"--config.file="+config,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=info",
	)
}

// Alertmanager starts Debian's prometheus-alertmanager (0.25 in bookworm)
// with configYAML as its configuration, its state in a temp dir, its API on a
// free port and clustering off, waits until it is ready and returns its URL.
// It is stopped when the test ends; if the test failed, its log is in the
// test's. A missing binary fails the test with the instruction to install it.
func Alertmanager(t testing.TB, configYAML string) string {
	t.Helper()
	bin := findSender(t, "prometheus-alertmanager")
	dir := t.TempDir()
	config := writeConfig(t, dir, "alertmanager.yml", configYAML)
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	return startSender(t, bin, addr,
		"--config.file="+config,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--cluster.listen-address=", // empty: no gossip port, a single instance
		"--log.level=info",
	)
}

// findSender finds name in PATH or /usr/bin, where Debian installs it.
func findSender(t testing.TB, name string) string {
	t.Helper()
	if bin, err := exec.LookPath(name); err == nil {
		return bin
	}
	if fi, err := os.Stat("/usr/bin/" + name); err == nil && fi.Mode()&0o111 != 0 {
		return "/usr/bin/" + name
	}
	t.Fatalf("%s is not installed: run make setup (or apt-get install prometheus prometheus-alertmanager)", name)
	return ""
}

func writeConfig(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatalf("cannot write %s: %v", p, err)
	}
	return p
}

// startSender runs bin with args, listening on addr, until the test ends.
func startSender(t testing.TB, bin, addr string, args ...string) string {
	t.Helper()
	log := &lockedBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	name := filepath.Base(bin)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("%s did not stop within 20s of SIGTERM; killed it", name)
		}
		if t.Failed() {
			t.Logf("%s log (last %d KiB):\n%s", name, senderLogTail>>10, log.tail(senderLogTail))
		}
	})

	url := "http://" + addr
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.NewTimer(senderStartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		status := "no answer yet"
		resp, err := client.Get(url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
			status = resp.Status
		} else {
			status = err.Error()
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before it was ready (%v); its log:\n%s", name, waitErr, log.tail(senderLogTail))
		case <-deadline.C:
			t.Fatalf("%s was not ready on %s within %s: %s", name, url, senderStartTimeout, status)
		case <-tick.C:
		}
	}
}

// lockedBuffer collects a child's stdout and stderr.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	data := b.buf.Bytes()
	if len(data) <= n {
		return string(data)
	}
	return fmt.Sprintf("[%d bytes cut]\n%s", len(data)-n, data[len(data)-n:])
}
