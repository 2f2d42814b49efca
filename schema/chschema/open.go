package chschema

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Connection defaults, applied when the DSN does not set them.
const (
	defaultDialTimeout     = 10 * time.Second
	defaultMaxOpenConns    = 8
	defaultMaxIdleConns    = 4
	defaultConnMaxLifetime = time.Hour
)

// errUnknownDatabase is ClickHouse's UNKNOWN_DATABASE.
const errUnknownDatabase = 81

var databaseNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ValidateDatabaseName reports whether name can be written into DDL unquoted.
func ValidateDatabaseName(name string) error {
	if !databaseNameRE.MatchString(name) {
		return fmt.Errorf("invalid ClickHouse database name %q: it must match %s", name, databaseNameRE)
	}
	return nil
}

// DatabaseFromDSN returns the database a DSN names, "default" when it names none
// (the server's default for the user, usually "default").
func DatabaseFromDSN(dsn string) (string, error) {
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return "", fmt.Errorf("cannot parse the ClickHouse DSN: %w", err)
	}
	db := opts.Auth.Database
	if db == "" {
		db = "default"
	}
	if err := ValidateDatabaseName(db); err != nil {
		return "", err
	}
	return db, nil
}

// Open connects to a ClickHouse server over the native protocol (the only one
// that works with 18.16), e.g. clickhouse://127.0.0.1:9000/deploywatch, and pings
// it. Unless the DSN sets them, it dials for at most 10 s and keeps at most 8
// connections open. The DSN's database becomes the connection's default; if it
// does not exist yet it is created, so a first start can open, then Migrate.
func Open(ctx context.Context, dsn string) (driver.Conn, error) {
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("cannot parse the ClickHouse DSN: %w", err)
	}
	if opts.Protocol != clickhouse.Native {
		return nil, fmt.Errorf("cannot use the ClickHouse DSN: it selects the %s protocol; use clickhouse://host:9000/db (native)", opts.Protocol)
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = defaultDialTimeout
	}
	if opts.MaxOpenConns == 0 {
		opts.MaxOpenConns = defaultMaxOpenConns
	}
	if opts.MaxIdleConns == 0 {
		opts.MaxIdleConns = min(defaultMaxIdleConns, opts.MaxOpenConns)
	}
	if opts.ConnMaxLifetime == 0 {
		opts.ConnMaxLifetime = defaultConnMaxLifetime
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("cannot open a ClickHouse connection to %v: %w", opts.Addr, err)
	}
	err = conn.Ping(ctx)
	var ex *clickhouse.Exception
	if errors.As(err, &ex) && ex.Code == errUnknownDatabase && opts.Auth.Database != "" {
		if err = createDatabase(ctx, *opts); err == nil {
			err = conn.Ping(ctx)
		}
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("cannot connect to ClickHouse at %v: %w", opts.Addr, err)
	}
	return conn, nil
}

// createDatabase creates opts' database through a connection to the user's
// default database.
func createDatabase(ctx context.Context, opts clickhouse.Options) error {
	db := opts.Auth.Database
	if err := ValidateDatabaseName(db); err != nil {
		return err
	}
	opts.Auth.Database = ""
	opts.MaxOpenConns, opts.MaxIdleConns = 1, 1
	conn, err := clickhouse.Open(&opts)
	if err != nil {
		return fmt.Errorf("cannot open a ClickHouse connection to create database %s: %w", db, err)
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
		return fmt.Errorf("cannot create database %s: %w", db, err)
	}
	return nil
}

// WithDatabase returns dsn naming database db instead of its own.
func WithDatabase(dsn, db string) (string, error) {
	if err := ValidateDatabaseName(db); err != nil {
		return "", err
	}
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "", fmt.Errorf("cannot parse the ClickHouse DSN: it must look like clickhouse://host:9000/db")
	}
	u.Path = "/" + db
	return u.String(), nil
}
