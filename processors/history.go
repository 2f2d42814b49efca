package processors

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/deploywatch/deploywatch/processors/impact"
)

// Querier is the part of a ClickHouse connection that reads.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
}

// ClickHouseHistory reads samples back from metric_samples for the impact
// analysis: after a restart, for late deploys, and for the daily-rhythm check.
type ClickHouseHistory struct {
	ch      Querier
	timeout time.Duration
}

// NewClickHouseHistory reads through ch.
func NewClickHouseHistory(ch Querier) *ClickHouseHistory {
	return &ClickHouseHistory{ch: ch, timeout: 30 * time.Second}
}

// historyLimit bounds the samples one read returns.
const historyLimit = 1_000_000

// Points returns the samples of a service in (from, to], oldest first.
func (h *ClickHouseHistory) Points(service, env string, from, to time.Time) ([]impact.Point, error) {
	// The analyzer runs on one goroutine without a context of its own; the
	// read is bounded instead.
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	rows, err := h.ch.Query(ctx, `SELECT time, interval_s, version, instance, requests, errors,
	latency_p50, latency_p95, latency_p99, hist_bounds_ms, hist_counts
FROM metric_samples FINAL
WHERE service = ? AND env = ? AND time > ? AND time <= ?
ORDER BY time
LIMIT ?`, service, env, from.UTC(), to.UTC(), historyLimit)
	if err != nil {
		return nil, fmt.Errorf("cannot read the samples of %s in %s: %w", service, env, err)
	}
	defer rows.Close()
	var out []impact.Point
	for rows.Next() {
		var (
			t                 time.Time
			intervalS         float64
			version, instance string
			requests, errors  uint64
			p50, p95, p99     *float64
			bounds            []float64
			counts            []uint64
		)
		if err := rows.Scan(&t, &intervalS, &version, &instance, &requests, &errors, &p50, &p95, &p99, &bounds, &counts); err != nil {
			return nil, fmt.Errorf("cannot read a sample of %s: %w", service, err)
		}
		p := impact.Point{
			Time: t.UTC(), Interval: time.Duration(intervalS * float64(time.Second)),
			Version: version, Instance: instance,
			Requests: float64(requests), Errors: float64(errors),
			P50: orNaN(p50), P95: orNaN(p95), P99: orNaN(p99),
		}
		if len(counts) == len(bounds)+1 && len(bounds) > 0 {
			fc := make([]float64, len(counts))
			for i, c := range counts {
				fc[i] = float64(c)
			}
			p.SetHistogram(bounds, fc)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read the samples of %s: %w", service, err)
	}
	return out, nil
}

func orNaN(v *float64) float64 {
	if v == nil {
		return math.NaN()
	}
	return *v
}
