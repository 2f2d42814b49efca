package impact

import (
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

// Point is one sample as the analysis sees it: what one instance of one
// version served in the interval that ends at Time.
type Point struct {
	Time     time.Time
	Interval time.Duration
	Version  string
	Instance string
	Requests float64
	Errors   float64
	// Latency quantiles in milliseconds, from the histogram where the sample
	// had one, else as reported; NaN when unknown.
	P50, P95, P99 float64
}

// Group is one side of a comparison.
type Group struct {
	Window schema.Window
	Points []Point
}

// Earlier is the same comparison at an earlier time (one day or one week
// before), to tell a deploy's effect from the service's daily rhythm.
type Earlier struct {
	Label     string // "1 day earlier"
	Baseline  Group
	Candidate Group
}

// Input is everything Judge needs for one evaluation.
type Input struct {
	Comparison schema.Comparison
	Baseline   Group
	Candidate  Group
	// Earlier holds the same windows shifted back, where history exists; only
	// for before/after comparisons.
	Earlier []Earlier
	// Version names the candidate in the reason ("after v1.4.2").
	Version string
	// Final is set when the candidate window is complete; before that only
	// strong evidence makes a verdict bad.
	Final bool
}
