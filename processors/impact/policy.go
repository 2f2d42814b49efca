package impact

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Harm is the direction of change that hurts a metric.
type Harm string

const (
	HarmIncrease Harm = "increase"
	HarmDecrease Harm = "decrease"
	HarmBoth     Harm = "both"
)

// MetricPolicy says when a change of one metric is harmful: a change in the
// Harm direction that is significant, larger than Tolerance relative to the
// baseline and larger than MinDelta in absolute terms.
type MetricPolicy struct {
	Harm Harm `yaml:"harm" json:"harm"`
	// Tolerance is the relative change allowed: 0.2 lets the metric rise to
	// 1.2x. A fall is held to the same factor: 0.5 lets it fall to 1/1.5, a
	// third less, so that a halving of traffic is a breakage.
	Tolerance float64 `yaml:"tolerance" json:"tolerance"`
	// MinDelta is the absolute change below which nothing is harmful, in the
	// metric's unit: requests per second, a fraction of requests (0.001 is 0.1
	// percentage point of errors) or milliseconds.
	MinDelta float64 `yaml:"min_delta" json:"min_delta"`
	// Weight is the metric's share of the score.
	Weight float64 `yaml:"weight" json:"weight"`
	// Critical makes the verdict bad whenever this metric is harmful, and
	// inconclusive when there is too little data to judge it.
	Critical bool `yaml:"critical" json:"critical"`
	// Disabled leaves the metric out of the verdict.
	Disabled bool `yaml:"disabled" json:"disabled"`
}

// Metrics holds the policy of each metric a verdict judges.
type Metrics struct {
	RequestRate MetricPolicy `yaml:"request_rate" json:"request_rate"`
	ErrorRate   MetricPolicy `yaml:"error_rate" json:"error_rate"`
	LatencyP50  MetricPolicy `yaml:"latency_p50" json:"latency_p50"`
	LatencyP95  MetricPolicy `yaml:"latency_p95" json:"latency_p95"`
	LatencyP99  MetricPolicy `yaml:"latency_p99" json:"latency_p99"`
}

// The metrics in the order verdicts list them.
const (
	metricRequestRate = iota
	metricErrorRate
	metricP50
	metricP95
	metricP99
	numMetrics
)

var metricNames = [numMetrics]string{"request_rate", "error_rate", "latency_p50", "latency_p95", "latency_p99"}

// metric returns the policy of metric i (one of the metric* constants).
func (m *Metrics) metric(i int) *MetricPolicy {
	switch i {
	case metricRequestRate:
		return &m.RequestRate
	case metricErrorRate:
		return &m.ErrorRate
	case metricP50:
		return &m.LatencyP50
	case metricP95:
		return &m.LatencyP95
	default:
		return &m.LatencyP99
	}
}

// Policy is how one service's deploys are judged.
type Policy struct {
	// BeforeWindow is how far before a deploy the baseline reaches.
	BeforeWindow time.Duration `yaml:"before_window" json:"before_window"`
	// AfterWindow is how long after a deploy the candidate is watched before
	// the verdict is final.
	AfterWindow time.Duration `yaml:"after_window" json:"after_window"`
	// Alpha is the significance level of final decisions.
	Alpha float64 `yaml:"alpha" json:"alpha"`
	// EarlyAlpha is the significance level a bad verdict needs before the
	// window ended. It is strict because the analysis looks every few seconds.
	EarlyAlpha float64 `yaml:"early_alpha" json:"early_alpha"`
	// PassScore and MarginalScore are the cut-offs of a final verdict's score
	// (0-100) for healthy and marginal; below MarginalScore it is bad.
	PassScore     int `yaml:"pass_score" json:"pass_score"`
	MarginalScore int `yaml:"marginal_score" json:"marginal_score"`
	// MinSamples is the fewest samples each side needs before latency or
	// request rate is judged, and the fewest sample times the candidate
	// needs before a bad verdict is called early.
	MinSamples int `yaml:"min_samples" json:"min_samples"`
	// MinSampleRequests is the fewest requests a baseline sample must carry on
	// average for the request rate to be compared sample by sample; below it
	// the counts are too coarse and the request rate has no verdict.
	MinSampleRequests float64 `yaml:"min_sample_requests" json:"min_sample_requests"`
	// ErrorRateFloor is the baseline error rate assumed, when the observed one
	// is lower, in deciding whether there are enough requests to judge the
	// error rate: a rise of Tolerance from this rate must be detectable.
	ErrorRateFloor float64 `yaml:"error_rate_floor" json:"error_rate_floor"`
	Metrics        Metrics `yaml:"metrics" json:"metrics"`
}

// DefaultPolicy returns the policy used where the configuration sets nothing.
func DefaultPolicy() Policy {
	return Policy{
		BeforeWindow:      30 * time.Minute,
		AfterWindow:       30 * time.Minute,
		Alpha:             0.01,
		EarlyAlpha:        0.001,
		PassScore:         90,
		MarginalScore:     75,
		MinSamples:        6,
		MinSampleRequests: 5,
		ErrorRateFloor:    0.01,
		Metrics: Metrics{
			RequestRate: MetricPolicy{Harm: HarmDecrease, Tolerance: 0.5, MinDelta: 0.1, Weight: 1, Critical: true},
			ErrorRate:   MetricPolicy{Harm: HarmIncrease, Tolerance: 0.5, MinDelta: 0.001, Weight: 2, Critical: true},
			LatencyP50:  MetricPolicy{Harm: HarmIncrease, Tolerance: 0.2, MinDelta: 5, Weight: 1},
			LatencyP95:  MetricPolicy{Harm: HarmIncrease, Tolerance: 0.25, MinDelta: 5, Weight: 1},
			LatencyP99:  MetricPolicy{Harm: HarmIncrease, Tolerance: 0.3, MinDelta: 10, Weight: 1, Critical: true},
		},
	}
}

// Validate reports every problem of the policy at once, naming the fields.
func (p Policy) Validate() error {
	var probs []string
	p.validate("", &probs)
	return problemsError(probs)
}

func (p *Policy) validate(prefix string, probs *[]string) {
	add := func(field, format string, args ...any) {
		*probs = append(*probs, prefix+field+" "+fmt.Sprintf(format, args...))
	}
	if p.BeforeWindow <= 0 {
		add("before_window", "must be a positive duration such as 30m; got %s", p.BeforeWindow)
	}
	if p.AfterWindow <= 0 {
		add("after_window", "must be a positive duration such as 30m; got %s", p.AfterWindow)
	}
	if !(p.Alpha > 0 && p.Alpha < 0.5) {
		add("alpha", "must be above 0 and below 0.5, such as 0.01; got %g", p.Alpha)
	}
	if !(p.EarlyAlpha > 0 && p.EarlyAlpha <= p.Alpha) {
		add("early_alpha", "must be above 0 and at most alpha (%g), such as 0.001; got %g", p.Alpha, p.EarlyAlpha)
	}
	if p.PassScore < 0 || p.PassScore > 100 {
		add("pass_score", "must be from 0 to 100; got %d", p.PassScore)
	}
	if p.MarginalScore < 0 || p.MarginalScore > p.PassScore {
		add("marginal_score", "must be from 0 to pass_score (%d); got %d", p.PassScore, p.MarginalScore)
	}
	if p.MinSamples < 2 {
		add("min_samples", "must be at least 2; got %d", p.MinSamples)
	}
	if !(p.MinSampleRequests >= 0 && !math.IsInf(p.MinSampleRequests, 0)) {
		add("min_sample_requests", "must be 0 or more; got %g", p.MinSampleRequests)
	}
	if !(p.ErrorRateFloor > 0 && p.ErrorRateFloor < 1) {
		add("error_rate_floor", "must be above 0 and below 1, such as 0.01; got %g", p.ErrorRateFloor)
	}
	var weight float64
	for i := range numMetrics {
		m := p.Metrics.metric(i)
		field := "metrics." + metricNames[i] + "."
		switch m.Harm {
		case HarmIncrease, HarmDecrease, HarmBoth:
		default:
			add(field+"harm", "must be increase, decrease or both; got %q", m.Harm)
		}
		if !(m.Tolerance >= 0 && !math.IsInf(m.Tolerance, 0)) {
			add(field+"tolerance", "must be 0 or more, such as 0.2 for +20%%; got %g", m.Tolerance)
		}
		if !(m.MinDelta >= 0 && !math.IsInf(m.MinDelta, 0)) {
			add(field+"min_delta", "must be 0 or more; got %g", m.MinDelta)
		}
		if !(m.Weight >= 0 && !math.IsInf(m.Weight, 0)) {
			add(field+"weight", "must be 0 or more; got %g", m.Weight)
		}
		if !m.Disabled && m.Weight > 0 {
			weight += m.Weight
		}
	}
	if weight == 0 {
		add("metrics", "must enable at least one metric with a positive weight")
	}
}

func problemsError(probs []string) error {
	if len(probs) == 0 {
		return nil
	}
	return errors.New("invalid impact policy: " + strings.Join(probs, "; "))
}

// plainPolicy decodes YAML onto a Policy without resetting it to the defaults.
type plainPolicy Policy

// UnmarshalYAML starts from DefaultPolicy, so that a file sets only what it
// changes, and refuses fields it does not know.
func (p *Policy) UnmarshalYAML(n *yaml.Node) error {
	out := DefaultPolicy()
	if err := decodeOnto(n, &out, ""); err != nil {
		return err
	}
	*p = out
	return nil
}

// Policies are the default policy and the services' own.
type Policies struct {
	Default Policy `yaml:"default" json:"default"`
	// Services are complete policies: when read from YAML, each starts from
	// Default and changes only the fields its entry sets.
	Services map[string]Policy `yaml:"services" json:"services,omitempty"`
}

// For returns the policy of a service: its own, else the default.
func (ps Policies) For(service string) Policy {
	if p, ok := ps.Services[service]; ok {
		return p
	}
	return ps.Default
}

// UnmarshalYAML starts from DefaultPolicy, applies the file's default on top
// and each service's entry on top of that, wherever the keys appear.
func (ps *Policies) UnmarshalYAML(n *yaml.Node) error {
	var raw struct {
		Default  yaml.Node            `yaml:"default"`
		Services map[string]yaml.Node `yaml:"services"`
	}
	if err := checkKeys(n, reflect.TypeOf(raw), ""); err != nil {
		return err
	}
	if err := n.Decode(&raw); err != nil {
		return err
	}
	out := Policies{Default: DefaultPolicy()}
	if !raw.Default.IsZero() {
		if err := decodeOnto(&raw.Default, &out.Default, "default."); err != nil {
			return err
		}
	}
	if len(raw.Services) > 0 {
		out.Services = make(map[string]Policy, len(raw.Services))
	}
	for name, node := range raw.Services {
		p := out.Default
		if err := decodeOnto(&node, &p, "services."+name+"."); err != nil {
			return err
		}
		out.Services[name] = p
	}
	*ps = out
	return nil
}

// Validate reports every problem of the default and of every service's
// policy at once.
func (ps Policies) Validate() error {
	var probs []string
	ps.Default.validate("default.", &probs)
	names := make([]string, 0, len(ps.Services))
	for name := range ps.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if name == "" {
			probs = append(probs, "services has an entry without a name")
		}
		p := ps.Services[name]
		p.validate("services."+name+".", &probs)
	}
	return problemsError(probs)
}

// decodeOnto decodes a YAML policy onto p, keeping the fields it does not set.
func decodeOnto(n *yaml.Node, p *Policy, prefix string) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if err := checkKeys(n, reflect.TypeFor[Policy](), prefix); err != nil {
		return err
	}
	return n.Decode((*plainPolicy)(p))
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	// nodeType fields are decoded later, with checks of their own.
	nodeType = reflect.TypeFor[yaml.Node]()
)

// checkKeys refuses mapping keys that name no field of t, where the decoder's
// KnownFields cannot reach (yaml.v3 decodes a Node without it), and names
// the field of a duration it cannot parse.
func checkKeys(n *yaml.Node, t reflect.Type, prefix string) error {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode || t.Kind() != reflect.Struct || t == durationType {
		return nil // the decoder reports a wrong kind
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		f, ok := fieldByTag(t, key.Value)
		if !ok {
			return fmt.Errorf("line %d: unknown field %q in %s (known: %s)",
				key.Line, key.Value, strings.TrimSuffix(cmp.Or(prefix, "policy."), "."), strings.Join(tagsOf(t), ", "))
		}
		switch {
		case f.Type == durationType:
			if _, err := time.ParseDuration(val.Value); val.Kind != yaml.ScalarNode || err != nil {
				return fmt.Errorf("line %d: %s%s must be a duration such as 30m or 1h; got %q", val.Line, prefix, key.Value, val.Value)
			}
		case f.Type.Kind() == reflect.Struct && f.Type != nodeType:
			if err := checkKeys(val, f.Type, prefix+key.Value+"."); err != nil {
				return err
			}
		}
	}
	return nil
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func tagsOf(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	return out
}
