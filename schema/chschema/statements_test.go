package chschema

import (
	"reflect"
	"strings"
	"testing"
)

func TestStatements(t *testing.T) {
	f := func(sql string, want ...string) {
		t.Helper()
		got, err := statements("test.sql", sql)
		if err != nil {
			t.Fatalf("statements(%q): %s", sql, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("statements(%q):\n got %q\nwant %q", sql, got, want)
		}
	}
	f("")
	f("-- only a comment;\n\n")
	f("SELECT 1;", "SELECT 1")
	f("SELECT 1\n;\n", "SELECT 1")
	f("-- a comment\nCREATE TABLE t\n(\n    a String -- the a; not the end\n);\n\nSELECT 2\n;",
		"CREATE TABLE t\n(\n    a String -- the a; not the end\n)", "SELECT 2")
	f("SELECT 1;  \n  SELECT 2 ;\n", "SELECT 1", "  SELECT 2 ")

	if _, err := statements("test.sql", "SELECT 1;\nSELECT 2\n"); err == nil {
		t.Fatal("an unterminated statement: want an error")
	}
}

func TestEveryMigrationRenders(t *testing.T) {
	for _, version := range []string{"18.16.1", "19.9.1", "24.8"} {
		caps, err := ParseCapabilities(version)
		if err != nil {
			t.Fatal(err)
		}
		boot, ms, err := renderAll(caps, "db")
		if err != nil {
			t.Fatalf("ClickHouse %s: %s", version, err)
		}
		for _, s := range boot {
			if !strings.Contains(s, "IF NOT EXISTS") {
				t.Errorf("ClickHouse %s: bootstrap statement is not idempotent (no IF NOT EXISTS):\n%s", version, s)
			}
		}
		if len(boot) != 2 {
			t.Errorf("ClickHouse %s: bootstrap has %d statements, want 2", version, len(boot))
		}
		for _, m := range ms {
			if len(m.statements) == 0 {
				t.Errorf("ClickHouse %s: migration %d has no statement", version, m.Version)
			}
			for _, s := range m.statements {
				if !strings.Contains(s, "IF NOT EXISTS") {
					t.Errorf("ClickHouse %s: migration %d: statement is not idempotent (no IF NOT EXISTS):\n%s", version, m.Version, s)
				}
			}
		}
	}
}
