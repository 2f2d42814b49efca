package impact

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestDefaultPolicy(t *testing.T) {
	p := DefaultPolicy()
	if err := p.Validate(); err != nil {
		t.Fatalf("the default policy is invalid: %s", err)
	}
	m := p.Metrics
	for _, c := range []struct {
		name     string
		got      MetricPolicy
		harm     Harm
		critical bool
	}{
		{"request_rate", m.RequestRate, HarmDecrease, true},
		{"error_rate", m.ErrorRate, HarmIncrease, true},
		{"latency_p50", m.LatencyP50, HarmIncrease, false},
		{"latency_p95", m.LatencyP95, HarmIncrease, false},
		{"latency_p99", m.LatencyP99, HarmIncrease, true},
	} {
		if c.got.Harm != c.harm || c.got.Critical != c.critical || c.got.Disabled || c.got.Weight <= 0 || c.got.Tolerance <= 0 {
			t.Fatalf("%s: %+v", c.name, c.got)
		}
	}
	if p.BeforeWindow != 30*time.Minute || p.AfterWindow != 30*time.Minute || p.Alpha != 0.01 || p.EarlyAlpha != 0.001 ||
		p.PassScore != 90 || p.MarginalScore != 75 {
		t.Fatalf("default policy: %+v", p)
	}
	// A halving of traffic must be beyond the request rate's tolerance.
	tol := m.RequestRate.Tolerance
	if !(-0.5 < -tol/(1+tol)) {
		t.Fatalf("request_rate tolerance %g lets a halving pass", tol)
	}
	if _, err := json.Marshal(p); err != nil {
		t.Fatal(err)
	}
}

func TestPolicyValidate(t *testing.T) {
	p := DefaultPolicy()
	p.BeforeWindow = 0
	p.Alpha = 0.7
	p.EarlyAlpha = 0
	p.MarginalScore = 95
	p.MinSamples = 1
	p.ErrorRateFloor = 0
	p.Metrics.ErrorRate.Harm = "up"
	p.Metrics.LatencyP99.Tolerance = -0.1
	p.Metrics.LatencyP50.Weight = -1
	err := p.Validate()
	if err == nil {
		t.Fatal("an invalid policy passed")
	}
	for _, field := range []string{
		"before_window", "alpha must", "early_alpha", "marginal_score", "min_samples", "error_rate_floor",
		`metrics.error_rate.harm must be increase, decrease or both; got "up"`,
		"metrics.latency_p99.tolerance", "metrics.latency_p50.weight",
	} {
		if !strings.Contains(err.Error(), field) {
			t.Fatalf("error %q does not name %q", err, field)
		}
	}
	if strings.Contains(err.Error(), "after_window") || strings.Contains(err.Error(), "pass_score must") {
		t.Fatalf("error %q names a valid field", err)
	}

	p = DefaultPolicy()
	for i := range numMetrics {
		p.Metrics.metric(i).Disabled = true
	}
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "metrics must enable at least one metric") {
		t.Fatalf("no metric enabled: %v", err)
	}
}

const policiesYAML = `
services:
  checkout:
    metrics:
      latency_p99:
        tolerance: 0.5
  search:
    after_window: 45m
    metrics:
      request_rate:
        disabled: true
  legacy:
default:
  alpha: 0.02
  metrics:
    error_rate:
      min_delta: 0.002
`

func TestPoliciesYAML(t *testing.T) {
	var ps Policies
	if err := yaml.Unmarshal([]byte(policiesYAML), &ps); err != nil {
		t.Fatal(err)
	}
	if err := ps.Validate(); err != nil {
		t.Fatal(err)
	}
	def := DefaultPolicy()

	want := def
	want.Alpha = 0.02
	want.Metrics.ErrorRate.MinDelta = 0.002
	if ps.Default != want {
		t.Fatalf("default:\n got %+v\nwant %+v", ps.Default, want)
	}
	if got := ps.For("unknown"); got != want {
		t.Fatalf("a service without an entry gets %+v", got)
	}
	if got := ps.For("legacy"); got != want {
		t.Fatalf("an empty entry gets %+v", got)
	}

	// A service entry changes only what it sets, on top of the file's
	// default, though it comes first in the file.
	checkout := want
	checkout.Metrics.LatencyP99.Tolerance = 0.5
	if got := ps.For("checkout"); got != checkout {
		t.Fatalf("checkout:\n got %+v\nwant %+v", got, checkout)
	}
	search := want
	search.AfterWindow = 45 * time.Minute
	search.Metrics.RequestRate.Disabled = true
	if got := ps.For("search"); got != search {
		t.Fatalf("search:\n got %+v\nwant %+v", got, search)
	}
}

func TestPoliciesYAMLRefusesUnknownFields(t *testing.T) {
	f := func(doc, want string) {
		t.Helper()
		var ps Policies
		err := yaml.Unmarshal([]byte(doc), &ps)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%q: got error %v; want one containing %q", doc, err, want)
		}
	}
	f("default:\n  alpah: 0.02\n", `line 2: unknown field "alpah" in default`)
	f("services:\n  checkout:\n    metrics:\n      latency_p99:\n        tolerence: 0.5\n",
		`line 5: unknown field "tolerence" in services.checkout.metrics.latency_p99 (known: harm, tolerance, min_delta, weight, critical, disabled)`)
	f("servces: {}\n", `unknown field "servces"`)
	f("default:\n  alpha: lots\n", "cannot unmarshal")
	f("default:\n  before_window: soon\n", `line 2: default.before_window must be a duration such as 30m or 1h; got "soon"`)
}

// The layout cmd/deploywatch reads: Policies inside a file decoded with
// KnownFields, starting from the defaults; Validate afterwards.
func TestPoliciesInConfigFile(t *testing.T) {
	var file struct {
		Policies Policies `yaml:"policies"`
	}
	file.Policies = Policies{Default: DefaultPolicy()}
	doc := "policies:\n  services:\n    checkout:\n      alpha: 0.9\n"
	dec := yaml.NewDecoder(bytes.NewReader([]byte(doc)))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatal(err)
	}
	err := file.Policies.Validate()
	if err == nil || !strings.Contains(err.Error(), "services.checkout.alpha must be above 0 and below 0.5") || strings.Contains(err.Error(), "default.") {
		t.Fatalf("got %v; want an error naming services.checkout.alpha only", err)
	}
}

func TestPolicyYAML(t *testing.T) {
	var p Policy
	if err := yaml.Unmarshal([]byte("before_window: 1h\nmetrics:\n  latency_p50:\n    critical: true\n"), &p); err != nil {
		t.Fatal(err)
	}
	want := DefaultPolicy()
	want.BeforeWindow = time.Hour
	want.Metrics.LatencyP50.Critical = true
	if p != want {
		t.Fatalf("got %+v\nwant %+v", p, want)
	}
}
