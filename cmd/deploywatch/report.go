package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/deploywatch/deploywatch/dashboards/report"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/peterbourgon/ff/v3/ffcli"
)

func reportCommand(stdout io.Writer) *ffcli.Command {
	return &ffcli.Command{
		Name:        "report",
		ShortUsage:  "deploywatch report weekly [flags]",
		ShortHelp:   "write the weekly delivery performance (DORA) report",
		LongHelp:    "Reads the DORA figures from a running deploywatch server (GET /api/v1/dora) and\nwrites them as a report for people who do not open Grafana.",
		FlagSet:     flag.NewFlagSet("deploywatch report", flag.ContinueOnError),
		Subcommands: []*ffcli.Command{reportWeeklyCommand(stdout)},
		Exec:        func(context.Context, []string) error { return flag.ErrHelp },
	}
}

func reportWeeklyCommand(stdout io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("deploywatch report weekly", flag.ContinueOnError)
	var (
		server  = fs.String("server", "http://127.0.0.1:8080", "deploywatch server URL (where serve's --listen is)")
		urlFlag = fs.String("url", "", "the same as --server, as the deploys commands name it; --server wins")
		token   = fs.String("token", "", "API token, one of the server's --api-tokens (or DEPLOYWATCH_TOKEN)")
		weeks   = fs.Int("weeks", 8, "how many weeks (Monday to Sunday, UTC), the current one included, up to "+strconv.Itoa(schema.MaxDoraWeeks))
		service = fs.String("service", "", "only this service (default: all)")
		env     = fs.String("env", "", "the environment that counts as production (default: production)")
		team    = fs.String("team", "", "only deploys labelled with this team (default: all)")
		format  = fs.String("format", "", "markdown or html (default: html when --out ends in .html or .htm, else markdown)")
		out     = fs.String("out", "", "write the report to this file instead of stdout")
		title   = fs.String("title", "", `the report's title (default "Delivery performance: weekly report")`)
		timeout = fs.Duration("timeout", 30*time.Second, "how long to wait for the server")
	)
	fs.String("config", "", "YAML file with these flags")
	return &ffcli.Command{
		Name:       "weekly",
		ShortUsage: "deploywatch report weekly --server URL [--token T] [--weeks N] [--service S] [--env E] [--team T] [--format markdown|html] [--out FILE]",
		ShortHelp:  "the four keys of the last week against the weeks before, with charts and notable deploys",
		LongHelp: "Writes the report a manager reads in a minute: deploy frequency, lead time for changes,\n" +
			"change failure rate and time to restore of the last complete week, against the week\n" +
			"before and the median of the weeks before that, with their DORA bands; every week in a\n" +
			"table; a chart per key; and the notable deploys (rollbacks, bad verdicts, incidents,\n" +
			"the slowest lead times). The current week, not over yet, is shown as \"so far\".\n\n" +
			"Markdown suits chat and pull requests; HTML is one self-contained file (inline SVG and\n" +
			"styles, no scripts or external resources) to attach or send as an e-mail body:\n\n" +
			"  deploywatch report weekly --server https://deploywatch.internal --team payments \\\n" +
			"    --format html --out weekly.html",
		FlagSet: fs,
		Options: settings(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("report weekly takes no arguments, got %q: choose what to report with --service, --env and --team", args)
			}
			if *weeks < 1 || *weeks > schema.MaxDoraWeeks {
				return fmt.Errorf("--weeks must be from 1 to %d, got %d", schema.MaxDoraWeeks, *weeks)
			}
			render, err := reportFormat(*format, *out)
			if err != nil {
				return err
			}
			q := url.Values{}
			q.Set("weeks", strconv.Itoa(*weeks))
			for name, value := range map[string]string{"service": *service, "env": *env, "team": *team} {
				if value != "" {
					q.Set(name, value)
				}
			}
			ctx, cancel := context.WithTimeout(ctx, *timeout)
			defer cancel()
			c := apiClient{server: *server, token: *token, serverFlag: "--server"}
			if *urlFlag != "" && !flagSet(fs, "server") {
				c.server, c.serverFlag = *urlFlag, "--url"
			}
			var dora schema.DoraReport
			if err := c.call(ctx, http.MethodGet, "/api/v1/dora?"+q.Encode(), nil, &dora); err != nil {
				return doraError(err)
			}
			var b bytes.Buffer
			if err := render(&b, dora, report.Options{Title: *title, GeneratedAt: time.Now()}); err != nil {
				return err
			}
			if *out == "" {
				_, err := b.WriteTo(stdout)
				return err
			}
			if err := os.WriteFile(*out, b.Bytes(), 0o644); err != nil {
				return fmt.Errorf("cannot write the report: %w", err)
			}
			return nil
		},
	}
}

// flagSet reports whether name was given, on the command line, in the
// environment or in the config file.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// reportFormat picks the renderer from --format, or from --out's extension.
func reportFormat(format, out string) (func(io.Writer, schema.DoraReport, report.Options) error, error) {
	if format == "" {
		format = "markdown"
		if ext := strings.ToLower(filepath.Ext(out)); ext == ".html" || ext == ".htm" {
			format = "html"
		}
	}
	switch strings.ToLower(format) {
	case "markdown", "md":
		return report.Markdown, nil
	case "html":
		return report.HTML, nil
	}
	return nil, fmt.Errorf("--format must be markdown or html, got %q", format)
}

// doraError says what to do about the answers GET /api/v1/dora can fail with.
func doraError(err error) error {
	var refused *apiError
	if !errors.As(err, &refused) {
		return err // unreachable or not deploywatch: the client's error says so
	}
	switch refused.Code {
	case http.StatusUnauthorized:
		return fmt.Errorf("%s refused the token (%s): pass --token, or set DEPLOYWATCH_TOKEN, to one of the server's --api-tokens", refused.URL, refused.Status)
	case http.StatusServiceUnavailable:
		// Either no DORA reader is wired or its ClickHouse is not answering.
		return fmt.Errorf("%s cannot compute DORA figures (%s: %s): the server reads them from ClickHouse; check serve's log and its ClickHouse (--clickhouse-dsn), then try again", refused.URL, refused.Status, refused.Message)
	case http.StatusNotFound:
		return fmt.Errorf("%s answered %s (%s): this server predates GET /api/v1/dora; upgrade deploywatch serve, or check --server", refused.URL, refused.Status, refused.Message)
	case http.StatusBadRequest:
		return fmt.Errorf("%s refused the request (%s): %s%s", refused.URL, refused.Status, refused.Message, refused.fieldLines())
	}
	return err
}
