package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/deploywatch/deploywatch/schema"
	"github.com/peterbourgon/ff/v3/ffcli"
)

func deploysCommand(stdout io.Writer) *ffcli.Command {
	return &ffcli.Command{
		Name:       "deploys",
		ShortUsage: "deploywatch deploys <list|show> [flags]",
		ShortHelp:  "list deploys with their verdicts, or show one in full",
		LongHelp: "Reads deploys and the impact analysis' verdicts from a running deploywatch server\n" +
			"over its HTTP API (GET /api/v1/deploys).",
		FlagSet:     flag.NewFlagSet("deploywatch deploys", flag.ContinueOnError),
		Subcommands: []*ffcli.Command{deploysListCommand(stdout), deploysShowCommand(stdout)},
		Exec:        func(context.Context, []string) error { return flag.ErrHelp },
	}
}

// readFlags are the flags of the commands that read from a server.
type readFlags struct {
	url, token string
	timeout    time.Duration
	json       bool
}

func (f *readFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "url", "http://127.0.0.1:8080", "deploywatch server URL (where serve's --listen is)")
	fs.StringVar(&f.token, "token", "", "API token, one of the server's --api-tokens (or DEPLOYWATCH_TOKEN)")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "how long to wait for the server")
	fs.BoolVar(&f.json, "json", false, "print the API's JSON instead of text")
	fs.String("config", "", "YAML file with these flags")
}

func (f *readFlags) client() apiClient {
	return apiClient{server: f.url, token: f.token, serverFlag: "--url"}
}

// get reads path; with --json it prints the answer as the API gave it,
// indented, and returns false; else it decodes the answer into into.
func (f *readFlags) get(ctx context.Context, stdout io.Writer, path string, into any) (decoded bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	var raw json.RawMessage
	if err := f.client().call(ctx, http.MethodGet, path, nil, &raw); err != nil {
		return false, err
	}
	if f.json {
		var out bytes.Buffer
		if err := json.Indent(&out, raw, "", "  "); err != nil {
			return false, err
		}
		out.WriteByte('\n')
		_, err := out.WriteTo(stdout)
		return false, err
	}
	if err := json.Unmarshal(raw, into); err != nil {
		return false, fmt.Errorf("cannot decode the answer of %s%s: %w", f.url, path, err)
	}
	return true, nil
}

func deploysListCommand(stdout io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("deploywatch deploys list", flag.ContinueOnError)
	var rf readFlags
	rf.register(fs)
	service := fs.String("service", "", "only deploys of this service")
	env := fs.String("env", "", "only deploys to this environment")
	limit := fs.Int("limit", 50, "how many deploys, newest first (1-1000)")
	return &ffcli.Command{
		Name:       "list",
		ShortUsage: "deploywatch deploys list [--service S] [--env E] [--limit N] [--json] [flags]",
		ShortHelp:  "list the newest deploys with their status and verdict",
		LongHelp: "Lists the newest deploys, one a line: when each started, what was deployed where,\n" +
			"its status, the impact analysis' verdict and score, and the verdict's reason.\n" +
			"A verdict marked (interim) may still change; (early) was called before its window ended.",
		FlagSet: fs,
		Options: settings(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("deploys list takes no arguments, got %q: filter with --service and --env", args)
			}
			if *limit < 1 || *limit > 1000 {
				return fmt.Errorf("--limit must be from 1 to 1000, got %d", *limit)
			}
			q := url.Values{}
			if *service != "" {
				q.Set("service", *service)
			}
			if *env != "" {
				q.Set("env", *env)
			}
			q.Set("limit", strconv.Itoa(*limit))
			var answer struct {
				Deploys []deployView `json:"deploys"`
			}
			decoded, err := rf.get(ctx, stdout, "/api/v1/deploys?"+q.Encode(), &answer)
			if err != nil || !decoded {
				return err
			}
			return renderDeployList(stdout, answer.Deploys)
		},
	}
}

func deploysShowCommand(stdout io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("deploywatch deploys show", flag.ContinueOnError)
	var rf readFlags
	rf.register(fs)
	return &ffcli.Command{
		Name:       "show",
		ShortUsage: "deploywatch deploys show [--json] [flags] ID",
		ShortHelp:  "show one deploy and its verdict, metric by metric",
		LongHelp: "Shows a deploy, the impact analysis' latest verdict of it (status, score, reason,\n" +
			"the comparison and its windows) and the evidence for every metric: baseline and\n" +
			"candidate values, the change, the p-value and how the metric came out. Deploys\n" +
			"whose windows overlapped and suspects upstream are listed when there are any.",
		FlagSet: fs,
		Options: settings(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) != 1 || args[0] == "" {
				return fmt.Errorf("deploys show takes one deploy id (see deploys list), got %d arguments", len(args))
			}
			var d deployView
			decoded, err := rf.get(ctx, stdout, "/api/v1/deploys/"+url.PathEscape(args[0]), &d)
			if err != nil || !decoded {
				return err
			}
			return renderDeploy(stdout, d)
		},
	}
}

// deployView is a deploy as the API returns it, its verdict decoded.
type deployView struct {
	schema.DeployState
	Verdict *schema.Verdict `json:"verdict"`
}

// renderDeployList writes deploys as an aligned table.
func renderDeployList(w io.Writer, deploys []deployView) error {
	if len(deploys) == 0 {
		_, err := fmt.Fprintln(w, "no deploys")
		return err
	}
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED (UTC)\tSERVICE\tENV\tVERSION\tSTATUS\tVERDICT\tSCORE\tREASON")
	for _, d := range deploys {
		started := d.StartedAt
		if started == nil {
			started = d.FinishedAt
		}
		verdict, score, reason := "-", "-", ""
		if v := d.Verdict; v != nil {
			verdict = verdictLabel(v)
			if v.Status != schema.VerdictPending {
				score = strconv.Itoa(v.Score)
			}
			reason = shorten(v.Reason, 60)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", timeOrDash(started, "2006-01-02 15:04"),
			d.Service, d.Env, d.Version, d.Status, verdict, score, reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeTrimmed(w, &b)
}

// verdictLabel is a verdict's status with what may still change about it.
func verdictLabel(v *schema.Verdict) string {
	label := string(v.Status)
	if !v.Final && v.Status != schema.VerdictPending {
		label += " (interim)"
	}
	if v.Early {
		label += " (early)"
	}
	return label
}

// renderDeploy writes one deploy and its verdict as a report.
func renderDeploy(w io.Writer, d deployView) error {
	var b bytes.Buffer
	line := func(key, format string, args ...any) {
		fmt.Fprintf(&b, "  %-11s %s\n", key, fmt.Sprintf(format, args...))
	}
	fmt.Fprintf(&b, "Deploy %s\n", d.ID)
	line("service", "%s (%s)", d.Service, d.Env)
	if d.PreviousVersion != "" {
		line("version", "%s (was %s)", d.Version, d.PreviousVersion)
	} else {
		line("version", "%s", d.Version)
	}
	line("status", "%s", d.Status)
	line("started", "%s", timeOrDash(d.StartedAt, reportTime))
	if d.FinishedAt != nil {
		finished := timeOrDash(d.FinishedAt, reportTime)
		if d.DurationS != nil {
			finished += " (took " + duration(time.Duration(*d.DurationS*float64(time.Second))) + ")"
		}
		line("finished", "%s", finished)
	}
	if d.RolledBackAt != nil {
		line("rolled back", "%s", timeOrDash(d.RolledBackAt, reportTime))
	}
	for _, kv := range [][2]string{{"strategy", string(d.Strategy)}, {"author", d.Author}, {"url", d.URL}} {
		if kv[1] != "" {
			line(kv[0], "%s", kv[1])
		}
	}
	for i, c := range d.Commits {
		key := ""
		if i == 0 {
			key = "commits"
		}
		sha := c.SHA[:min(len(c.SHA), 10)]
		line(key, "%s", strings.Join(slices.DeleteFunc([]string{sha, c.Author, shorten(firstLine(c.Message), 60)}, func(s string) bool { return s == "" }), "  "))
	}
	if len(d.Labels) > 0 {
		keys := make([]string, 0, len(d.Labels))
		for k := range d.Labels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		pairs := make([]string, len(keys))
		for i, k := range keys {
			pairs[i] = k + "=" + d.Labels[k]
		}
		line("labels", "%s", strings.Join(pairs, ", "))
	}
	b.WriteByte('\n')

	v := d.Verdict
	if v == nil {
		b.WriteString("Verdict: none yet (the impact analysis has not evaluated this deploy)\n")
		return writeTrimmed(w, &b)
	}
	state := "final"
	if !v.Final {
		state = "interim: may still change"
	}
	if v.Early {
		state += ", called early"
	}
	fmt.Fprintf(&b, "Verdict: %s (%s), score %d/100\n", v.Status, state, v.Score)
	line("reason", "%s", v.Reason)
	line("comparison", "%s, evaluated at %s", orDash(strings.ReplaceAll(string(v.Comparison), "_", " ")), timeOrDash(&v.EvaluatedAt.Time, reportTime))
	line("baseline", "%s", windowText(v.Baseline))
	line("candidate", "%s", windowText(v.Candidate))

	if len(v.Metrics) > 0 {
		b.WriteByte('\n')
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  METRIC\tCLASS\tBASELINE\t\tCANDIDATE\tCHANGE\tP-VALUE\tTEST\tNOTE")
		for _, m := range v.Metrics {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t→\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Class,
				metricValue(m.Name, m.Baseline), metricValue(m.Name, m.Candidate), change(m), pValue(m), orDash(m.Test), metricNote(m))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, section := range []struct {
		title string
		refs  []schema.DeployRef
	}{{"Overlapping deploys", v.Overlapping}, {"Suspects", v.Suspects}} {
		if len(section.refs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s\n", section.title)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, r := range section.refs {
			fmt.Fprintf(tw, "  %s\t%s (%s)\t%s\tstarted %s\n", r.ID, r.Service, r.Env, r.Version, timeOrDash(&r.StartedAt.Time, reportTime))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return writeTrimmed(w, &b)
}

// writeTrimmed writes b without the spaces that tabwriter leaves at the end
// of lines whose last cells are empty.
func writeTrimmed(w io.Writer, b *bytes.Buffer) error {
	lines := strings.SplitAfter(b.String(), "\n")
	var out strings.Builder
	for _, l := range lines {
		trimmed := strings.TrimRight(l, " \n")
		out.WriteString(trimmed)
		if strings.HasSuffix(l, "\n") {
			out.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, out.String())
	return err
}

// duration is d without the zero units time.Duration.String adds: 20m, 1h30m, 4m17s.
func duration(d time.Duration) string {
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

const reportTime = "2006-01-02 15:04:05 UTC"

func timeOrDash(t *time.Time, layout string) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(layout)
}

func windowText(win schema.Window) string {
	if win.From.IsZero() && win.To.IsZero() {
		return "-"
	}
	text := timeOrDash(&win.From.Time, reportTime) + " → " + timeOrDash(&win.To.Time, reportTime)
	if !win.From.IsZero() && !win.To.IsZero() {
		text += " (" + duration(win.To.Sub(win.From.Time)) + ")"
	}
	return text
}

// metricValue formats a group's value in the metric's unit.
func metricValue(name string, s schema.Stats) string {
	if s.N == 0 {
		return "-"
	}
	switch {
	case name == "error_rate":
		return number(s.Value*100) + "%"
	case name == "request_rate":
		return number(s.Value) + "/s"
	case strings.HasPrefix(name, "latency_"):
		return number(s.Value) + " ms"
	}
	return number(s.Value)
}

// number formats v with three or four significant digits, without exponents.
func number(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1000 || a == 0:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// change is the relative change from baseline to candidate.
func change(m schema.MetricVerdict) string {
	ratio := m.Ratio
	if ratio <= 0 && m.Baseline.N > 0 && m.Candidate.N > 0 && m.Baseline.Value != 0 {
		ratio = m.Candidate.Value / m.Baseline.Value
	}
	if m.Baseline.N == 0 || m.Candidate.N == 0 || ratio < 0 || math.IsInf(ratio, 0) || math.IsNaN(ratio) || (ratio == 0 && m.Candidate.Value != 0) {
		return "-"
	}
	pct := (ratio - 1) * 100
	if math.Abs(pct) >= 100 {
		return fmt.Sprintf("%+.0f%%", pct)
	}
	return fmt.Sprintf("%+.1f%%", pct)
}

func pValue(m schema.MetricVerdict) string {
	switch {
	case m.Test == "" || m.Class == schema.MetricNoData:
		return "-"
	case m.PValue < 0.0001:
		return "<0.0001"
	}
	return strconv.FormatFloat(m.PValue, 'g', 2, 64)
}

func metricNote(m schema.MetricVerdict) string {
	var parts []string
	if m.Critical {
		parts = append(parts, "critical")
	}
	if m.Note != "" {
		parts = append(parts, m.Note)
	}
	if m.SamplesNeeded > 0 {
		unit := "samples"
		if m.Name == "error_rate" {
			unit = "requests"
		}
		parts = append(parts, fmt.Sprintf("needs %d more %s", m.SamplesNeeded, unit))
	}
	return strings.Join(parts, "; ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shorten cuts s to at most n runes, marking the cut with "…".
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
