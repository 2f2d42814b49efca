package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/deploywatch/deploywatch/schema/chschema"
	"github.com/peterbourgon/ff/v3/ffcli"
)

func migrateCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("deploywatch migrate", flag.ContinueOnError)
	fs.String("config", "", "YAML file with these flags")
	dsn := fs.String("clickhouse-dsn", "", "ClickHouse to migrate, e.g. clickhouse://127.0.0.1:19000/deploywatch (required; serve migrates its own at start)")
	status := fs.Bool("status", false, "list applied and pending migrations instead of applying them")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	return &ffcli.Command{
		Name:       "migrate",
		ShortUsage: "deploywatch migrate --clickhouse-dsn DSN [--status]",
		ShortHelp:  "apply the ClickHouse schema migrations (serve also does at start)",
		LongHelp: "Creates the database the DSN names and applies every migration not yet recorded in its\n" +
			"schema_migrations table. Every migration is idempotent, so running it twice, or while\n" +
			"deploywatch serve runs, is harmless.",
		FlagSet: fs,
		Options: settings(),
		Exec: func(ctx context.Context, _ []string) error {
			if *dsn == "" {
				return errors.New("--clickhouse-dsn is required, e.g. --clickhouse-dsn clickhouse://127.0.0.1:19000/deploywatch")
			}
			log, err := newLogger(stderr, *logLevel, "text")
			if err != nil {
				return err
			}
			database, err := chschema.DatabaseFromDSN(*dsn)
			if err != nil {
				return err
			}
			conn, err := chschema.Open(ctx, *dsn)
			if err != nil {
				return err
			}
			defer conn.Close()
			if !*status {
				applied, err := chschema.Migrate(ctx, conn, database, log)
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "applied %d migration(s) to %s\n", len(applied), database)
			}
			list, err := chschema.Status(ctx, conn, database)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tNAME\tSTATE\tAPPLIED AT")
			for _, m := range list {
				state, at := "pending", ""
				if m.Applied {
					state, at = "applied", m.AppliedAt.UTC().Format("2006-01-02 15:04:05Z")
				}
				fmt.Fprintf(tw, "%04d\t%s\t%s\t%s\n", m.Version, m.Name, state, at)
			}
			return tw.Flush()
		},
	}
}
