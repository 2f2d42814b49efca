package testenv_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema/chschema"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func TestClickHouseGivesEachTestAnEmptyDatabase(t *testing.T) {
	ctx := context.Background()
	var dsns []string
	for i := range 2 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			dsn := testenv.ClickHouse(t)
			dsns = append(dsns, dsn)
			conn, err := chschema.Open(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var tables uint64
			if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = currentDatabase()").Scan(&tables); err != nil {
				t.Fatal(err)
			}
			if tables != 0 {
				t.Fatalf("new database has %d tables", tables)
			}
			if err := conn.Exec(ctx, "CREATE TABLE t (x UInt8) ENGINE = MergeTree ORDER BY x"); err != nil {
				t.Fatal(err)
			}
		})
	}
	if len(dsns) != 2 || dsns[0] == dsns[1] {
		t.Fatalf("want two different DSNs, got %q", dsns)
	}

	// The subtests' databases are gone.
	conn, err := chschema.Open(ctx, strings.TrimSuffix(dsns[0], "/"+mustDB(t, dsns[0]))+"/default")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, dsn := range dsns {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.databases WHERE name = ?", mustDB(t, dsn)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("database of %s still exists after its test", dsn)
		}
	}
}

func mustDB(t *testing.T, dsn string) string {
	t.Helper()
	db, err := chschema.DatabaseFromDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(db, "test_") {
		t.Fatalf("database %q of %s: want a test_ prefix", db, dsn)
	}
	return db
}

func TestOwnClickHouseRestarts(t *testing.T) {
	ctx := context.Background()
	srv := testenv.OwnClickHouse(t)
	conn, err := chschema.Open(ctx, srv.DSN("default"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("Ping of a stopped server: want an error")
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		if err := conn.Ping(ctx); err != nil {
			return false, "ping: " + err.Error()
		}
		return true, ""
	})
}

func TestEventuallyPollsUntilTrue(t *testing.T) {
	calls := 0
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		calls++
		return calls == 3, fmt.Sprintf("%d calls", calls)
	})
	if calls != 3 {
		t.Fatalf("cond called %d times, want 3", calls)
	}
}

// fatalTB records Fatalf and ends the goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func TestEventuallyFailsWithTheLastStatus(t *testing.T) {
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	calls := 0
	go func() {
		defer close(done)
		testenv.Eventually(tb, 100*time.Millisecond, func() (bool, string) {
			calls++
			return false, fmt.Sprintf("still waiting after %d calls", calls)
		})
	}()
	<-done
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if !strings.Contains(tb.msg, "still waiting after") || !strings.Contains(tb.msg, "100ms") {
		t.Fatalf("Eventually's failure: %q; want the timeout and the last status", tb.msg)
	}
	if calls < 3 {
		t.Fatalf("cond called %d times in 100ms; want it polled every ~20ms", calls)
	}
}
