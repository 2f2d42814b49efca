package chlocal

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newServer prepares a server in a temp dir, failing the test when the binary is
// not installed.
func newServer(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.Binary == "" {
		bin, err := Find()
		if err != nil {
			t.Fatal(err)
		}
		opts.Binary = bin
	}
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("cannot prepare server: %s", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("cannot stop server: %s", err)
		}
	})
	return s
}

func start(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), DefaultStartTimeout)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("cannot start server: %s", err)
	}
}

func open(t *testing.T, s *Server) driver.Conn {
	t.Helper()
	opts, err := clickhouse.ParseDSN(s.DSN("default"))
	if err != nil {
		t.Fatalf("cannot parse DSN %q: %s", s.DSN("default"), err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatalf("cannot open %s: %s", s.DSN("default"), err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func mustExec(t *testing.T, conn driver.Conn, query string) {
	t.Helper()
	if err := conn.Exec(context.Background(), query); err != nil {
		t.Fatalf("cannot run %q: %s", query, err)
	}
}

func count(t *testing.T, conn driver.Conn, table string) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), "SELECT count() FROM "+table).Scan(&n); err != nil {
		t.Fatalf("cannot count %s: %s", table, err)
	}
	return n
}

func waitClosed(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: not closed within 30s", what)
	}
}

func TestStopAndRestartKeepsAddressAndData(t *testing.T) {
	// Characters that must be escaped in XML prove the config is escaped.
	dir := filepath.Join(t.TempDir(), "data & <more>")
	s := newServer(t, Options{DataDir: dir})
	addr := s.Addr()
	select {
	case <-s.Exited():
	default:
		t.Fatal("Exited() of a server never started: want a closed channel")
	}

	start(t, s)
	exited := s.Exited()
	conn := open(t, s)
	mustExec(t, conn, "CREATE TABLE default.kept (x UInt32) ENGINE = MergeTree ORDER BY x")
	mustExec(t, conn, "INSERT INTO default.kept SELECT number FROM system.numbers LIMIT 10")
	var epoch string
	if err := conn.QueryRow(context.Background(), "SELECT toString(toDateTime(86400))").Scan(&epoch); err != nil || epoch != "1970-01-02 00:00:00" {
		t.Fatalf("server time zone: day 1 of the epoch is %q (%v); want 1970-01-02 00:00:00 (UTC)", epoch, err)
	}

	if err := s.Stop(); err != nil {
		t.Fatalf("cannot stop: %s", err)
	}
	waitClosed(t, exited, "Exited() after Stop")
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %s", err)
	}

	start(t, s)
	if s.Addr() != addr {
		t.Fatalf("address changed on restart: %s, then %s", addr, s.Addr())
	}
	if n := count(t, conn, "default.kept"); n != 10 {
		t.Fatalf("rows after restart: got %d, want 10", n)
	}
}

func TestExitedReportsACrash(t *testing.T) {
	s := newServer(t, Options{})
	start(t, s)
	s.mu.Lock()
	pid := s.cmd.Process.Pid
	s.mu.Unlock()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("cannot kill pid %d: %s", pid, err)
	}
	waitClosed(t, s.Exited(), "Exited() after SIGKILL")

	// A supervisor restarts it.
	start(t, s)
	conn := open(t, s)
	count(t, conn, "system.one")
}

func TestStartFailsWithTheErrorLog(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s := newServer(t, Options{TCPPort: busy.Addr().(*net.TCPAddr).Port})

	err = s.Start(context.Background())
	if err == nil {
		t.Fatal("Start on a busy port: want an error")
	}
	if !strings.Contains(err.Error(), "exited during start up") || !strings.Contains(err.Error(), "Address already in use") {
		t.Fatalf("Start on a busy port: want the exit and the log tail; got: %s", err)
	}
	waitClosed(t, s.Exited(), "Exited() after failed Start")
}

func TestStartHonoursContext(t *testing.T) {
	s := newServer(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Start(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with a cancelled context: got %v, want context.Canceled", err)
	}
	waitClosed(t, s.Exited(), "Exited() after cancelled Start")
}

func TestStartFailsForAMissingBinary(t *testing.T) {
	s := newServer(t, Options{Binary: filepath.Join(t.TempDir(), "clickhouse-server")})
	err := s.Start(context.Background())
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Start with a missing binary: got %v, want a not-exist error", err)
	}
}

func TestFindExplainsTheInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	saved := searchDirs
	searchDirs = []string{t.TempDir()}
	defer func() { searchDirs = saved }()

	_, err := Find()
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Find without a binary: got %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "apt-get install -y clickhouse-server clickhouse-client") {
		t.Fatalf("Find's error should say how to install: %s", err)
	}
}

func TestConfigIsWellFormed(t *testing.T) {
	s := newServer(t, Options{Binary: "/bin/true", DataDir: filepath.Join(t.TempDir(), `a&b<c>"d'`), TCPPort: 1, HTTPPort: 2})
	for _, name := range []string{"config.xml", "users.xml"} {
		b, err := os.ReadFile(filepath.Join(s.DataDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		if err := checkXML(b); err != nil {
			t.Fatalf("%s is not well-formed: %s\n%s", name, err, b)
		}
	}
	if got, want := s.DSN("db1"), "clickhouse://127.0.0.1:1/db1"; got != want {
		t.Fatalf("DSN: got %q, want %q", got, want)
	}
}

func checkXML(b []byte) error {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
