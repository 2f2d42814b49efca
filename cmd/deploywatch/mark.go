package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/deploywatch/deploywatch/schema"
	"github.com/peterbourgon/ff/v3/ffcli"
)

func markCommand(stdout, stderr io.Writer) *ffcli.Command {
	return &ffcli.Command{
		Name:        "mark",
		ShortUsage:  "deploywatch mark deploy [flags]",
		ShortHelp:   "record an event from a CI pipeline or chat bot",
		FlagSet:     flag.NewFlagSet("deploywatch mark", flag.ContinueOnError),
		Subcommands: []*ffcli.Command{markDeployCommand(stdout, stderr)},
		Exec:        func(context.Context, []string) error { return flag.ErrHelp },
	}
}

func markDeployCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("deploywatch mark deploy", flag.ContinueOnError)
	var (
		server   = fs.String("server", "http://127.0.0.1:8080", "deploywatch server URL")
		token    = fs.String("token", "", "API token (one of the server's --api-tokens)")
		id       = fs.String("id", "", "deploy id; give the one printed for 'started' to later mark the same deploy 'succeeded'")
		service  = fs.String("service", "", "service deployed (required)")
		env      = fs.String("env", "", "environment, e.g. production (required)")
		ver      = fs.String("version", "", "version now deployed (required)")
		previous = fs.String("previous-version", "", "version it replaced")
		status   = fs.String("status", "succeeded", "started, succeeded, failed or rolled_back")
		started  = fs.String("started-at", "", "RFC 3339 start time (default: now, for --status started)")
		finished = fs.String("finished-at", "", "RFC 3339 finish time (default: now, unless --status started)")
		sha      = fs.String("sha", "", "commit SHA deployed")
		commitAt = fs.String("commit-time", "", "RFC 3339 time of that commit, for lead time")
		author   = fs.String("author", "", "who deployed")
		strategy = fs.String("strategy", "", "rolling, canary, blue_green or flag")
		url      = fs.String("url", "", "link to the pipeline run")
		labels   = fs.String("labels", "", "comma-separated key=value labels, e.g. team=payments,region=eu")
		timeout  = fs.Duration("timeout", 30*time.Second, "how long to wait for the server")
	)
	fs.String("config", "", "YAML file with these flags")
	return &ffcli.Command{
		Name:       "deploy",
		ShortUsage: "deploywatch mark deploy --service S --env E --version V [--status succeeded] [flags]",
		ShortHelp:  "post a deploy and print its id",
		LongHelp: "Posts a deploy to a deploywatch server and prints the deploy's id. Exits non-zero with\n" +
			"the server's error when it is refused. Example for a CI pipeline:\n\n" +
			"  deploywatch mark deploy --server https://deploywatch.internal --token $DW_TOKEN \\\n" +
			"    --service checkout --env production --version $GIT_TAG --sha $GIT_SHA",
		FlagSet: fs,
		Options: settings(),
		Exec: func(ctx context.Context, _ []string) error {
			now := schema.At(time.Now())
			d := schema.Deploy{
				ID: *id, Service: *service, Env: *env, Version: *ver, PreviousVersion: *previous,
				Status: schema.DeployStatus(*status), Author: *author, Strategy: schema.Strategy(*strategy), URL: *url,
			}
			var err error
			if d.StartedAt, err = flagTime("--started-at", *started); err != nil {
				return err
			}
			if d.FinishedAt, err = flagTime("--finished-at", *finished); err != nil {
				return err
			}
			if d.Status == schema.DeployStarted && d.StartedAt.IsZero() {
				d.StartedAt = now
			}
			if d.Status != schema.DeployStarted && d.FinishedAt.IsZero() {
				d.FinishedAt = now
			}
			if *sha != "" {
				c := schema.Commit{SHA: *sha}
				if c.Time, err = flagTime("--commit-time", *commitAt); err != nil {
					return err
				}
				d.Commits = []schema.Commit{c}
			}
			if *labels != "" {
				d.Labels = map[string]string{}
				for _, kv := range strings.Split(*labels, ",") {
					k, v, ok := strings.Cut(kv, "=")
					if !ok {
						return fmt.Errorf("--labels: %q is not key=value", kv)
					}
					d.Labels[strings.TrimSpace(k)] = strings.TrimSpace(v)
				}
			}
			ctx, cancel := context.WithTimeout(ctx, *timeout)
			defer cancel()
			ids, err := postDeploy(ctx, apiClient{server: *server, token: *token, serverFlag: "--server"}, d)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, strings.Join(ids, "\n"))
			return nil
		},
	}
}

func flagTime(name, value string) (schema.Time, error) {
	if value == "" {
		return schema.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, value)
	if err != nil {
		return schema.Time{}, fmt.Errorf("%s must be an RFC 3339 time such as 2026-11-22T10:04:05Z: %v", name, err)
	}
	return schema.At(t), nil
}

// postDeploy posts d and returns the ids the server accepted, or the server's
// error with every field problem it named.
func postDeploy(ctx context.Context, c apiClient, d schema.Deploy) ([]string, error) {
	var answer struct {
		IDs []string `json:"ids"`
	}
	err := c.call(ctx, http.MethodPost, "/api/v1/deploys", d, &answer)
	var refused *apiError
	if errors.As(err, &refused) {
		return nil, fmt.Errorf("%s refused the deploy (%s): %s%s", refused.URL, refused.Status, refused.Message, refused.fieldLines())
	}
	return answer.IDs, err
}
