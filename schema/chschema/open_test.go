package chschema_test

import (
	"context"
	"strings"
	"testing"

	"github.com/deploywatch/deploywatch/schema/chschema"
)

func TestDatabaseFromDSN(t *testing.T) {
	f := func(dsn, want string) {
		t.Helper()
		got, err := chschema.DatabaseFromDSN(dsn)
		if err != nil {
			t.Fatalf("DatabaseFromDSN(%q): %s", dsn, err)
		}
		if got != want {
			t.Fatalf("DatabaseFromDSN(%q) = %q, want %q", dsn, got, want)
		}
	}
	f("clickhouse://127.0.0.1:9000/deploywatch", "deploywatch")
	f("clickhouse://user:secret@ch1:9000,ch2:9000/dw_prod?dial_timeout=5s", "dw_prod")
	f("clickhouse://127.0.0.1:9000", "default")
	f("clickhouse://127.0.0.1:9000/", "default")

	if _, err := chschema.DatabaseFromDSN("clickhouse://127.0.0.1:9000/deploy-watch"); err == nil {
		t.Fatal("DatabaseFromDSN with a database name that needs quoting: want an error")
	}
}

func TestOpenRejectsHTTP(t *testing.T) {
	_, err := chschema.Open(context.Background(), "http://127.0.0.1:8123/deploywatch")
	if err == nil || !strings.Contains(err.Error(), "native") {
		t.Fatalf("Open with an HTTP DSN: got %v, want an error that asks for the native protocol", err)
	}
}
