// Command deploywatch links every deploy to its effect on errors, latency and
// traffic. `deploywatch serve` runs the pipeline; the other commands talk to it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/peterbourgon/ff/v3/ffyaml"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "deploywatch:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := &ffcli.Command{
		Name:       "deploywatch",
		ShortUsage: "deploywatch <command> [flags]",
		ShortHelp:  "how did that push affect performance?",
		LongHelp: "deploywatch takes deploy events, traffic rates and response times, keeps them as an\n" +
			"event log in NATS JetStream, projects them into ClickHouse, and links every deploy to\n" +
			"its effect on errors, latency and traffic.\n\n" +
			"Every flag can also be set as DEPLOYWATCH_<FLAG_NAME> (e.g. --api-tokens as\n" +
			"DEPLOYWATCH_API_TOKENS) or in the YAML file given with --config; a flag wins over\n" +
			"the environment, which wins over the file.",
		FlagSet: flag.NewFlagSet("deploywatch", flag.ContinueOnError),
		Subcommands: []*ffcli.Command{
			serveCommand(stderr),
			migrateCommand(stdout, stderr),
			markCommand(stdout, stderr),
			deploysCommand(stdout),
			dashboardsCommand(stdout),
			alertsCommand(stdout),
			silenceCommand(stdout),
			ackCommand(stdout),
			rulesCommand(stdout),
			reportCommand(stdout),
			rollbackAgentCommand(stderr),
			replayCommand(stdout, stderr),
			versionCommand(stdout),
		},
		Exec: func(context.Context, []string) error { return flag.ErrHelp },
	}
	setOutput(root, stderr)
	if err := root.Parse(args); err != nil {
		return err
	}
	return root.Run(ctx)
}

// setOutput sends every command's usage text to w.
func setOutput(c *ffcli.Command, w io.Writer) {
	c.FlagSet.SetOutput(w)
	for _, sub := range c.Subcommands {
		setOutput(sub, w)
	}
}

// settings are how every command reads its flags: flag, then environment, then file.
func settings() []ff.Option {
	return []ff.Option{
		ff.WithEnvVarPrefix("DEPLOYWATCH"),
		ff.WithConfigFileFlag("config"),
		ff.WithConfigFileParser(ffyaml.Parser),
	}
}

// newLogger builds the process' logger from --log-level and --log-format.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level must be debug, info, warn or error, got %q", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, got %q", format)
}

func versionCommand(stdout io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("deploywatch version", flag.ContinueOnError)
	return &ffcli.Command{
		Name:       "version",
		ShortUsage: "deploywatch version",
		ShortHelp:  "print the version",
		FlagSet:    fs,
		Exec: func(context.Context, []string) error {
			fmt.Fprintln(stdout, "deploywatch", version)
			return nil
		},
	}
}
