package testenv

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/eventlog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// NATS starts an embedded nats-server with JetStream on a free port, its files in
// a temp dir, shut down when the test ends.
func NATS(t testing.TB) *server.Server {
	t.Helper()
	srv, err := eventlog.StartEmbedded(eventlog.EmbeddedOptions{Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("cannot start embedded NATS: %v", err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// NATSConn connects to srv, closed when the test ends.
func NATSConn(t testing.TB, srv *server.Server) *nats.Conn {
	t.Helper()
	nc, err := eventlog.Connect(eventlog.ConnectOptions{URL: srv.ClientURL(), Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// ExternalNATS runs the distribution's nats-server binary (Debian's package
// installs it in /usr/sbin) with JetStream on a free port, requiring token
// from clients, and returns its URL. A missing binary fails the test with the
// instruction to install it.
func ExternalNATS(t testing.TB, token string) string {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if _, statErr := os.Stat("/usr/sbin/nats-server"); statErr == nil {
			bin, err = "/usr/sbin/nats-server", nil
		}
	}
	if err != nil {
		t.Fatal("nats-server is not installed: run make setup (or apt-get install nats-server)")
	}
	port := freePort(t)
	cmd := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-sd", t.TempDir(), "--auth", token)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	Eventually(t, 20*time.Second, func() (bool, string) {
		nc, err := nats.Connect(url, nats.Token(token))
		if err != nil {
			return false, "waiting for " + bin + ": " + err.Error()
		}
		defer nc.Close()
		js, err := nc.JetStream()
		if err != nil {
			return false, err.Error()
		}
		_, err = js.AccountInfo()
		return err == nil, fmt.Sprintf("waiting for JetStream on %s: %v", bin, err)
	})
	return url
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
