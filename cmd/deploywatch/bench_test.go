package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema/chschema"
)

// benchSamples is how many samples one benchmark iteration moves.
const benchSamples = 200_000

// BenchmarkPipeline measures the whole path with the real binary: JSON batches
// over HTTP → JetStream → sink → ClickHouse rows queryable, in samples per
// second, and the serve process' peak resident memory. Compare it with
// BenchmarkClickHouseInsertCeiling from the same run.
func BenchmarkPipeline(b *testing.B) {
	dsn := testenv.ClickHouse(b)
	bin := filepath.Join(b.TempDir(), "deploywatch")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("cannot build deploywatch: %v\n%s", err, out)
	}
	apiAddr, natsAddr := freeAddr(b), freeAddr(b)
	cmd := exec.Command(bin, "serve", "--listen", apiAddr, "--nats-listen", natsAddr, "--data-dir", b.TempDir(),
		"--clickhouse-dsn", dsn, "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	api := "http://" + apiAddr
	testenv.Eventually(b, 60*time.Second, func() (bool, string) {
		resp, err := http.Get(api + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, "readyz " + resp.Status
	})
	conn, err := chschema.Open(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()

	end := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	payloads := make([][][]byte, b.N)
	for i := range payloads {
		payloads[i], _ = trafficBatches(fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i), benchSamples, 5_000, end, uint64(i))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	// Polled on a short tick: the measurement's resolution, not a test's wait.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		service := strings.SplitN(string(payloads[i][0][strings.Index(string(payloads[i][0]), `"service":"`)+11:]), `"`, 2)[0]
		postConcurrently(b, client, api+"/api/v1/metrics", payloads[i], 4)
		for {
			var n uint64
			if err := conn.QueryRow(context.Background(), "SELECT count() FROM metric_samples WHERE service = ?", service).Scan(&n); err != nil {
				b.Fatal(err)
			}
			if n >= benchSamples {
				break
			}
			<-tick.C
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*benchSamples)/elapsed.Seconds(), "samples/s")
	b.ReportMetric(0, "ns/op")
	if hwm, err := peakRSS(cmd.Process.Pid); err == nil {
		b.ReportMetric(hwm/(1<<20), "serve-peak-RSS-MiB")
	}
}

// BenchmarkClickHouseInsertCeiling inserts the same rows straight into
// metric_samples with clickhouse-go's columnar batches: the ceiling the
// pipeline is measured against.
func BenchmarkClickHouseInsertCeiling(b *testing.B) {
	dsn := testenv.ClickHouse(b)
	conn, err := chschema.Open(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	db, _ := chschema.DatabaseFromDSN(dsn)
	if _, err := chschema.Migrate(context.Background(), conn, db, nil); err != nil {
		b.Fatal(err)
	}
	end := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	type column = []any
	sets := make([]column, b.N)
	for i := range sets {
		batches, _ := trafficBatches(fmt.Sprintf("ceiling-%d", i), benchSamples, benchSamples, end, uint64(i))
		sets[i] = columnsOf(b, batches[0])
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		cols := sets[i]
		n := len(cols[0].([]string))
		for from := 0; from < n; from += 50_000 {
			to := min(from+50_000, n)
			batch, err := conn.PrepareBatch(context.Background(), "INSERT INTO metric_samples (service, env, version, instance, time, interval_s, requests, errors, latency_p50, latency_p90, latency_p95, latency_p99, latency_max, hist_bounds_ms, hist_counts, source_id)")
			if err != nil {
				b.Fatal(err)
			}
			for c, col := range cols {
				if err := batch.Column(c).Append(slice(col, from, to)); err != nil {
					b.Fatal(err)
				}
			}
			if err := batch.Send(); err != nil {
				b.Fatal(err)
			}
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*benchSamples)/elapsed.Seconds(), "samples/s")
	b.ReportMetric(0, "ns/op")
}

// columnsOf turns one JSON batch into the columns of metric_samples.
func columnsOf(b *testing.B, body []byte) []any {
	var batch struct {
		Service, Env string
		Samples      []struct {
			Time             time.Time
			IntervalS        float64 `json:"interval_s"`
			Version          string
			Instance         string
			Requests, Errors uint64
			LatencyMs        map[string]float64 `json:"latency_ms"`
			LatencyHistogram *struct {
				BoundsMs []float64 `json:"bounds_ms"`
				Counts   []uint64
			} `json:"latency_histogram"`
		}
	}
	if err := json.Unmarshal(body, &batch); err != nil {
		b.Fatal(err)
	}
	n := len(batch.Samples)
	service, env, version, instance, source := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	ts, interval, reqs, errs := make([]time.Time, n), make([]float64, n), make([]uint64, n), make([]uint64, n)
	quantiles := [5][]*float64{}
	for q := range quantiles {
		quantiles[q] = make([]*float64, n)
	}
	bounds, counts := make([][]float64, n), make([][]uint64, n)
	for i, s := range batch.Samples {
		service[i], env[i], version[i], instance[i], source[i] = batch.Service, batch.Env, s.Version, s.Instance, "ceiling"
		ts[i], interval[i], reqs[i], errs[i] = s.Time, s.IntervalS, s.Requests, s.Errors
		for q, name := range []string{"p50", "p90", "p95", "p99", "max"} {
			if v, ok := s.LatencyMs[name]; ok {
				quantiles[q][i] = &v
			}
		}
		bounds[i], counts[i] = []float64{}, []uint64{}
		if h := s.LatencyHistogram; h != nil {
			bounds[i], counts[i] = h.BoundsMs, h.Counts
		}
	}
	return []any{service, env, version, instance, ts, interval, reqs, errs,
		quantiles[0], quantiles[1], quantiles[2], quantiles[3], quantiles[4], bounds, counts, source}
}

func slice(col any, from, to int) any {
	switch c := col.(type) {
	case []string:
		return c[from:to]
	case []time.Time:
		return c[from:to]
	case []float64:
		return c[from:to]
	case []uint64:
		return c[from:to]
	case []*float64:
		return c[from:to]
	case [][]float64:
		return c[from:to]
	case [][]uint64:
		return c[from:to]
	}
	panic(fmt.Sprintf("unexpected column type %T", col))
}

func postConcurrently(b *testing.B, client *http.Client, url string, bodies [][]byte, workers int) {
	var wg sync.WaitGroup
	next := make(chan []byte)
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range next {
				resp, err := client.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					errs <- fmt.Errorf("POST answered %s", resp.Status)
					return
				}
			}
		}()
	}
	for _, body := range bodies {
		next <- body
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

func freeAddr(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// peakRSS reads the process' high-water resident set size from /proc.
func peakRSS(pid int) (float64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
