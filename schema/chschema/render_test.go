package chschema_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deploywatch/deploywatch/schema/chschema"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestRenderGolden(t *testing.T) {
	f := func(version string) {
		t.Helper()
		caps, err := chschema.ParseCapabilities(version)
		if err != nil {
			t.Fatalf("cannot parse %q: %s", version, err)
		}
		got, err := chschema.Render(caps, "deploywatch")
		if err != nil {
			t.Fatalf("cannot render for %s: %s", version, err)
		}
		golden := filepath.Join("testdata", "clickhouse-"+version+".sql")
		if *update {
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("cannot read %s (run go test -update to create it): %s", golden, err)
		}
		if got != string(want) {
			t.Errorf("DDL for ClickHouse %s differs from %s (go test -update rewrites it):\n%s", version, golden, got)
		}
	}
	f("18.16.1")
	f("24.8")
}

func TestRenderPlainFor1816(t *testing.T) {
	caps, err := chschema.ParseCapabilities("18.16.1")
	if err != nil {
		t.Fatal(err)
	}
	sql, err := chschema.Render(caps, "db")
	if err != nil {
		t.Fatal(err)
	}
	for _, feature := range []string{"LowCardinality", "CODEC", "TTL"} {
		if strings.Contains(sql, feature) {
			t.Errorf("the 18.16 DDL uses %s, which 18.16 lacks", feature)
		}
	}
}

func TestRenderRejectsABadDatabaseName(t *testing.T) {
	caps, _ := chschema.ParseCapabilities("18.16.1")
	for _, db := range []string{"", "1db", "db-x", "db; DROP TABLE x", "db.x", "`db`"} {
		if _, err := chschema.Render(caps, db); err == nil {
			t.Errorf("Render with database %q: want an error", db)
		}
	}
}

func TestParseCapabilities(t *testing.T) {
	f := func(version string, want chschema.Capabilities) {
		t.Helper()
		got, err := chschema.ParseCapabilities(version)
		if err != nil {
			t.Fatalf("ParseCapabilities(%q): %s", version, err)
		}
		if got != want {
			t.Fatalf("ParseCapabilities(%q):\n got %+v\nwant %+v", version, got, want)
		}
	}
	f("18.16.1", chschema.Capabilities{Version: "18.16.1", Major: 18, Minor: 16})
	f("19.1.6", chschema.Capabilities{Version: "19.1.6", Major: 19, Minor: 1, Codecs: true})
	f("19.6.2.11", chschema.Capabilities{Version: "19.6.2.11", Major: 19, Minor: 6, Codecs: true, TTL: true})
	f("19.9.1", chschema.Capabilities{Version: "19.9.1", Major: 19, Minor: 9, Codecs: true, TTL: true, LowCardinality: true})
	f("24.8.4.13", chschema.Capabilities{Version: "24.8.4.13", Major: 24, Minor: 8, Codecs: true, TTL: true, LowCardinality: true})
	f(" 25.3.1.2703-lts\n", chschema.Capabilities{Version: "25.3.1.2703-lts", Major: 25, Minor: 3, Codecs: true, TTL: true, LowCardinality: true})

	for _, bad := range []string{"", "24", "x.y", "24.x.1", "-1.2"} {
		if _, err := chschema.ParseCapabilities(bad); err == nil {
			t.Errorf("ParseCapabilities(%q): want an error", bad)
		}
	}
}

func TestMigrationsAreNumberedInOrder(t *testing.T) {
	ms := chschema.Migrations()
	if len(ms) == 0 {
		t.Fatal("no migrations embedded")
	}
	for i, m := range ms {
		if m.Version != i+1 {
			t.Errorf("migration %d (%s) has version %d; want versions 1, 2, 3 ... without gaps", i, m.Name, m.Version)
		}
	}
}
