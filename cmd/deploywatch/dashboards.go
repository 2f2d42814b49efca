package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/deploywatch/deploywatch/dashboards"
	"github.com/peterbourgon/ff/v3/ffcli"
)

func dashboardsCommand(stdout io.Writer) *ffcli.Command {
	return &ffcli.Command{
		Name:       "dashboards",
		ShortUsage: "deploywatch dashboards <generate|push> [flags]",
		ShortHelp:  "generate deploywatch's Grafana dashboards, or push them to Grafana",
		LongHelp: "deploywatch's Grafana dashboards: service deploy impact, fleet deploys, delivery\n" +
			"performance (DORA) and pipeline health. They query ClickHouse through the official\n" +
			"ClickHouse datasource (grafana-clickhouse-datasource) and deploywatch's /metrics\n" +
			"through a Prometheus datasource.",
		FlagSet:     flag.NewFlagSet("deploywatch dashboards", flag.ContinueOnError),
		Subcommands: []*ffcli.Command{dashboardsGenerateCommand(stdout), dashboardsPushCommand(stdout)},
		Exec:        func(context.Context, []string) error { return flag.ErrHelp },
	}
}

func dashboardsGenerateCommand(stdout io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("deploywatch dashboards generate", flag.ContinueOnError)
	out := fs.String("out", "", "directory to write into (required); created if missing")
	path := fs.String("dashboards-path", dashboards.DefaultDashboardsPath,
		"where Grafana will read the dashboard JSON files from (written into the dashboard provider)")
	return &ffcli.Command{
		Name:       "generate",
		ShortUsage: "deploywatch dashboards generate --out DIR [--dashboards-path PATH]",
		ShortHelp:  "write the dashboards' JSON and Grafana provisioning files",
		LongHelp: "Writes into DIR:\n" +
			"  dashboards/*.json                        the dashboards, one file each\n" +
			"  provisioning/datasources/deploywatch.yaml the ClickHouse and Prometheus datasources\n" +
			"                                           (${VAR} placeholders Grafana fills from its environment)\n" +
			"  provisioning/dashboards/deploywatch.yaml  a dashboard provider reading --dashboards-path\n" +
			"Copy the provisioning files into Grafana's provisioning directory and the JSON files\n" +
			"to --dashboards-path, then restart Grafana.",
		FlagSet: fs,
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("dashboards generate takes no arguments, got %q", args)
			}
			if *out == "" {
				return fmt.Errorf("--out is required: the directory to write the files into")
			}
			files, err := dashboards.Generate(dashboards.Options{DashboardsPath: *path})
			if err != nil {
				return err
			}
			if err := dashboards.WriteFiles(*out, files); err != nil {
				return err
			}
			for _, f := range files {
				fmt.Fprintln(stdout, "wrote", f.Path)
			}
			return nil
		},
	}
}

func dashboardsPushCommand(stdout io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("deploywatch dashboards push", flag.ContinueOnError)
	grafanaURL := fs.String("grafana-url", "", "Grafana's base URL, e.g. https://grafana.example.com (or DEPLOYWATCH_GRAFANA_URL)")
	token := fs.String("token", "", "a Grafana service account token with the Editor role (or DEPLOYWATCH_GRAFANA_TOKEN, "+
		"which keeps it out of the process list)")
	folder := fs.String("folder", dashboards.FolderTitle, "title of the Grafana folder to put the dashboards in; created when missing")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for Grafana")
	return &ffcli.Command{
		Name:       "push",
		ShortUsage: "deploywatch dashboards push --grafana-url URL --token T [--folder F]",
		ShortHelp:  "create or update the dashboards in Grafana through its HTTP API",
		LongHelp: "Creates the folder --folder (found by title, created when missing) and creates or\n" +
			"updates every dashboard in it (POST /api/dashboards/db with overwrite): Grafana keys\n" +
			"them by their fixed uids, so pushing again updates them in place. A dashboard of the\n" +
			"same title and another uid in the folder stops the push before anything is written\n" +
			"(Grafana would save over it and keep its uid): delete or rename it. The dashboards'\n" +
			"datasource variables pick any ClickHouse and Prometheus datasource of the Grafana\n" +
			"instance; they start on the ones `dashboards generate` provisions.",
		FlagSet: fs,
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("dashboards push takes no arguments, got %q", args)
			}
			if *grafanaURL == "" {
				*grafanaURL = os.Getenv("DEPLOYWATCH_GRAFANA_URL")
			}
			if *token == "" {
				*token = os.Getenv("DEPLOYWATCH_GRAFANA_TOKEN")
			}
			if *grafanaURL == "" {
				return fmt.Errorf("--grafana-url is required: Grafana's base URL, e.g. https://grafana.example.com")
			}
			if *token == "" {
				return fmt.Errorf("--token is required: a Grafana service account token with the Editor role " +
					"(Administration → Service accounts), or set DEPLOYWATCH_GRAFANA_TOKEN")
			}
			if strings.TrimSpace(*folder) == "" {
				return fmt.Errorf("--folder must not be empty")
			}
			ctx, cancel := context.WithTimeout(ctx, *timeout)
			defer cancel()
			return pushDashboards(ctx, stdout, &dashboards.Grafana{URL: *grafanaURL, Token: *token, Client: http.DefaultClient}, *folder)
		},
	}
}

func pushDashboards(ctx context.Context, stdout io.Writer, g *dashboards.Grafana, folder string) error {
	ds, err := dashboards.All()
	if err != nil {
		return err
	}
	folderUID, err := g.EnsureFolder(ctx, folder)
	if err != nil {
		return err
	}
	results, err := g.PushAll(ctx, ds, folderUID)
	for i, res := range results {
		// res.URL starts with Grafana's sub-path (/grafana/d/...), which
		// --grafana-url ends with: resolved, not appended.
		fmt.Fprintf(stdout, "%s %s (version %d) %s\n", res.Status, *ds[i].Uid, res.Version, g.URLOf(res.URL))
	}
	return err
}
