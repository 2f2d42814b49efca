package alerts_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/alerts"
	"github.com/deploywatch/deploywatch/schema"
)

func TestDefaultRules(t *testing.T) {
	rs := alerts.DefaultRules()
	var names []string
	for _, r := range rs.List {
		names = append(names, r.Name)
	}
	if got := strings.Join(names, ","); got != "bad-deploy-in-production,bad-deploy,marginal-deploy" {
		t.Fatalf("default rules %s", got)
	}
	prod := rs.Rule("bad-deploy-in-production")
	if prod.Severity != schema.SeverityCritical || !prod.Has(schema.ActionRollback) || !prod.Has(schema.ActionNotify) || prod.DryRun {
		t.Errorf("bad-deploy-in-production = %+v, want critical, rollback and notify", prod)
	}
	if r := rs.Rule("marginal-deploy"); r.Severity != schema.SeverityWarning || r.Has(schema.ActionRollback) {
		t.Errorf("marginal-deploy = %+v, want a warning that only notifies", r)
	}
	// The file that starts from them parses too.
	again, err := alerts.ParseRules(alerts.DefaultRulesYAML(), "defaults.yaml")
	if err != nil || len(again.List) != 3 {
		t.Fatalf("the default rules' YAML: %v", err)
	}
}

func TestExampleRulesFile(t *testing.T) {
	rs, err := alerts.LoadRules("../deployments/rules.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := rs.Rule("payments-error-spike")
	if r == nil || time.Duration(r.For) != 2*time.Minute || len(r.Match.Service) != 2 || r.Match.Labels["team"][0] != "payments" {
		t.Fatalf("payments-error-spike = %+v", r)
	}
	if d := rs.Rule("bad-deploy"); d.Severity != "warning" || len(d.Actions) != 1 || d.Actions[0] != "notify" {
		t.Errorf("bad-deploy did not get the file's defaults: %+v", d)
	}
	if !rs.Rule("p99-regression-trial").DryRun {
		t.Error("p99-regression-trial is not a dry run")
	}
}

// TestRulesProblems: every problem of a file is reported at once, each
// naming the rule (or its position), the line and the field.
func TestRulesProblems(t *testing.T) {
	f := func(yaml string, want ...string) {
		t.Helper()
		_, err := alerts.ParseRules([]byte(yaml), "rules.yaml")
		var rerr *alerts.RulesError
		if !errors.As(err, &rerr) {
			t.Fatalf("err %v, want a RulesError for:\n%s", err, yaml)
		}
		var got []string
		for _, p := range rerr.Problems {
			got = append(got, p.String())
		}
		if len(got) != len(want) {
			t.Fatalf("%d problems, want %d:\n  %s", len(got), len(want), strings.Join(got, "\n  "))
		}
		for i, w := range want {
			if !strings.Contains(got[i], w) {
				t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
			}
		}
		if !strings.Contains(err.Error(), "rules.yaml") {
			t.Errorf("the error %q does not name the file", err)
		}
	}
	f(``, "is empty")
	f(`rules: [`, "is not valid YAML")
	f(`rules: []`, "rules: is empty")
	f(`rulez: []`, "rulez: is not a known key", "rules: is missing")
	f(`rules:
  - name: bad
    conditon: verdict.status == "bad"
`, `rule "bad" (line 2): condition: is required`, `rule "bad" (line 3): conditon: is not a known field`)
	f(`rules:
  - name: typo
    condition: verdict.statuss == "bad"
`, `rule "typo" (line 3): condition: verdict has no field statuss (it has id, deploy_id, service`)
	f(`rules:
  - name: not-bool
    condition: verdict.score + 1
`, `rule "not-bool" (line 3): condition: expected bool`)
	f(`rules:
  - name: metric-typo
    condition: metric("eror_rate").ratio > 2
`, `condition: metric("eror_rate"): verdicts have no such metric (they have request_rate, error_rate`)
	f(`rules:
  - name: metric-field
    condition: metric("error_rate").pvalue < 0.01
`, `condition: metric(...) has no field pvalue (it has present, name, class`)
	f(`rules:
  - name: syntax
    condition: verdict.status = "bad"
`, `rule "syntax" (line 3): condition: unexpected token`)
	// Every problem of every rule, all at once: the shape (unknown keys,
	// values of the wrong kind) and the values. A rule without a name is
	// named by its position; a field a rule takes from bad defaults is
	// reported once, under defaults.
	f(`defaults:
  severity: loud
rules:
  - name: ok
    condition: verdict.final
  - condition: verdict.final
    for: 5 minutes
  - name: ok
    match:
      env: "[prod"
      labels:
        team: []
      region: eu
    condition: verdict.final
    severity: page
    actions: [rollback, page, rollback]
    dry_run: maybe
  - name: too-long
    condition: verdict.final
    for: 48h
`,
		`defaults.severity: must be critical, warning or info; got "loud"`,
		`rules[1] (line 6): name: is required`,
		`rules[1] (line 7): for: must be a duration such as 90s, 5m or 1h30m; got "5 minutes"`,
		`rule "ok" (line 8): name: is used by rules[0] too`,
		`rule "ok" (line 10): match.env: "[prod" is not a valid glob`,
		`rule "ok" (line 12): match.labels.team: needs a pattern`,
		`rule "ok" (line 13): match.region: is not a known field (known: service, env, labels)`,
		`rule "ok" (line 15): severity: must be critical, warning or info; got "page"`,
		`rule "ok" (line 16): actions: must be rollback or notify; got "page"`,
		`rule "ok" (line 16): actions: names "rollback" twice`,
		`rule "ok" (line 17): dry_run: must be true or false`,
		`rule "too-long" (line 20): for: must be from 0 to 24h0m0s; got 48h0m0s`,
	)
}

// TestRuleMatch: globs and exact names, lists, labels.
func TestRuleMatch(t *testing.T) {
	rs, err := alerts.ParseRules([]byte(`rules:
  - name: r
    match:
      service: ["payments-*", checkout]
      env: prod*
      labels: {team: payments, tier: "[12]"}
    condition: "true"
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := rs.List[0].Match
	f := func(service, env string, labels map[string]string, want bool) {
		t.Helper()
		if got := m.Matches(service, env, labels); got != want {
			t.Errorf("Matches(%s, %s, %v) = %v, want %v", service, env, labels, got, want)
		}
	}
	payments := map[string]string{"team": "payments", "tier": "1"}
	f("payments-api", "production", payments, true)
	f("checkout", "prod-eu", payments, true)
	f("checkout-web", "production", payments, false) // checkout is exact
	f("payments-api", "staging", payments, false)
	f("payments-api", "production", map[string]string{"team": "payments", "tier": "3"}, false)
	f("payments-api", "production", map[string]string{"team": "payments"}, false) // tier missing
	f("payments-api", "production", nil, false)
	if !(alerts.RuleMatch{}).Matches("any", "thing", nil) {
		t.Error("an empty match does not match everything")
	}
}
