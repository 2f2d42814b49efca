// Package testenv starts the servers that deploywatch's tests run against.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/deploywatch/deploywatch/internal/chlocal"
	"github.com/deploywatch/deploywatch/schema/chschema"
)

// ClickHouseDSNEnv names an existing ClickHouse server for the tests to use
// instead of starting one, e.g. clickhouse://127.0.0.1:9000/default. Each test
// gets its own database there, dropped afterwards.
const ClickHouseDSNEnv = "DEPLOYWATCH_TEST_CLICKHOUSE_DSN"

// startTimeout bounds starting a server and creating or dropping a database.
const startTimeout = chlocal.DefaultStartTimeout

var (
	mainRunning atomic.Bool

	sharedOnce sync.Once
	shared     struct {
		server  *chlocal.Server // nil when ClickHouseDSNEnv names a server
		dir     string
		baseDSN string
		admin   driver.Conn
		err     error
	}
)

// Main runs the package's tests and then stops the ClickHouse server they shared:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
func Main(m *testing.M) int {
	mainRunning.Store(true)
	code := m.Run()
	if err := stopShared(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %s\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func stopShared() error {
	var err error
	if shared.admin != nil {
		shared.admin.Close()
	}
	if shared.server != nil {
		if err = shared.server.Stop(); err != nil {
			err = fmt.Errorf("cannot stop the shared clickhouse-server: %w", err)
		}
	}
	if shared.dir != "" && err == nil {
		if rmErr := os.RemoveAll(shared.dir); rmErr != nil {
			err = fmt.Errorf("cannot remove the shared clickhouse-server's data: %w", rmErr)
		}
	}
	return err
}

// ClickHouse returns the DSN of a new, empty database on the ClickHouse server
// that the test package shares: the one ClickHouseDSNEnv names, else a local
// clickhouse-server started on first use and stopped by Main. The database is
// dropped when the test ends. A missing clickhouse-server fails the test with
// the instruction to install it.
func ClickHouse(t testing.TB) string {
	t.Helper()
	if !mainRunning.Load() {
		t.Fatal("testenv.ClickHouse needs the package's TestMain to call testenv.Main, " +
			"which stops the shared server: func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }")
	}
	sharedOnce.Do(startShared)
	if shared.err != nil {
		t.Fatal(shared.err)
	}

	db := "test_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := shared.admin.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatalf("cannot create test database %s: %s", db, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		if err := shared.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
			t.Errorf("cannot drop test database %s: %s", db, err)
		}
	})
	dsn, err := withDatabase(shared.baseDSN, db)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

func startShared() {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if dsn := os.Getenv(ClickHouseDSNEnv); dsn != "" {
		shared.baseDSN = dsn
		if shared.admin, shared.err = chschema.Open(ctx, dsn); shared.err != nil {
			shared.err = fmt.Errorf("cannot use the ClickHouse server in $%s: %w", ClickHouseDSNEnv, shared.err)
		}
		return
	}
	bin, err := chlocal.Find()
	if err != nil {
		shared.err = err
		return
	}
	if shared.dir, err = os.MkdirTemp("", "deploywatch-clickhouse-"); err != nil {
		shared.err = fmt.Errorf("cannot create a directory for clickhouse-server: %w", err)
		return
	}
	shared.server, err = chlocal.New(chlocal.Options{Binary: bin, DataDir: shared.dir})
	if err == nil {
		err = shared.server.Start(ctx)
	}
	if err != nil {
		shared.err = fmt.Errorf("cannot start the shared clickhouse-server: %w", err)
		return
	}
	shared.baseDSN = shared.server.DSN("default")
	if shared.admin, err = chschema.Open(ctx, shared.baseDSN); err != nil {
		shared.err = err
	}
}

// withDatabase returns dsn with its database replaced.
func withDatabase(dsn, db string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("cannot parse ClickHouse DSN: %w", err)
	}
	u.Path = "/" + db
	q := u.Query()
	if q.Has("database") {
		q.Set("database", db)
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// OwnClickHouse starts a clickhouse-server for this test alone, for tests that
// stop and restart it; it is stopped when the test ends. Connect to
// srv.DSN("default"), or create a database with chschema.Open.
func OwnClickHouse(t testing.TB) *chlocal.Server {
	t.Helper()
	bin, err := chlocal.Find()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := chlocal.New(chlocal.Options{Binary: bin, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("cannot stop clickhouse-server: %s", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return srv
}

// Eventually calls cond every 20 ms until it returns true, and fails the test if
// it has not within timeout, quoting the status cond last returned.
func Eventually(t testing.TB, timeout time.Duration, cond func() (ok bool, status string)) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, status := cond()
		if ok {
			return
		}
		select {
		case <-deadline.C:
			if ok, status = cond(); ok {
				return
			}
			t.Fatalf("condition not met within %s: %s", timeout, status)
		case <-tick.C:
		}
	}
}
