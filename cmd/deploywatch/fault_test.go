package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
)

// TestClickHouseOutage stops ClickHouse while batches flow and starts it again
// a while later: every sample the API acknowledged must be in ClickHouse
// exactly once.
func TestClickHouseOutage(t *testing.T) {
	srv := testenv.OwnClickHouse(t)
	p := startServe(t, srv.DSN("deploywatch"), func(c *serveConfig) {
		c.flushInterval = 100 * time.Millisecond
	})
	end := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	batches, totalRequests := trafficBatches("outage", 12_000, 500, end, 7)

	acked := 0
	post := func(from, to int) {
		t.Helper()
		for _, b := range batches[from:to] {
			if code, answer := p.post(t, "/api/v1/metrics", b); code != http.StatusAccepted {
				t.Fatalf("POST metrics while NATS is up: %d %v", code, answer)
			}
			acked += 500
		}
	}
	third := len(batches) / 3
	post(0, third)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// ClickHouse is down: the API still acknowledges, because the event log
	// (not ClickHouse) is where an acknowledged sample is kept.
	post(third, 2*third)
	// Let the sink fail and back off at least once before ClickHouse returns.
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		var metrics string
		resp, err := http.Get(p.api + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body) // one Read may return only part of the page
			metrics = string(body)
			resp.Body.Close()
		}
		return containsMetric(metrics, `deploywatch_sink_insert_errors_total{stream="DEPLOYWATCH_METRICS"}`), "waiting for a failed insert"
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	post(2*third, len(batches))

	testenv.Eventually(t, 90*time.Second, func() (bool, string) {
		n, err := countRows(p, "SELECT count() FROM metric_samples FINAL WHERE service = 'outage'")
		return err == nil && n == uint64(acked), fmt.Sprintf("%d of %d acknowledged samples in ClickHouse (%v)", n, acked, err)
	})
	if got := p.count(t, "SELECT sum(requests) FROM metric_samples FINAL WHERE service = 'outage'"); got != totalRequests {
		t.Errorf("sum(requests) = %d, want %d", got, totalRequests)
	}
	// The rollup is written by the same inserts, just after the samples become visible.
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		got := p.count(t, "SELECT sum(requests) FROM metrics_1m FINAL WHERE service = 'outage'")
		return got == totalRequests, fmt.Sprintf("sum(requests) in the rollup = %d, want %d", got, totalRequests)
	})
}

func countRows(p *pipeline, query string) (uint64, error) {
	var n uint64
	err := p.ch.QueryRow(context.Background(), query).Scan(&n)
	return n, err
}

// containsMetric reports whether the Prometheus text has a sample named
// exactly name with a value other than 0.
func containsMetric(text, name string) bool {
	for _, line := range strings.Split(text, "\n") {
		value, ok := strings.CutPrefix(line, name+" ")
		if ok && value != "0" {
			return true
		}
	}
	return false
}
