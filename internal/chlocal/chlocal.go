// Package chlocal runs a clickhouse-server as a child process with its own minimal
// configuration in a data directory: `deploywatch serve` supervises one when no DSN
// is configured, and the test harness starts one per test package.
//
// The server listens on loopback only and its `default` user has no password.
package chlocal

import (
	"bytes"
	"context"
	"embed"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// DefaultStartTimeout bounds Start when its context has no deadline.
const DefaultStartTimeout = 60 * time.Second

// stopTimeout is how long Stop waits after SIGTERM before it sends SIGKILL.
const stopTimeout = 15 * time.Second

// binaryName is the server program; dirs are searched after $PATH, which a normal
// user's does not include /usr/sbin.
const binaryName = "clickhouse-server"

var searchDirs = []string{"/usr/sbin", "/usr/bin"}

// ErrNotFound is returned by Find when no clickhouse-server binary is installed.
var ErrNotFound = errors.New("clickhouse-server not found on PATH or in /usr/sbin: " +
	"run `make setup` (it runs apt-get install -y clickhouse-server clickhouse-client)")

// Find returns the path of the clickhouse-server binary: from $PATH, then
// /usr/sbin, then /usr/bin.
func Find() (string, error) {
	if p, err := exec.LookPath(binaryName); err == nil {
		return p, nil
	}
	for _, dir := range searchDirs {
		p := filepath.Join(dir, binaryName)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", ErrNotFound
}

// Options configure a Server.
type Options struct {
	// Binary is the clickhouse-server program; empty means Find.
	Binary string
	// DataDir holds the configuration, the data and the logs; it is created.
	DataDir string
	// ListenHost is the address the server listens on; default 127.0.0.1.
	ListenHost string
	// TCPPort (native protocol) and HTTPPort; 0 picks a free port once, in New,
	// so a restarted server keeps its address.
	TCPPort, HTTPPort int
	// Logger receives start and stop events; nil discards them.
	Logger *slog.Logger
}

// Server is a clickhouse-server child process. Its methods are safe for concurrent use.
type Server struct {
	binary     string
	dataDir    string
	configPath string
	logDir     string
	host       string
	tcpPort    int
	httpPort   int
	logger     *slog.Logger

	lifecycle sync.Mutex // serializes Start and Stop

	mu     sync.Mutex    // guards cmd and exited
	cmd    *exec.Cmd     // nil before the first Start
	exited chan struct{} // closed when cmd exits
}

//go:embed config.xml.tmpl users.xml.tmpl
var templatesFS embed.FS

var templates = template.Must(template.New("").
	Funcs(template.FuncMap{"xml": xmlEscape}).
	Option("missingkey=error").
	ParseFS(templatesFS, "*.tmpl"))

func xmlEscape(s string) (string, error) {
	var b strings.Builder
	if err := xml.EscapeText(&b, []byte(s)); err != nil {
		return "", err
	}
	return b.String(), nil
}

type configData struct {
	ListenHost       string
	TCPPort          int
	HTTPPort         int
	LogDir           string
	DataPath         string
	TmpPath          string
	UserFilesPath    string
	FormatSchemaPath string
	UsersConfig      string
	MaxMemoryUsage   int64
}

// New prepares a server: it resolves the binary and free ports, creates the
// directories under opts.DataDir and writes config.xml and users.xml there. It
// does not start the process.
func New(opts Options) (*Server, error) {
	if opts.DataDir == "" {
		return nil, errors.New("cannot prepare clickhouse-server: Options.DataDir is empty")
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("cannot resolve data dir %q: %w", opts.DataDir, err)
	}
	binary := opts.Binary
	if binary == "" {
		if binary, err = Find(); err != nil {
			return nil, err
		}
	}
	host := opts.ListenHost
	if host == "" {
		host = "127.0.0.1"
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ports, err := freePorts(host, opts.TCPPort, opts.HTTPPort)
	if err != nil {
		return nil, err
	}
	s := &Server{
		binary:     binary,
		dataDir:    dataDir,
		configPath: filepath.Join(dataDir, "config.xml"),
		logDir:     filepath.Join(dataDir, "log"),
		host:       host,
		tcpPort:    ports[0],
		httpPort:   ports[1],
		logger:     logger,
	}
	if err := s.writeConfig(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) writeConfig() error {
	d := configData{
		ListenHost:       s.host,
		TCPPort:          s.tcpPort,
		HTTPPort:         s.httpPort,
		LogDir:           s.logDir,
		DataPath:         filepath.Join(s.dataDir, "data"),
		TmpPath:          filepath.Join(s.dataDir, "tmp"),
		UserFilesPath:    filepath.Join(s.dataDir, "user_files"),
		FormatSchemaPath: filepath.Join(s.dataDir, "format_schemas"),
		UsersConfig:      filepath.Join(s.dataDir, "users.xml"),
		MaxMemoryUsage:   4 << 30,
	}
	for _, dir := range []string{d.LogDir, d.DataPath, d.TmpPath, d.UserFilesPath, d.FormatSchemaPath} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("cannot create clickhouse directory: %w", err)
		}
	}
	for name, path := range map[string]string{"config.xml.tmpl": s.configPath, "users.xml.tmpl": d.UsersConfig} {
		var buf bytes.Buffer
		if err := templates.ExecuteTemplate(&buf, name, d); err != nil {
			return fmt.Errorf("cannot render %s: %w", name, err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o640); err != nil {
			return fmt.Errorf("cannot write clickhouse config: %w", err)
		}
	}
	return nil
}

// freePorts returns the wanted ports, replacing each 0 with a port that was free
// a moment ago. All listeners stay open until every port is chosen, so the two
// ports differ.
func freePorts(host string, want ...int) ([]int, error) {
	ports := make([]int, len(want))
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for i, p := range want {
		if p != 0 {
			ports[i] = p
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("cannot find a free port on %s: %w", host, err)
		}
		listeners = append(listeners, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// Addr returns host:port of the native protocol.
func (s *Server) Addr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.tcpPort)) }

// HTTPAddr returns host:port of the HTTP interface.
func (s *Server) HTTPAddr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.httpPort)) }

// DSN returns a clickhouse-go DSN for database (empty means the server's default).
func (s *Server) DSN(database string) string {
	return "clickhouse://" + s.Addr() + "/" + database
}

// DataDir returns the absolute data directory.
func (s *Server) DataDir() string { return s.dataDir }

// Exited returns a channel that is closed when the current process exits. When
// no process runs it returns a closed channel.
func (s *Server) Exited() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exited == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return s.exited
}

// Start starts the server process in its own process group and waits until the
// native port answers `SELECT 1`. It gives up when ctx ends (after
// DefaultStartTimeout if ctx has no deadline) or when the process exits, whose
// error log it then quotes; in both cases no process is left running.
func (s *Server) Start(ctx context.Context) error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultStartTimeout)
		defer cancel()
	}
	exited, err := s.spawn()
	if err != nil {
		return err
	}
	if err := s.waitReady(ctx, exited); err != nil {
		if stopErr := s.stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return err
	}
	s.logger.Info("clickhouse-server is ready", "addr", s.Addr(), "data_dir", s.dataDir)
	return nil
}

func (s *Server) spawn() (<-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		select {
		case <-s.exited:
		default:
			return nil, fmt.Errorf("cannot start clickhouse-server on %s: it is already running (pid %d)", s.Addr(), s.cmd.Process.Pid)
		}
	}
	out, err := os.OpenFile(filepath.Join(s.logDir, "stderr.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("cannot open clickhouse-server output log: %w", err)
	}
	cmd := exec.Command(s.binary, "--config-file="+s.configPath)
	cmd.Dir = s.dataDir
	cmd.Stdout = out
	cmd.Stderr = out
	// A modern server forks a watchdog parent by default; keep one process to signal.
	cmd.Env = append(os.Environ(), "CLICKHOUSE_WATCHDOG_ENABLE=0")
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("cannot start %s: %w", s.binary, err)
	}
	exited := make(chan struct{})
	s.cmd, s.exited = cmd, exited
	s.logger.Info("clickhouse-server started", "pid", cmd.Process.Pid, "addr", s.Addr())
	go func() {
		err := cmd.Wait()
		out.Close()
		s.logger.Info("clickhouse-server exited", "pid", cmd.Process.Pid, "status", exitStatus(err))
		close(exited)
	}()
	return exited, nil
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func (s *Server) waitReady(ctx context.Context, exited <-chan struct{}) error {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:         []string{s.Addr()},
		Protocol:     clickhouse.Native,
		DialTimeout:  time.Second,
		ReadTimeout:  5 * time.Second,
		MaxOpenConns: 1,
		MaxIdleConns: 1,
	})
	if err != nil {
		return fmt.Errorf("cannot create a client for clickhouse-server on %s: %w", s.Addr(), err)
	}
	defer conn.Close()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var one uint8
		lastErr = conn.QueryRow(attemptCtx, "SELECT 1").Scan(&one)
		cancel()
		if lastErr == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("clickhouse-server on %s exited during start up; %s", s.Addr(), s.logTail())
		case <-ctx.Done():
			return fmt.Errorf("clickhouse-server on %s did not answer SELECT 1 in time (last error: %v): %w; %s",
				s.Addr(), lastErr, ctx.Err(), s.logTail())
		case <-tick.C:
		}
	}
}

// logTail returns the last lines of the server's error log and of its output.
func (s *Server) logTail() string {
	var parts []string
	for _, name := range []string{"clickhouse-server.err.log", "stderr.log"} {
		if tail := tailFile(filepath.Join(s.logDir, name), 20, 4096); tail != "" {
			parts = append(parts, fmt.Sprintf("tail of %s:\n%s", filepath.Join(s.logDir, name), tail))
		}
	}
	if len(parts) == 0 {
		return "its logs in " + s.logDir + " are empty"
	}
	return strings.Join(parts, "\n")
}

func tailFile(path string, lines int, maxBytes int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-maxBytes, 0)
	buf, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(buf), "\n"), "\n")
	if off > 0 && len(all) > 1 {
		all = all[1:] // the first line is likely cut
	}
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.TrimSpace(strings.Join(all, "\n"))
}

// Stop ends the process: SIGTERM to its process group, then SIGKILL if it has
// not exited after 15 s. It returns nil when no process runs, so it is safe to
// call twice; Start may be called again afterwards and reuses ports and data.
func (s *Server) Stop() error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	return s.stop()
}

func (s *Server) stop() error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	pid := cmd.Process.Pid
	if err := terminate(cmd.Process); err != nil {
		return fmt.Errorf("cannot send SIGTERM to clickhouse-server (pid %d): %w", pid, err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-exited:
		return nil
	case <-timer.C:
	}
	s.logger.Warn("clickhouse-server did not stop after SIGTERM; killing it", "pid", pid, "waited", stopTimeout)
	if err := kill(cmd.Process); err != nil {
		return fmt.Errorf("cannot kill clickhouse-server (pid %d): %w", pid, err)
	}
	<-exited
	return nil
}
