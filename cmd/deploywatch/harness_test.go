package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema/chschema"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// pipeline is a running `deploywatch serve`, wired exactly as the binary wires it.
type pipeline struct {
	api  string // http://host:port
	ch   driver.Conn
	stop func()
}

// startServe runs serve in-process against dsn with an embedded NATS on free
// ports and stops it when the test ends.
func startServe(t testing.TB, dsn string, tweak func(*serveConfig)) *pipeline {
	t.Helper()
	ready := make(chan string, 1)
	c := serveConfig{
		listen: "127.0.0.1:0", dataDir: t.TempDir(), maxBodyBytes: 64 << 20,
		natsListen: "127.0.0.1:0", natsReplicas: 1,
		metricsMaxAge: time.Hour, metricsMaxBytes: 1 << 30,
		clickhouseDSN: dsn,
		flushRows:     50_000, flushInterval: 200 * time.Millisecond, ackWait: 30 * time.Second,
		onReady: func(addr string) { ready <- addr },
	}
	if tweak != nil {
		tweak(&c)
	}
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, c, log) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("serve stopped before it was ready: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("serve was not ready within 60s")
	}
	conn, err := chschema.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := &pipeline{api: "http://" + addr, ch: conn}
	stopped := false
	p.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned an error on shutdown: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("serve did not stop within 60s of SIGTERM")
		}
	}
	t.Cleanup(func() {
		p.stop()
		conn.Close()
	})
	return p
}

// post sends body as JSON and returns the status and the decoded answer.
func (p *pipeline) post(t testing.TB, path string, body []byte) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(p.api+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var answer map[string]any
	if err := json.Unmarshal(data, &answer); err != nil {
		t.Fatalf("POST %s answered %d with non-JSON %q", path, resp.StatusCode, data)
	}
	return resp.StatusCode, answer
}

func (p *pipeline) getJSON(t testing.TB, path string, into any) int {
	t.Helper()
	resp, err := http.Get(p.api + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		t.Fatalf("GET %s: cannot decode the answer: %v", path, err)
	}
	return resp.StatusCode
}

// count runs a query that returns one number.
func (p *pipeline) count(t testing.TB, query string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := p.ch.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// trafficBatches makes realistic metric batches: instances of two versions
// reporting every 10 s, with a daily rhythm and noise in the traffic, errors
// around 0.5% and latency quantiles that move with load. Each batch holds
// perBatch samples; the total requests are returned for checking sums.
func trafficBatches(service string, samples, perBatch int, end time.Time, seed uint64) (batches [][]byte, totalRequests uint64) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	const instances = 8
	steps := (samples + instances - 1) / instances
	start := end.Add(-time.Duration(steps) * 10 * time.Second)
	var all []map[string]any
	for step := 0; step < steps && len(all) < samples; step++ {
		ts := start.Add(time.Duration(step) * 10 * time.Second)
		hour := float64(ts.Hour()) + float64(ts.Minute())/60
		rhythm := 1 + 0.6*math.Sin((hour-9)/24*2*math.Pi)
		for inst := 0; inst < instances && len(all) < samples; inst++ {
			version := "v1.4.1"
			if inst%2 == 1 {
				version = "v1.4.2"
			}
			reqs := uint64(max(0, 200*rhythm+rng.NormFloat64()*20))
			errs := uint64(float64(reqs) * 0.005 * (0.5 + rng.Float64()))
			// Senders report milliseconds with a few decimals, not 17 digits.
			p50 := math.Round((40+10*rhythm+rng.Float64()*5)*1000) / 1000
			s := map[string]any{
				"time": ts.Format(time.RFC3339), "interval_s": 10, "version": version,
				"instance": fmt.Sprintf("%s-%d", service, inst), "requests": reqs, "errors": errs,
				"latency_ms": map[string]float64{"p50": p50, "p90": ms(p50 * 1.8), "p95": ms(p50 * 2.2), "p99": ms(p50 * 3.5), "max": ms(p50 * 6)},
			}
			if inst == 0 {
				s["latency_histogram"] = map[string]any{"bounds_ms": []float64{10, 25, 50, 100, 250, 500}, "counts": []uint64{reqs / 10, reqs / 5, reqs / 3, reqs / 5, reqs / 10, 0, reqs - reqs/10 - reqs/5 - reqs/3 - reqs/5 - reqs/10}}
			}
			totalRequests += reqs
			all = append(all, s)
		}
	}
	for i := 0; i < len(all); i += perBatch {
		body, _ := json.Marshal(map[string]any{"service": service, "env": "production", "samples": all[i:min(i+perBatch, len(all))]})
		batches = append(batches, body)
	}
	return batches, totalRequests
}

// ms rounds to microseconds, as a sender reporting milliseconds would.
func ms(v float64) float64 { return math.Round(v*1000) / 1000 }
