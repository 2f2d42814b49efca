package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/deploywatch/deploywatch/processors"
	"github.com/deploywatch/deploywatch/schema/chschema"
	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/schollz/progressbar/v3"
)

// replayConfig is what `deploywatch replay` can be told.
type replayConfig struct {
	nats                        natsClientFlags
	clickhouseDSN, intoDatabase string
	impact                      impactFlags
	quiet                       bool
}

func replayCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("deploywatch replay", flag.ContinueOnError)
	var c replayConfig
	fs.String("config", "", "YAML file with these flags")
	c.nats.register(fs, "the NATS holding the event log (serve's embedded one listens on --nats-listen)")
	fs.StringVar(&c.clickhouseDSN, "clickhouse-dsn", "clickhouse://127.0.0.1:19000/deploywatch", "the ClickHouse server to write to (serve's local one listens on --clickhouse-listen)")
	fs.StringVar(&c.intoDatabase, "into-database", "", "a new database to replay into, e.g. deploywatch_replay (required; it must not have tables yet)")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress bar")
	c.impact.register(fs)
	return &ffcli.Command{
		Name:       "replay",
		ShortUsage: "deploywatch replay --into-database NAME [flags]",
		ShortHelp:  "re-run the processors over the stored event log into fresh tables",
		LongHelp: "Reads everything the changes and metrics streams hold, in the order JetStream stored it,\n" +
			"and re-runs the ClickHouse projections and the deploy impact analysis into the tables of\n" +
			"a new database. The analysis goes by the events' own times, so the verdicts are those of\n" +
			"the live run (or, with a different --impact-config, a backtest of new rules). Nothing is\n" +
			"published: the event log and the live tables stay as they are.",
		FlagSet: fs,
		Options: settings(),
		Exec: func(ctx context.Context, _ []string) error {
			return replay(ctx, c, stdout, stderr)
		},
	}
}

func replay(ctx context.Context, c replayConfig, stdout, stderr io.Writer) error {
	if c.intoDatabase == "" {
		return errors.New("--into-database is required: the name of a new database for the replayed tables, e.g. --into-database deploywatch_replay")
	}
	analysis, err := loadImpactConfig(c.impact)
	if err != nil {
		return err
	}
	source, err := chschema.DatabaseFromDSN(c.clickhouseDSN)
	if err != nil {
		return err
	}
	if source == c.intoDatabase {
		return fmt.Errorf("--into-database %s is the database of --clickhouse-dsn; replay writes into a new one", c.intoDatabase)
	}
	dsn, err := chschema.WithDatabase(c.clickhouseDSN, c.intoDatabase)
	if err != nil {
		return fmt.Errorf("--into-database: %w", err)
	}
	conn, err := chschema.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close()
	var tables uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ?", c.intoDatabase).Scan(&tables); err != nil {
		return fmt.Errorf("cannot look into database %s: %w", c.intoDatabase, err)
	}
	if tables > 0 {
		return fmt.Errorf("database %s already has %d tables; replay into a new name, or drop it first (DROP DATABASE %s)", c.intoDatabase, tables, c.intoDatabase)
	}
	log, err := newLogger(stderr, "warn", "text")
	if err != nil {
		return err
	}
	if _, err := chschema.Migrate(ctx, conn, c.intoDatabase, log); err != nil {
		return err
	}

	nc, js, err := connectJetStream(c.nats.options("deploywatch replay", log))
	if err != nil {
		return err
	}
	defer nc.Close()

	cfg := processors.ReplayConfig{Analyzer: analysis}
	var bar *progressbar.ProgressBar
	if !c.quiet {
		bar = progressbar.NewOptions64(-1,
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription("replaying"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetItsString("messages"),
			progressbar.OptionShowIts(),
			progressbar.OptionThrottle(100*time.Millisecond),
		)
		cfg.Progress = func(done, total int64) {
			bar.ChangeMax64(total)
			_ = bar.Set64(done)
		}
	}
	start := time.Now()
	stats, err := processors.Replay(ctx, js, conn, conn, cfg)
	if bar != nil {
		_ = bar.Finish()
		fmt.Fprintln(stderr)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "replayed %d messages into %s in %s: %d verdicts, %d messages that do not decode skipped\n",
		stats.Messages, c.intoDatabase, time.Since(start).Round(time.Millisecond), stats.Verdicts, stats.Skipped)
	return nil
}
