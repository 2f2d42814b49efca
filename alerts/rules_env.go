package alerts

import (
	"regexp"
	"strings"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

// What a rule's condition sees. The names are snake_case, as in the verdict's
// JSON: verdict.status, metric("error_rate").p_value, deploy.labels.team.

// exprRuleEnv is the environment a condition is compiled against and run in.
type exprRuleEnv struct {
	// Verdict is the verdict being judged.
	Verdict exprVerdict `expr:"verdict"`
	// Deploy is what deploywatch knows of the deploy the verdict is about;
	// known is false for a regression without a deploy of its own, or a
	// deploy whose events the engine has not seen.
	Deploy exprDeploy `expr:"deploy"`
	// Metric returns one metric of the verdict by name; a metric the verdict
	// does not have has present false, class "" and zeros.
	Metric func(name string) exprMetric `expr:"metric"`
}

type exprVerdict struct {
	ID              string       `expr:"id"`
	DeployID        string       `expr:"deploy_id"`
	Service         string       `expr:"service"`
	Env             string       `expr:"env"`
	Version         string       `expr:"version"`
	PreviousVersion string       `expr:"previous_version"`
	Status          string       `expr:"status"`
	Score           int          `expr:"score"`
	Final           bool         `expr:"final"`
	Early           bool         `expr:"early"`
	Reason          string       `expr:"reason"`
	Comparison      string       `expr:"comparison"`
	EvaluatedAt     time.Time    `expr:"evaluated_at"`
	Metrics         []exprMetric `expr:"metrics"`
	Overlapping     []exprRef    `expr:"overlapping_deploys"`
	Suspects        []exprRef    `expr:"suspects"`
}

type exprMetric struct {
	Present       bool      `expr:"present"`
	Name          string    `expr:"name"`
	Class         string    `expr:"class"`
	Harm          string    `expr:"harm"`
	Critical      bool      `expr:"critical"`
	Weight        float64   `expr:"weight"`
	Baseline      exprStats `expr:"baseline"`
	Candidate     exprStats `expr:"candidate"`
	Test          string    `expr:"test"`
	PValue        float64   `expr:"p_value"`
	Shift         float64   `expr:"shift"`
	Ratio         float64   `expr:"ratio"`
	Effect        float64   `expr:"effect"`
	Tolerance     float64   `expr:"tolerance"`
	SamplesNeeded int       `expr:"samples_needed"`
	Note          string    `expr:"note"`
}

type exprStats struct {
	N        int     `expr:"n"`
	Value    float64 `expr:"value"`
	Requests float64 `expr:"requests"`
	Errors   float64 `expr:"errors"`
}

type exprDeploy struct {
	Known           bool              `expr:"known"`
	ID              string            `expr:"id"`
	Service         string            `expr:"service"`
	Env             string            `expr:"env"`
	Version         string            `expr:"version"`
	PreviousVersion string            `expr:"previous_version"`
	Status          string            `expr:"status"`
	Strategy        string            `expr:"strategy"`
	Author          string            `expr:"author"`
	URL             string            `expr:"url"`
	Labels          map[string]string `expr:"labels"`
	StartedAt       time.Time         `expr:"started_at"`
	FinishedAt      time.Time         `expr:"finished_at"`
}

type exprRef struct {
	ID        string    `expr:"id"`
	Service   string    `expr:"service"`
	Env       string    `expr:"env"`
	Version   string    `expr:"version"`
	StartedAt time.Time `expr:"started_at"`
}

// verdictMetricNames are the metrics verdicts have (schema.MetricVerdict.Name):
// metric("...") with another literal name is refused when rules are loaded.
var verdictMetricNames = []string{"request_rate", "error_rate", "latency_p50", "latency_p95", "latency_p99"}

// newExprRuleEnv builds what the conditions see of verdict v and deploy d.
func newExprRuleEnv(v *schema.Verdict, d *engDeploy) exprRuleEnv {
	metrics := make([]exprMetric, len(v.Metrics))
	for i, m := range v.Metrics {
		metrics[i] = exprMetric{
			Present: true, Name: m.Name, Class: string(m.Class), Harm: m.Harm, Critical: m.Critical, Weight: m.Weight,
			Baseline: envStatsOf(m.Baseline), Candidate: envStatsOf(m.Candidate), Test: m.Test, PValue: m.PValue,
			Shift: m.Shift, Ratio: m.Ratio, Effect: m.Effect, Tolerance: m.Tolerance, SamplesNeeded: m.SamplesNeeded, Note: m.Note,
		}
	}
	env := exprRuleEnv{
		Verdict: exprVerdict{
			ID: v.ID, DeployID: v.DeployID, Service: v.Service, Env: v.Env, Version: v.Version, PreviousVersion: v.PreviousVersion,
			Status: string(v.Status), Score: v.Score, Final: v.Final, Early: v.Early, Reason: v.Reason,
			Comparison: string(v.Comparison), EvaluatedAt: v.EvaluatedAt.Time, Metrics: metrics,
			Overlapping: envRefsOf(v.Overlapping), Suspects: envRefsOf(v.Suspects),
		},
		Metric: func(name string) exprMetric {
			for _, m := range metrics {
				if m.Name == name {
					return m
				}
			}
			return exprMetric{Name: name}
		},
	}
	if d != nil {
		env.Deploy = exprDeploy{
			Known: d.Known, ID: d.ID, Service: d.Service, Env: d.Env, Version: d.Version, PreviousVersion: d.PreviousVersion,
			Status: d.Status, Strategy: d.Strategy, Author: d.Author, URL: d.URL, Labels: d.Labels,
			StartedAt: d.StartedAt, FinishedAt: d.FinishedAt,
		}
	}
	if env.Deploy.Labels == nil {
		env.Deploy.Labels = map[string]string{}
	}
	return env
}

func envStatsOf(s schema.Stats) exprStats {
	return exprStats{N: s.N, Value: s.Value, Requests: s.Requests, Errors: s.Errors}
}

func envRefsOf(refs []schema.DeployRef) []exprRef {
	out := make([]exprRef, len(refs))
	for i, r := range refs {
		out[i] = exprRef{ID: r.ID, Service: r.Service, Env: r.Env, Version: r.Version, StartedAt: r.StartedAt.Time}
	}
	return out
}

// exprEnvNames maps the Go names expr puts in its errors to what a rule's author wrote.
var exprEnvNames = map[string]struct {
	name   string
	fields []string
}{
	"exprRuleEnv": {"the condition", exprFields(exprRuleEnv{})},
	"exprVerdict": {"verdict", exprFields(exprVerdict{})},
	"exprMetric":  {"metric(...)", exprFields(exprMetric{})},
	"exprStats":   {"baseline/candidate", exprFields(exprStats{})},
	"exprDeploy":  {"deploy", exprFields(exprDeploy{})},
	"exprRef":     {"a deploy reference", exprFields(exprRef{})},
}

var (
	exprNoFieldRE = regexp.MustCompile(`type alerts\.(\w+) has no field (\w+)`)
	exprGoTypeRE  = regexp.MustCompile(`alerts\.(\w+)`)
)

// explainExprError rewrites expr's messages in the rule author's terms:
// "type alerts.verdictEnv has no field statuss" becomes "verdict has no field
// statuss (it has id, deploy_id, ...)".
func explainExprError(msg string) string {
	msg = exprNoFieldRE.ReplaceAllStringFunc(msg, func(m string) string {
		sub := exprNoFieldRE.FindStringSubmatch(m)
		n, ok := exprEnvNames[sub[1]]
		if !ok {
			return m
		}
		return n.name + " has no field " + sub[2] + " (it has " + strings.Join(n.fields, ", ") + ")"
	})
	return exprGoTypeRE.ReplaceAllStringFunc(msg, func(m string) string {
		if n, ok := exprEnvNames[strings.TrimPrefix(m, "alerts.")]; ok {
			return n.name
		}
		return m
	})
}

func exprFields(v any) []string { return ruleStructTags(v, "expr") }
