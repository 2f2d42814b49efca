package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/deploywatch/deploywatch/alerts"
	"github.com/deploywatch/deploywatch/eventlog"
	"github.com/peterbourgon/ff/v3/ffcli"
)

// agentConfig is everything `deploywatch rollback-agent` can be told.
type agentConfig struct {
	nats         natsClientFlags
	natsReplicas int

	name, services              string
	command, httpURL            string
	httpToken, httpSecret       string
	idempotent                  bool
	timeout                     time.Duration
	attempts                    int
	retryInitial, retryMax      time.Duration
	ackWait, staleAfter, maxAge time.Duration
	shell                       string
	logLevel, logFormat         string
}

func rollbackAgentCommand(stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("deploywatch rollback-agent", flag.ContinueOnError)
	var c agentConfig
	fs.String("config", "", "YAML file with any of these flags as keys (flags and DEPLOYWATCH_* variables win over it)")
	c.nats.register(fs, "deploywatch's NATS: serve's --nats-listen, or the URLs of the NATS cluster")
	fs.IntVar(&c.natsReplicas, "nats-replicas", 1, "replicas of the agent's key-value bucket of run records (3 on a NATS cluster)")
	fs.StringVar(&c.name, "name", "default", "the agent's name: agents of one name share the signals (one of them acts on each) and the run records")
	fs.StringVar(&c.services, "service", "", "comma-separated services whose rollback signals this agent acts on (required)")
	fs.StringVar(&c.command, "command", "", "Go template of the command to run with sh -c, e.g. 'kubectl rollout undo deployment/{{.Service}} -n {{.Env}}'; "+
		"every {{...}} is shell-quoted (see --help)")
	fs.StringVar(&c.httpURL, "http-url", "", "instead of --command: POST the signal's JSON to this URL")
	fs.StringVar(&c.httpToken, "http-token", "", "bearer token sent to --http-url")
	fs.StringVar(&c.httpSecret, "http-secret", "", "sign the POST to --http-url the Standard Webhooks way with this secret (whsec_<base64>, or any text)")
	fs.BoolVar(&c.idempotent, "idempotent", false, "the command may run twice for one signal without harm: a run cut short by the agent's death is then run again "+
		"(otherwise it is left for a person)")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "longest one run may take; the command is then killed")
	fs.IntVar(&c.attempts, "attempts", 5, "runs per signal before giving up")
	fs.DurationVar(&c.retryInitial, "retry-initial-interval", 5*time.Second, "wait after the first failed run (then doubling, with jitter)")
	fs.DurationVar(&c.retryMax, "retry-max-interval", time.Minute, "longest wait between runs")
	fs.DurationVar(&c.ackWait, "ack-wait", 30*time.Second, "how long JetStream waits to hear from the agent about a signal before handing it out again")
	fs.DurationVar(&c.staleAfter, "stale-after", time.Minute, "a run whose agent has not been heard of for this long counts as cut short by the agent's death")
	fs.DurationVar(&c.maxAge, "max-signal-age", time.Hour, "do not act on signals published longer ago than this (0: any age)")
	fs.StringVar(&c.shell, "shell", "/bin/sh", "shell that runs --command with -c")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json")
	return &ffcli.Command{
		Name:       "rollback-agent",
		ShortUsage: "deploywatch rollback-agent --service S[,S...] (--command TEMPLATE | --http-url URL) [flags]",
		ShortHelp:  "act on rollback signals: run a command or call an endpoint, once per signal",
		LongHelp: `Takes the rollback signals of the given services off deploywatch's event log
(deploywatch.signals.rollback.<service> on NATS JetStream) and undoes each deploy:
it runs --command with sh -c, or POSTs the signal to --http-url. On success it
reports the deploy as rolled_back on the changes stream, which closes the loop.

The command is a Go template. It sees .Service .Env .Version (the deploy being
undone) .PreviousVersion (the one to return to) .DeployID .SignalID .Reason
.Rule .AlertID .Severity. The values come from events, so every {{...}} is
shell-quoted: {{.Reason}} is one word whatever it says; do not put {{...}}
inside quotes (that is refused). The same values are in the command's
environment as DEPLOYWATCH_SIGNAL_SERVICE, _ENV, _VERSION, _PREVIOUS_VERSION,
_DEPLOY_ID, _ID, _REASON, _RULE, _ALERT_ID, _SEVERITY; the agent's own
DEPLOYWATCH_* settings are not passed on. Example:

  deploywatch rollback-agent --nats-url nats://deploywatch.internal:4222 \
    --service checkout,search --name k8s-eu \
    --command 'kubectl rollout undo deployment/{{.Service}} -n {{.Env}}'

Exactly one successful run per signal id, across redeliveries and restarts:
a record per signal in the JetStream key-value bucket deploywatch_rollback_<name>
says running before the command starts and done after it succeeded, and a
signal whose record is done is acked without running again. A run cut short
by the agent's death (the record says running, no heartbeat for --stale-after)
is run again only with --idempotent; otherwise it is recorded as interrupted
and logged for a person. A failing command is retried --attempts times with
backoff, then recorded as failed and logged. SIGINT/SIGTERM let commands under
way finish (within --timeout) before the agent exits.`,
		FlagSet: fs,
		Options: settings(),
		Exec: func(ctx context.Context, _ []string) error {
			log, err := newLogger(stderr, c.logLevel, c.logFormat)
			if err != nil {
				return err
			}
			return runRollbackAgent(ctx, c, log)
		},
	}
}

// agentSettings turns the flags into the agent's configuration.
func agentSettings(c agentConfig, log *slog.Logger, set *metrics.Set) (alerts.AgentConfig, error) {
	cfg := alerts.AgentConfig{
		Name: c.name, Services: splitList(c.services), Command: c.command, HTTPURL: c.httpURL,
		Idempotent: c.idempotent, Timeout: c.timeout, Attempts: c.attempts,
		RetryInitial: c.retryInitial, RetryMax: c.retryMax, AckWait: c.ackWait, StaleAfter: c.staleAfter,
		MaxSignalAge: c.maxAge, Replicas: c.natsReplicas, Shell: c.shell, Env: os.Environ(),
		Logger: log, Metrics: set,
	}
	if host, err := os.Hostname(); err == nil {
		cfg.Instance = host + "-" + strconv.Itoa(os.Getpid())
	}
	if c.httpToken != "" {
		cfg.HTTPHeaders = map[string]string{"Authorization": "Bearer " + c.httpToken}
	}
	if c.httpSecret != "" {
		key, err := alerts.SecretKey(c.httpSecret)
		if err != nil {
			return cfg, fmt.Errorf("--http-secret: %w", err)
		}
		cfg.HTTPSecret = key
	}
	if _, err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func runRollbackAgent(ctx context.Context, c agentConfig, log *slog.Logger) error {
	cfg, err := agentSettings(c, log, metrics.NewSet())
	if err != nil {
		return err
	}
	nc, js, err := connectJetStream(c.nats.options("deploywatch rollback-agent "+c.name, log))
	if err != nil {
		return err
	}
	defer nc.Close()
	// The rolled back deploys go straight to the changes stream, with the
	// deploy's event id as Nats-Msg-Id: the agent needs no API token.
	pub, err := eventlog.NewPublisher(nc, 30*time.Second, cfg.Metrics)
	if err != nil {
		return err
	}
	err = alerts.RunAgent(ctx, js, pub, cfg)
	if drainErr := nc.Drain(); drainErr != nil {
		log.Warn("cannot drain the NATS connection", "err", drainErr)
	}
	if err != nil {
		return fmt.Errorf("the rollback agent stopped: %w (is deploywatch serve running, and does --nats-url reach its NATS?)", err)
	}
	log.Info("stopped")
	return nil
}
