package ingest_test

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

// BenchmarkPostMetrics posts batches of 5,000 samples (24 instances every 10 s,
// with quantiles or histograms) over HTTP into JetStream, each with its own id
// so that JetStream stores every one instead of dropping re-sends.
func BenchmarkPostMetrics(b *testing.B) {
	const samples = 5000
	h := start(b, setup{})
	batch := metricsBatch("checkout", samples, time.Now().Add(-time.Minute), 42)
	encoded := mustJSON(b, batch)
	rest, ok := bytes.CutPrefix(encoded, []byte(`{"id":"",`))
	if !ok {
		b.Fatalf("the encoded batch starts with %.20s, want an empty id first", encoded)
	}
	b.SetBytes(int64(len(encoded)))
	client := &http.Client{}
	defer client.CloseIdleConnections()

	n := 0
	for b.Loop() {
		head := `{"id":"bench-` + strconv.Itoa(n) + `",`
		req, err := http.NewRequest(http.MethodPost, h.url+"/api/v1/metrics", io.MultiReader(strings.NewReader(head), bytes.NewReader(rest)))
		if err != nil {
			b.Fatal(err)
		}
		req.ContentLength = int64(len(head) + len(rest))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("status %d, want 202", resp.StatusCode)
		}
		n++
	}
	b.ReportMetric(float64(samples*n)/b.Elapsed().Seconds(), "samples/s")
	if got, want := h.count(schema.MetricsStream), uint64(5*n); got != want {
		b.Fatalf("%d messages stored, want %d (5 of 1,000 samples per batch)", got, want)
	}
}
