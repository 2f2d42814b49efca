package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/deploywatch/deploywatch/alerts"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/peterbourgon/ff/v3/ffcli"
)

// alertsFlags are serve's settings of the alert engine.
type alertsFlags struct {
	enabled bool
	rules   string
}

func (f *alertsFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.enabled, "alerts", true, "run the alert engine: judge verdicts with the rules, publish alerts and rollback signals")
	fs.StringVar(&f.rules, "rules", "", "YAML file of alert rules (see deployments/rules.example.yaml; none: the built-in rules); SIGHUP reloads it")
}

// loadAlertRules reads --rules, or returns the built-in rules.
func loadAlertRules(f alertsFlags) (*alerts.Rules, error) {
	if f.rules == "" {
		return alerts.DefaultRules(), nil
	}
	rs, err := alerts.LoadRules(f.rules)
	if err != nil {
		return nil, fmt.Errorf("--rules: %w", err)
	}
	return rs, nil
}

// startAlerts opens the alert engine (its consumers exist when it returns:
// start it before the impact processor, so that no verdict slips past a new
// engine), runs it until stop is called, and reloads the rules file on
// SIGHUP. done receives the engine's error if it stops on its own.
func startAlerts(ctx context.Context, rules *alerts.Rules, f alertsFlags, js jetstream.JetStream, pub alerts.SignalPublisher,
	log *slog.Logger, set *metrics.Set) (done <-chan error, stop func(), err error) {
	if !f.enabled {
		return nil, func() {}, nil
	}
	engine, err := alerts.NewEngine(ctx, js, pub, alerts.EngineConfig{Rules: rules, Logger: log, Metrics: set})
	if err != nil {
		return nil, nil, fmt.Errorf("cannot start the alert engine: %w", err)
	}
	log.Info("alert rules loaded", "source", rules.Source, "rules", len(rules.List))
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	errs := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		errs <- engine.Run(runCtx)
	}()
	reloadErrors := set.GetOrCreateCounter(`deploywatch_alerts_rule_reload_errors_total`)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for {
			select {
			case <-runCtx.Done():
				return
			case <-hup:
				if !reloadAlertRules(engine, f.rules, log) {
					reloadErrors.Inc()
				}
			}
		}
	}()
	var once sync.Once
	return errs, func() {
		once.Do(func() {
			signal.Stop(hup)
			cancel()
			<-exited
			select {
			case err := <-errs:
				if err != nil {
					log.Error("the alert engine did not stop cleanly; JetStream redelivers what it did not ack", "err", err)
				}
			default: // serve took it already
			}
		})
	}, nil
}

// reloadAlertRules rereads the rules file; a file that does not validate
// leaves the rules in use as they are, and it returns false.
func reloadAlertRules(engine *alerts.Engine, file string, log *slog.Logger) bool {
	if file == "" {
		log.Info("SIGHUP: no --rules file, the built-in rules stay")
		return true
	}
	rs, err := alerts.LoadRules(file)
	if err == nil {
		err = engine.Reload(rs)
	}
	if err != nil {
		log.Error("SIGHUP: cannot reload the alert rules; keeping the rules in use", "file", file, "err", err)
		return false
	}
	log.Info("SIGHUP: alert rules reloaded; alerts pending and firing kept", "file", file, "rules", len(rs.List))
	return true
}

func rulesCommand(stdout io.Writer) *ffcli.Command {
	return &ffcli.Command{
		Name:        "rules",
		ShortUsage:  "deploywatch rules <check|defaults> [flags]",
		ShortHelp:   "check an alert rules file, or print the built-in rules",
		FlagSet:     flag.NewFlagSet("deploywatch rules", flag.ContinueOnError),
		Subcommands: []*ffcli.Command{rulesCheckCommand(stdout), rulesDefaultsCommand(stdout)},
		Exec:        func(context.Context, []string) error { return flag.ErrHelp },
	}
}

func rulesCheckCommand(stdout io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("deploywatch rules check", flag.ContinueOnError)
	return &ffcli.Command{
		Name:       "check",
		ShortUsage: "deploywatch rules check FILE...",
		ShortHelp:  "validate alert rules files: every problem, with the rule, the line and the field",
		LongHelp: "Validates rules files as serve --rules would load them: the YAML's shape, every\n" +
			"rule's fields, and its condition compiled with its types checked against the\n" +
			"verdict. Prints every problem, naming the rule, its line and the field, and exits\n" +
			"non-zero when there is any; prints the rules when the file is valid.",
		FlagSet: fs,
		Exec: func(_ context.Context, args []string) error {
			if len(args) == 0 {
				return errors.New("rules check takes one or more rules files, e.g. deploywatch rules check rules.yaml")
			}
			bad := 0
			for _, file := range args {
				rs, err := alerts.LoadRules(file)
				var rerr *alerts.RulesError
				switch {
				case errors.As(err, &rerr):
					bad++
					fmt.Fprintf(stdout, "%s: %d problem%s:\n", file, len(rerr.Problems), plural(len(rerr.Problems)))
					for _, p := range rerr.Problems {
						fmt.Fprintf(stdout, "  %s\n", strings.ReplaceAll(p.String(), "\n", "\n    "))
					}
				case err != nil:
					bad++
					fmt.Fprintf(stdout, "%s: %v\n", file, err)
				default:
					fmt.Fprintf(stdout, "%s: %d rule%s, valid\n", file, len(rs.List), plural(len(rs.List)))
					if err := renderRules(stdout, rs); err != nil {
						return err
					}
				}
			}
			if bad > 0 {
				return fmt.Errorf("%d of %d rules files are invalid", bad, len(args))
			}
			return nil
		},
	}
}

func rulesDefaultsCommand(stdout io.Writer) *ffcli.Command {
	return &ffcli.Command{
		Name:       "defaults",
		ShortUsage: "deploywatch rules defaults",
		ShortHelp:  "print the built-in rules, to start a rules file from",
		FlagSet:    flag.NewFlagSet("deploywatch rules defaults", flag.ContinueOnError),
		Exec: func(context.Context, []string) error {
			_, err := stdout.Write(alerts.DefaultRulesYAML())
			return err
		},
	}
}

// renderRules lists rules as an aligned table.
func renderRules(w io.Writer, rs *alerts.Rules) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  RULE\tMATCH\tFOR\tSEVERITY\tACTIONS\tCONDITION")
	for _, r := range rs.List {
		var match []string
		if len(r.Match.Service) > 0 {
			match = append(match, "service="+strings.Join(r.Match.Service, "|"))
		}
		if len(r.Match.Env) > 0 {
			match = append(match, "env="+strings.Join(r.Match.Env, "|"))
		}
		for k, v := range r.Match.Labels {
			match = append(match, k+"="+strings.Join(v, "|"))
		}
		forText := "-"
		if r.For > 0 {
			forText = r.For.String()
		}
		actions := strings.Join(r.Actions, ",")
		if r.DryRun {
			actions += " (dry run)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", r.Name, orDash(strings.Join(match, " ")), forText, r.Severity, actions,
			shorten(strings.Join(strings.Fields(r.Condition), " "), 70))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeTrimmed(w, &b)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// whoAmI is the default name of who silences or acknowledges: user@host.
func whoAmI() string {
	user := os.Getenv("USER")
	if user == "" {
		user = "unknown"
	}
	if host, err := os.Hostname(); err == nil && host != "" {
		return user + "@" + host
	}
	return user
}

func silenceCommand(stdout io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("deploywatch silence", flag.ContinueOnError)
	var rf readFlags
	rf.register(fs)
	var (
		service = fs.String("service", "", "silence this service's alerts")
		env     = fs.String("env", "", "only in this environment")
		rule    = fs.String("rule", "", "silence this rule's alerts (with --service: only for that service)")
		forDur  = fs.Duration("for", time.Hour, "how long, from now")
		until   = fs.String("until", "", "RFC 3339 end time instead of --for")
		comment = fs.String("comment", "", "why (shown with the alerts it silences)")
		by      = fs.String("by", whoAmI(), "who silences")
	)
	return &ffcli.Command{
		Name:       "silence",
		ShortUsage: "deploywatch silence --service S [--env E] [--rule R] [--for 1h | --until T] --comment WHY [flags]\n  deploywatch silence list [--json]",
		ShortHelp:  "silence a service's or a rule's alerts for a time (no delivery, no rollback)",
		LongHelp: "Silences the alerts of a service (in one env, or all) and/or of a rule from now for\n" +
			"--for (or until --until): they are still recorded, marked silenced, but neither\n" +
			"delivered nor acted on: no rollback signal goes out for them. Prints the silence's\n" +
			"id. `silence list` lists the silences in effect.",
		FlagSet:     fs,
		Options:     settings(),
		Subcommands: []*ffcli.Command{silenceListCommand(stdout)},
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("silence takes no arguments, got %q: say what to silence with --service and --rule", args)
			}
			if *service == "" && *rule == "" {
				return errors.New("silence needs --service or --rule (or both): a silence of everything would hide every bad deploy")
			}
			body := map[string]string{"service": *service, "env": *env, "rule": *rule, "created_by": *by, "comment": *comment}
			if *until != "" {
				body["ends_at"] = *until
			} else {
				body["duration"] = forDur.String()
			}
			var answer struct {
				IDs []string `json:"ids"`
			}
			ctx, cancel := context.WithTimeout(ctx, rf.timeout)
			defer cancel()
			if err := rf.client().call(ctx, http.MethodPost, "/api/v1/silences", body, &answer); err != nil {
				return err
			}
			if len(answer.IDs) != 1 {
				return fmt.Errorf("%s answered without the silence's id", rf.url)
			}
			_, err := fmt.Fprintln(stdout, answer.IDs[0])
			return err
		},
	}
}

func silenceListCommand(stdout io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("deploywatch silence list", flag.ContinueOnError)
	var rf readFlags
	rf.register(fs)
	return &ffcli.Command{
		Name:       "list",
		ShortUsage: "deploywatch silence list [--json] [flags]",
		ShortHelp:  "list the silences in effect or to come",
		FlagSet:    fs,
		Options:    settings(),
		Exec: func(ctx context.Context, _ []string) error {
			var answer struct {
				Silences []schema.Silence `json:"silences"`
			}
			decoded, err := rf.get(ctx, stdout, "/api/v1/silences", &answer)
			if err != nil || !decoded {
				return err
			}
			if len(answer.Silences) == 0 {
				_, err := fmt.Fprintln(stdout, "no silences")
				return err
			}
			var b bytes.Buffer
			tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ENDS (UTC)\tSERVICE\tENV\tRULE\tBY\tCOMMENT\tID")
			for _, s := range answer.Silences {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.EndsAt.UTC().Format("2006-01-02 15:04"), orAny(s.Service), orAny(s.Env),
					orAny(s.Rule), s.CreatedBy, shorten(s.Comment, 50), s.ID)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return writeTrimmed(stdout, &b)
		},
	}
}

func orAny(s string) string {
	if s == "" {
		return "(any)"
	}
	return s
}

func ackCommand(stdout io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("deploywatch ack", flag.ContinueOnError)
	var rf readFlags
	rf.register(fs)
	by := fs.String("by", whoAmI(), "who acknowledges")
	comment := fs.String("comment", "", "what you are doing about it")
	return &ffcli.Command{
		Name:       "ack",
		ShortUsage: "deploywatch ack [--by WHO] [--comment TEXT] [flags] ALERT_ID",
		ShortHelp:  "acknowledge an alert: record that someone took it in hand",
		LongHelp:   "Acknowledges an alert (its id is in `deploywatch alerts list`). Prints the acknowledgement's id.",
		FlagSet:    fs,
		Options:    settings(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) != 1 || args[0] == "" {
				return fmt.Errorf("ack takes one alert id (see deploywatch alerts list), got %d arguments", len(args))
			}
			var answer struct {
				IDs []string `json:"ids"`
			}
			ctx, cancel := context.WithTimeout(ctx, rf.timeout)
			defer cancel()
			err := rf.client().call(ctx, http.MethodPost, "/api/v1/alerts/"+url.PathEscape(args[0])+"/ack",
				map[string]string{"by": *by, "comment": *comment}, &answer)
			if err != nil {
				return err
			}
			if len(answer.IDs) != 1 {
				return fmt.Errorf("%s answered without the acknowledgement's id", rf.url)
			}
			_, err = fmt.Fprintln(stdout, answer.IDs[0])
			return err
		},
	}
}

func alertsCommand(stdout io.Writer) *ffcli.Command {
	return &ffcli.Command{
		Name:        "alerts",
		ShortUsage:  "deploywatch alerts list [flags]",
		ShortHelp:   "list alerts with their status and acknowledgements",
		LongHelp:    "Reads the alert engine's alerts from a running deploywatch server (GET /api/v1/alerts).",
		FlagSet:     flag.NewFlagSet("deploywatch alerts", flag.ContinueOnError),
		Subcommands: []*ffcli.Command{alertsListCommand(stdout)},
		Exec:        func(context.Context, []string) error { return flag.ErrHelp },
	}
}

func alertsListCommand(stdout io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("deploywatch alerts list", flag.ContinueOnError)
	var rf readFlags
	rf.register(fs)
	service := fs.String("service", "", "only alerts of this service")
	env := fs.String("env", "", "only alerts in this environment")
	status := fs.String("status", "", "firing or resolved (default: both)")
	limit := fs.Int("limit", 50, "how many alerts, most recently changed first (1-1000)")
	return &ffcli.Command{
		Name:       "list",
		ShortUsage: "deploywatch alerts list [--service S] [--env E] [--status firing|resolved] [--limit N] [--json] [flags]",
		ShortHelp:  "list the most recently changed alerts",
		LongHelp: "Lists alerts, one a line, most recently changed first: status (and whether it was a\n" +
			"dry run, silenced, or why it resolved), severity, where, the rule, who acknowledged\n" +
			"it, its id (for deploywatch ack) and the verdict's reason.",
		FlagSet: fs,
		Options: settings(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("alerts list takes no arguments, got %q: filter with --service, --env and --status", args)
			}
			if *limit < 1 || *limit > 1000 {
				return fmt.Errorf("--limit must be from 1 to 1000, got %d", *limit)
			}
			q := url.Values{}
			for k, v := range map[string]string{"service": *service, "env": *env, "status": *status} {
				if v != "" {
					q.Set(k, v)
				}
			}
			q.Set("limit", strconv.Itoa(*limit))
			var answer struct {
				Alerts []schema.AlertState `json:"alerts"`
			}
			decoded, err := rf.get(ctx, stdout, "/api/v1/alerts?"+q.Encode(), &answer)
			if err != nil || !decoded {
				return err
			}
			return renderAlertList(stdout, answer.Alerts)
		},
	}
}

// renderAlertList writes alerts as an aligned table.
func renderAlertList(w io.Writer, list []schema.AlertState) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no alerts")
		return err
	}
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "UPDATED (UTC)\tSTATUS\tSEVERITY\tSERVICE\tENV\tRULE\tACKED BY\tALERT ID\tSUMMARY")
	for _, a := range list {
		status := string(a.Status)
		switch {
		case a.Status == schema.AlertResolved && a.Resolution != "":
			status += " (" + strings.ReplaceAll(a.Resolution, "_", " ") + ")"
		case a.DryRun:
			status += " (dry run)"
		case a.Silenced:
			status += " (silenced)"
		case a.RollbackID != "":
			status += " (rollback)"
		}
		var acked []string
		for _, k := range a.Acks {
			acked = append(acked, k.By)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.UpdatedAt.UTC().Format("2006-01-02 15:04"), status, a.Severity,
			a.Service, a.Env, a.Rule, orDash(strings.Join(acked, ",")), a.AlertID, shorten(a.Summary, 60))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeTrimmed(w, &b)
}
