package schema

// A verdict is the impact processor's answer to "how did that push affect
// performance?" for one deploy at one point of event time. Verdicts are events:
// published to the signals stream, projected into deploy_verdicts, replayable.

// TypeVerdict names verdict events.
const TypeVerdict Type = "verdict"

// VerdictStatus is where an analysis stands.
type VerdictStatus string

const (
	VerdictPending      VerdictStatus = "pending"
	VerdictHealthy      VerdictStatus = "healthy"
	VerdictMarginal     VerdictStatus = "marginal"
	VerdictBad          VerdictStatus = "bad"
	VerdictInconclusive VerdictStatus = "inconclusive"
)

// MetricClass is how one metric came out of the comparison.
type MetricClass string

const (
	MetricPass   MetricClass = "pass"
	MetricHigh   MetricClass = "high"
	MetricLow    MetricClass = "low"
	MetricNoData MetricClass = "nodata"
)

// Comparison is which two groups of samples a verdict compares.
type Comparison string

const (
	// CanaryVsBaseline compares new-version instances with old-version ones over the same minutes.
	CanaryVsBaseline Comparison = "canary_vs_baseline"
	// BeforeVsAfter compares the minutes before the deploy with the minutes after it.
	BeforeVsAfter Comparison = "before_vs_after"
	// RecentVsEarlier watches a service without a deploy of its own: the last
	// minutes against the ones before them.
	RecentVsEarlier Comparison = "recent_vs_earlier"
	// RecoveryVsBaseline compares the minutes after a bad deploy was rolled
	// back with its baseline: a healthy one says the service recovered.
	RecoveryVsBaseline Comparison = "recovery_vs_baseline"
)

// Verdict is one evaluation of a deploy's impact.
type Verdict struct {
	// ID is the event id: the deploy id and the event time of the evaluation.
	ID   string `json:"id"`
	Type Type   `json:"type"`
	// DeployID is empty for a regression without a deploy of its own (see Suspects).
	DeployID        string        `json:"deploy_id,omitempty"`
	Service         string        `json:"service"`
	Env             string        `json:"env"`
	Version         string        `json:"version,omitempty"`
	PreviousVersion string        `json:"previous_version,omitempty"`
	Status          VerdictStatus `json:"status"`
	// Score is 0-100: the weighted share of metrics that passed.
	Score int `json:"score"`
	// Final is true once the analysis is over: its window has passed the
	// service's watermark, or the evidence for bad was strong enough early.
	Final bool `json:"final"`
	// Early is true for a bad verdict called before the window ended.
	Early  bool   `json:"early,omitempty"`
	Reason string `json:"reason"`
	// EvaluatedAt is the event time (the service's watermark) this verdict is for.
	EvaluatedAt Time            `json:"evaluated_at"`
	Comparison  Comparison      `json:"comparison"`
	Baseline    Window          `json:"baseline_window"`
	Candidate   Window          `json:"candidate_window"`
	Metrics     []MetricVerdict `json:"metrics"`
	// Overlapping lists the other deploys whose windows overlapped this one's.
	Overlapping []DeployRef `json:"overlapping_deploys,omitempty"`
	// Suspects lists recent deploys of services this one depends on, named when
	// it regressed without a deploy of its own.
	Suspects []DeployRef `json:"suspects,omitempty"`
}

func (v *Verdict) EventType() Type      { return TypeVerdict }
func (v *Verdict) EventID() string      { return v.ID }
func (v *Verdict) EventService() string { return v.Service }
func (v *Verdict) EventTime() Time      { return v.EvaluatedAt }

// Window is a span of event time, From exclusive, To inclusive (samples are
// stamped with the end of their interval).
type Window struct {
	From Time `json:"from"`
	To   Time `json:"to"`
}

// DeployRef names a deploy in another event.
type DeployRef struct {
	ID        string `json:"id"`
	Service   string `json:"service"`
	Env       string `json:"env"`
	Version   string `json:"version"`
	StartedAt Time   `json:"started_at"`
}

// MetricVerdict is the evidence for one metric.
type MetricVerdict struct {
	// Name is request_rate, error_rate, latency_p50, latency_p95 or latency_p99.
	Name  string      `json:"name"`
	Class MetricClass `json:"class"`
	// Harm is the direction that hurts: "increase", "decrease" or "both".
	Harm      string  `json:"harm"`
	Critical  bool    `json:"critical,omitempty"`
	Weight    float64 `json:"weight"`
	Baseline  Stats   `json:"baseline"`
	Candidate Stats   `json:"candidate"`
	// Test is "mann_whitney" or "poisson_rate_ratio".
	Test   string  `json:"test"`
	PValue float64 `json:"p_value"`
	// Shift is the Hodges-Lehmann estimate of candidate minus baseline, in the
	// metric's unit (for error_rate: the difference of the pooled rates).
	Shift float64 `json:"shift"`
	// Ratio is candidate over baseline (medians, or pooled rates for errors).
	Ratio float64 `json:"ratio"`
	// Effect is the relative change the tolerance is compared with.
	Effect    float64 `json:"effect"`
	Tolerance float64 `json:"tolerance"`
	// SamplesNeeded is how many more candidate samples (requests, for
	// error_rate) a decision needs, when there are too few.
	SamplesNeeded int    `json:"samples_needed,omitempty"`
	Note          string `json:"note,omitempty"`
}

// Stats summarises one group of samples of one metric.
type Stats struct {
	// N is the number of observations (samples; for error_rate, requests).
	N int `json:"n"`
	// Value is the median (latency in ms, request rate per second) or the
	// pooled rate (error_rate, errors/requests).
	Value    float64 `json:"value"`
	Requests float64 `json:"requests,omitempty"`
	Errors   float64 `json:"errors,omitempty"`
}
