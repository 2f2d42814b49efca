// Package chschema is deploywatch's ClickHouse schema: numbered, idempotent
// migrations embedded from migrations/*.sql, rendered for the server's
// capabilities, applied by Migrate and recorded in <database>.schema_migrations.
//
// Migrations name every table with its database (db.table), so Migrate works
// through a connection whose default database is any database, even one that
// does not exist yet. Code that reads and writes the tables connects with the
// database as its default (see Open) and uses bare table names.
//
// A migration file is a text/template rendered with the server's Capabilities
// and DB (the database name, validated by ValidateDatabaseName); its statements
// end with a line ending in `;`. Every statement is idempotent (IF NOT EXISTS):
// running Migrate twice, or twice at once, is harmless. Only identifiers and DDL
// of this package go into the SQL, never values.
//
// The 18.16 rendering (no LowCardinality, no codecs) is the plain one that every
// test runs; newer servers get LowCardinality(String) for low-cardinality columns
// and a compression codec on event payloads.
package chschema

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

//go:embed bootstrap.sql migrations/*.sql
var sqlFS embed.FS

// Migration is one numbered migration file.
type Migration struct {
	Version int    // from the file name: 0001_events.sql is 1
	Name    string // from the file name: 0001_events.sql is "events"
	tmpl    *template.Template
}

var (
	migrationFileRE = regexp.MustCompile(`^([0-9]{4})_([a-z0-9_]+)\.sql$`)
	bootstrap       = mustParse("bootstrap.sql")
	migrations      = mustLoadMigrations()
)

func mustParse(name string) *template.Template {
	text, err := fs.ReadFile(sqlFS, name)
	if err != nil {
		panic(err)
	}
	return template.Must(template.New(path.Base(name)).Option("missingkey=error").Parse(string(text)))
}

// mustLoadMigrations parses the embedded files; they are part of the program,
// so an error is a bug that the package's tests catch.
func mustLoadMigrations() []Migration {
	entries, err := fs.ReadDir(sqlFS, "migrations")
	if err != nil {
		panic(err)
	}
	var ms []Migration
	for _, e := range entries {
		m := migrationFileRE.FindStringSubmatch(e.Name())
		if m == nil {
			panic(fmt.Sprintf("chschema: migration file %q is not named NNNN_name.sql", e.Name()))
		}
		v, _ := strconv.Atoi(m[1])
		if v == 0 || len(ms) > 0 && ms[len(ms)-1].Version == v {
			panic(fmt.Sprintf("chschema: migration file %q: version %d is zero or used twice", e.Name(), v))
		}
		ms = append(ms, Migration{Version: v, Name: m[2], tmpl: mustParse("migrations/" + e.Name())})
	}
	return ms // ReadDir sorts by name, so by version
}

// Migrations returns all migrations in order.
func Migrations() []Migration { return slices.Clone(migrations) }

// templateData is what the migration templates see.
type templateData struct {
	Capabilities
	DB string
}

// Str is the type of a low-cardinality string column (service, env, status ...).
func (d templateData) Str() string {
	if d.LowCardinality {
		return "LowCardinality(String)"
	}
	return "String"
}

// Codec returns a column's CODEC clause, or nothing where codecs are missing.
func (d templateData) Codec(codecs string) string {
	if d.Codecs {
		return " CODEC(" + codecs + ")"
	}
	return ""
}

func render(t *template.Template, caps Capabilities, database string) (string, error) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, templateData{Capabilities: caps, DB: database}); err != nil {
		return "", fmt.Errorf("cannot render %s: %w", t.Name(), err)
	}
	return buf.String(), nil
}

// statements splits a rendered file into its statements, without comment lines
// and without the closing `;`.
func statements(name, sql string) ([]string, error) {
	var out []string
	var cur []string
	for _, line := range strings.Split(sql, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		if !strings.HasSuffix(trimmed, ";") {
			cur = append(cur, line)
			continue
		}
		if last := strings.TrimSuffix(strings.TrimRight(line, " \t\r"), ";"); strings.TrimSpace(last) != "" {
			cur = append(cur, last)
		}
		if len(cur) > 0 {
			out = append(out, strings.Join(cur, "\n"))
		}
		cur = nil
	}
	if len(cur) > 0 {
		return nil, fmt.Errorf("%s: the statement at its end has no closing `;`", name)
	}
	return out, nil
}

// Render returns the full DDL script (bootstrap, then every migration) as Migrate
// would run it against a server with caps, for review and golden files.
func Render(caps Capabilities, database string) (string, error) {
	if err := ValidateDatabaseName(database); err != nil {
		return "", err
	}
	var b strings.Builder
	text, err := render(bootstrap, caps, database)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "-- ClickHouse %s, database %s\n\n-- bootstrap\n%s", caps.Version, database, text)
	for _, m := range migrations {
		text, err := render(m.tmpl, caps, database)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "\n-- migration %04d_%s\n%s", m.Version, m.Name, text)
	}
	return b.String(), nil
}

type renderedMigration struct {
	Migration
	statements []string
}

func renderAll(caps Capabilities, database string) (boot []string, ms []renderedMigration, err error) {
	text, err := render(bootstrap, caps, database)
	if err != nil {
		return nil, nil, err
	}
	if boot, err = statements(bootstrap.Name(), text); err != nil {
		return nil, nil, err
	}
	for _, m := range migrations {
		text, err := render(m.tmpl, caps, database)
		if err != nil {
			return nil, nil, err
		}
		stmts, err := statements(m.tmpl.Name(), text)
		if err != nil {
			return nil, nil, err
		}
		ms = append(ms, renderedMigration{Migration: m, statements: stmts})
	}
	return boot, ms, nil
}

// Migrate creates database if needed and applies the migrations it has not
// recorded yet, in order; it returns the versions it applied. It is safe to run
// repeatedly and concurrently: a migration that two runs apply at once runs twice,
// harmlessly. logger (nil discards) gets one line per applied migration.
func Migrate(ctx context.Context, conn driver.Conn, database string, logger *slog.Logger) (applied []int, err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := ValidateDatabaseName(database); err != nil {
		return nil, err
	}
	caps, err := DetectCapabilities(ctx, conn)
	if err != nil {
		return nil, err
	}
	boot, ms, err := renderAll(caps, database)
	if err != nil {
		return nil, err
	}
	for _, stmt := range boot {
		if err := conn.Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("cannot prepare database %s for migrations: %w", database, err)
		}
	}
	done, err := appliedVersions(ctx, conn, database)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if _, ok := done[m.Version]; ok {
			continue
		}
		for i, stmt := range m.statements {
			if err := conn.Exec(ctx, stmt); err != nil {
				return applied, fmt.Errorf("cannot apply migration %04d_%s (statement %d of %d) to database %s: %w",
					m.Version, m.Name, i+1, len(m.statements), database, err)
			}
		}
		if err := record(ctx, conn, database, m.Migration); err != nil {
			return applied, err
		}
		applied = append(applied, m.Version)
		logger.Info("applied ClickHouse migration", "database", database, "version", m.Version, "name", m.Name,
			"server", caps.Version)
	}
	return applied, nil
}

func record(ctx context.Context, conn driver.Conn, database string, m Migration) error {
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+database+".schema_migrations (version, name, applied_at)")
	if err != nil {
		return fmt.Errorf("cannot record migration %04d_%s: %w", m.Version, m.Name, err)
	}
	defer batch.Abort()
	if err := batch.Append(uint32(m.Version), m.Name, time.Now().UTC()); err != nil {
		return fmt.Errorf("cannot record migration %04d_%s: %w", m.Version, m.Name, err)
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("cannot record migration %04d_%s: %w", m.Version, m.Name, err)
	}
	return nil
}

// appliedVersions returns when each recorded version was first applied.
func appliedVersions(ctx context.Context, conn driver.Conn, database string) (map[int]time.Time, error) {
	rows, err := conn.Query(ctx, "SELECT version, min(applied_at) FROM "+database+".schema_migrations GROUP BY version")
	if err != nil {
		return nil, fmt.Errorf("cannot read %s.schema_migrations: %w", database, err)
	}
	defer rows.Close()
	done := map[int]time.Time{}
	for rows.Next() {
		var v uint32
		var at time.Time
		if err := rows.Scan(&v, &at); err != nil {
			return nil, fmt.Errorf("cannot read %s.schema_migrations: %w", database, err)
		}
		done[int(v)] = at
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read %s.schema_migrations: %w", database, err)
	}
	return done, nil
}

// MigrationStatus tells whether a migration has been applied to a database.
type MigrationStatus struct {
	Migration
	Applied   bool
	AppliedAt time.Time // when first applied; zero if pending
}

// Status lists every migration, applied or pending, for database. It changes
// nothing: a database without schema_migrations has every migration pending.
func Status(ctx context.Context, conn driver.Conn, database string) ([]MigrationStatus, error) {
	if err := ValidateDatabaseName(database); err != nil {
		return nil, err
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = 'schema_migrations'",
		database).Scan(&n); err != nil {
		return nil, fmt.Errorf("cannot look for %s.schema_migrations: %w", database, err)
	}
	done := map[int]time.Time{}
	if n > 0 {
		var err error
		if done, err = appliedVersions(ctx, conn, database); err != nil {
			return nil, err
		}
	}
	out := make([]MigrationStatus, 0, len(migrations))
	for _, m := range migrations {
		at, ok := done[m.Version]
		out = append(out, MigrationStatus{Migration: m, Applied: ok, AppliedAt: at})
	}
	return out, nil
}
