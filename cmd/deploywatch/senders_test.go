package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
)

// The traffic of instrumentedService: every 10th request fails with a 500,
// and request i takes latencyCycleMs[i%10] milliseconds.
var (
	latencyCycleMs = [10]float64{3, 8, 8, 20, 20, 20, 40, 70, 200, 700}
	// latencyBoundsS are the histogram's le bounds in seconds, as
	// client_golang's defaults would be for this service.
	latencyBoundsS = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}
	// wantBucketShare is, for each deploywatch bucket (≤5 ms, ≤10 ms, ... ≤1000
	// ms, above), how many of every 10 requests fall in it.
	wantBucketShare = []uint64{1, 2, 3, 1, 1, 1, 0, 1, 0}
)

const errorEvery = 10

// instrumentedService is a small service instrumented the Prometheus way:
// /metrics in the text exposition format with a request counter by status
// code and a latency histogram, one series set per instance it runs. Its
// traffic is synthetic and exact: by any moment, an instance has served
// rate × (seconds since its version started) requests, shaped as above, so
// what Prometheus scrapes follows from the scrape's time alone.
type instrumentedService struct {
	mu        sync.Mutex
	service   string
	env       string
	version   string
	started   time.Time
	instances map[string]float64 // instance -> requests per second
}

// deploy switches to version: the instances restart, their counters from zero
// and with the new version label, and the old version's series disappear.
func (s *instrumentedService) deploy(version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version, s.started = version, time.Now()
}

func (s *instrumentedService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	version, elapsed := s.version, time.Since(s.started).Seconds()
	s.mu.Unlock()
	var b strings.Builder
	b.WriteString("# HELP http_requests_total Requests answered, by status code.\n# TYPE http_requests_total counter\n")
	names := make([]string, 0, len(s.instances))
	for inst := range s.instances {
		names = append(names, inst)
	}
	slices.Sort(names)
	labels := func(inst string) string {
		return fmt.Sprintf(`service=%q,env=%q,version=%q,instance=%q`, s.service, s.env, version, inst)
	}
	served := func(inst string) uint64 { return uint64(s.instances[inst] * elapsed) }
	for _, inst := range names {
		n := served(inst)
		fmt.Fprintf(&b, "http_requests_total{%s,code=\"200\"} %d\n", labels(inst), n-n/errorEvery)
		fmt.Fprintf(&b, "http_requests_total{%s,code=\"500\"} %d\n", labels(inst), n/errorEvery)
	}
	b.WriteString("# HELP http_request_duration_seconds Time to answer a request.\n# TYPE http_request_duration_seconds histogram\n")
	for _, inst := range names {
		n := served(inst)
		cycles, rest := n/uint64(len(latencyCycleMs)), int(n%uint64(len(latencyCycleMs)))
		observed := func(le float64) uint64 { // requests with latency ≤ le seconds
			var perCycle, inRest uint64
			for i, ms := range latencyCycleMs {
				if ms/1000 <= le {
					perCycle++
					if i < rest {
						inRest++
					}
				}
			}
			return cycles*perCycle + inRest
		}
		for _, le := range latencyBoundsS {
			fmt.Fprintf(&b, "http_request_duration_seconds_bucket{%s,le=%q} %d\n", labels(inst), strconv.FormatFloat(le, 'g', -1, 64), observed(le))
		}
		fmt.Fprintf(&b, "http_request_duration_seconds_bucket{%s,le=\"+Inf\"} %d\n", labels(inst), n)
		var sumMs float64
		for i, ms := range latencyCycleMs {
			sumMs += ms * float64(cycles)
			if i < rest {
				sumMs += ms
			}
		}
		fmt.Fprintf(&b, "http_request_duration_seconds_sum{%s} %g\n", labels(inst), sumMs/1000)
		fmt.Fprintf(&b, "http_request_duration_seconds_count{%s} %d\n", labels(inst), n)
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = io.WriteString(w, b.String())
}

// rwRow is one sample of metric_samples.
type rwRow struct {
	Service, Env, Version, Instance string
	Time                            time.Time
	IntervalS                       float64
	Requests, Errors                uint64
	BoundsMs                        []float64
	Counts                          []uint64
}

func (r rwRow) String() string {
	return fmt.Sprintf("%s/%s %s %s at %s: %d requests, %d errors in %gs, histogram %v %v",
		r.Service, r.Env, r.Version, r.Instance, r.Time.Format(time.TimeOnly), r.Requests, r.Errors, r.IntervalS, r.BoundsMs, r.Counts)
}

func (p *pipeline) samples(t *testing.T) []rwRow {
	t.Helper()
	rows, err := p.ch.Query(context.Background(), `SELECT service, env, version, instance, time, interval_s, requests, errors,
		hist_bounds_ms, hist_counts FROM metric_samples FINAL ORDER BY service, env, version, instance, time`)
	if err != nil {
		t.Fatalf("cannot read metric_samples: %v", err)
	}
	defer rows.Close()
	var out []rwRow
	for rows.Next() {
		var r rwRow
		if err := rows.Scan(&r.Service, &r.Env, &r.Version, &r.Instance, &r.Time, &r.IntervalS, &r.Requests, &r.Errors, &r.BoundsMs, &r.Counts); err != nil {
			t.Fatalf("cannot read metric_samples: %v", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("cannot read metric_samples: %v", err)
	}
	return out
}

// TestPrometheusRemoteWriteEndToEnd runs Debian's prometheus against a real
// serve: it scrapes instrumentedService every second and remote-writes to
// /api/v1/write with a bearer token. The samples in ClickHouse carry the
// service's labels, its request rates, error fraction and latency buckets, and
// after a deploy the new version's samples arrive next to the old one's.
func TestPrometheusRemoteWriteEndToEnd(t *testing.T) {
	const token = "dw_prom_5b0e1c9a7d"
	p := startServe(t, testenv.ClickHouse(t), func(c *serveConfig) {
		c.apiTokens = "dw_other_token," + token
		// Above batch_send_deadline, below the default to keep the test short.
		c.remoteWrite.finishDelay = 3 * time.Second
	})
	rates := map[string]float64{"checkout-7d9f8c6b5-x2k4p": 200, "checkout-7d9f8c6b5-q8m1z": 50}
	svc := &instrumentedService{service: "checkout", env: "staging", version: "v2.3.0", started: time.Now(), instances: rates}
	target := httptest.NewServer(svc)
	t.Cleanup(target.Close)

	// Without the token, Prometheus' requests would be refused.
	resp, err := http.Post(p.api+"/api/v1/write", "application/x-protobuf", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST /api/v1/write without a token: %d, want 401", resp.StatusCode)
	}

	// The README's remote_write block; honor_labels keeps the instance label
	// the service reports (its pod name) instead of the scrape address. A
	// small max_samples_per_send splits every scrape over several requests,
	// as Prometheus does with larger scrapes: each sample must still come
	// out whole.
	promURL := testenv.Prometheus(t, fmt.Sprintf(`
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: checkout-pods
    honor_labels: true
    static_configs:
      - targets: [%q]
remote_write:
  - url: %s/api/v1/write
    authorization:
      credentials: %s
    write_relabel_configs:
      - source_labels: [__name__]
        regex: http_requests_total|http_request_duration_seconds_bucket
        action: keep
    queue_config:
      retry_on_http_429: true
      max_samples_per_send: 5
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
`, strings.TrimPrefix(target.URL, "http://"), p.api, token))

	// Enough samples per version and instance that the scrape jitter averages
	// out (see the rate check below).
	const wantSamples = 8
	waitFor := func(version string) {
		t.Helper()
		testenv.Eventually(t, 90*time.Second, func() (bool, string) {
			perInstance := map[string]int{}
			for _, r := range p.samples(t) {
				if r.Version == version {
					perInstance[r.Instance]++
				}
			}
			for inst := range rates {
				if perInstance[inst] < wantSamples {
					return false, fmt.Sprintf("samples of %s per instance: %v, want %d each (%s)", version, perInstance, wantSamples, promTargetHealth(promURL))
				}
			}
			return true, ""
		})
	}
	waitFor("v2.3.0")
	svc.deploy("v2.4.0")
	waitFor("v2.4.0")

	rows := p.samples(t)
	type key struct{ version, instance string }
	type total struct {
		samples          int
		requests, errors uint64
		seconds          float64
		buckets          []uint64
	}
	totals := map[key]*total{}
	wantBounds := make([]float64, len(latencyBoundsS))
	for i, le := range latencyBoundsS {
		wantBounds[i] = le * 1000
	}
	for _, r := range rows {
		if r.Service != "checkout" || r.Env != "staging" || (r.Version != "v2.3.0" && r.Version != "v2.4.0") || rates[r.Instance] == 0 {
			t.Fatalf("a sample with unexpected labels: %s", r)
		}
		// Scrapes are 1 s apart, but a late scrape (on a loaded machine) is
		// closer to the next one, and a failed one doubles the interval.
		if r.IntervalS <= 0 || r.IntervalS > 5 {
			t.Errorf("interval_s out of range: %s", r)
		}
		if len(r.BoundsMs) != len(wantBounds) || len(r.Counts) != len(wantBounds)+1 {
			t.Fatalf("a sample without the service's histogram: %s", r)
		}
		for i := range wantBounds {
			if math.Abs(r.BoundsMs[i]-wantBounds[i]) > 1e-9 {
				t.Fatalf("histogram bounds %v ms, want %v: %s", r.BoundsMs, wantBounds, r)
			}
		}
		var inHist uint64
		for _, c := range r.Counts {
			inHist += c
		}
		// Every request is in both the counters and the histogram, scraped together.
		if inHist != r.Requests {
			t.Errorf("the histogram holds %d requests, the counters %d: %s", inHist, r.Requests, r)
		}
		if diff := math.Abs(float64(r.Errors) - float64(r.Requests)/errorEvery); diff > 1 {
			t.Errorf("errors are not 1 in %d requests: %s", errorEvery, r)
		}
		k := key{r.Version, r.Instance}
		tot := totals[k]
		if tot == nil {
			tot = &total{buckets: make([]uint64, len(r.Counts))}
			totals[k] = tot
		}
		tot.samples++
		tot.requests += r.Requests
		tot.errors += r.Errors
		tot.seconds += r.IntervalS
		for i, c := range r.Counts {
			tot.buckets[i] += c
		}
	}
	if len(totals) != 4 {
		t.Fatalf("samples of %d version-instance pairs, want 4 (2 versions x 2 instances): %v", len(totals), rows)
	}
	for k, tot := range totals {
		rate := rates[k.instance]
		// A counter is read when Prometheus' GET arrives, a few ms after the
		// scrape time it records. Over consecutive samples those delays cancel
		// except the first's and the last's, so over ≥8 s the measured rate is
		// within 5% of the driven one unless those two scrapes together arrive
		// more than 400 ms late, which even a loaded 2-core CI machine does not do.
		got := float64(tot.requests) / tot.seconds
		if math.Abs(got-rate)/rate > 0.05 {
			t.Errorf("%s %s: %d requests in %.3fs = %.1f/s, want %.0f/s ±5%%", k.version, k.instance, tot.requests, tot.seconds, got, rate)
		}
		// The floors of n/10 cancel too: over consecutive samples the run is
		// off by at most one error, and each bucket by its share of one
		// 10-request cycle. One percentage point more also covers a late
		// scrape landing in the second of the previous one, whose sample
		// replaces that one (metric_samples keeps whole seconds).
		if share := float64(tot.errors) / float64(tot.requests); math.Abs(share-1.0/errorEvery) > 0.01 {
			t.Errorf("%s %s: %d errors in %d requests, want 1 in %d", k.version, k.instance, tot.errors, tot.requests, errorEvery)
		}
		for i, share := range wantBucketShare {
			if got := float64(tot.buckets[i]) / float64(tot.requests); math.Abs(got-float64(share)/10) > 0.01 {
				t.Errorf("%s %s: latency buckets %v over %d requests, want shares %v of 10", k.version, k.instance, tot.buckets, tot.requests, wantBucketShare)
				break
			}
		}
		t.Logf("%s %s: %d samples, %d requests in %.3fs = %.2f/s (driven %.0f/s), %d errors, buckets %v",
			k.version, k.instance, tot.samples, tot.requests, tot.seconds, got, rate, tot.errors, tot.buckets)
	}
}

// promTargetHealth says how Prometheus' scrapes go, for a test waiting on them.
func promTargetHealth(promURL string) string {
	resp, err := http.Get(promURL + "/api/v1/targets")
	if err != nil {
		return "prometheus targets: " + err.Error()
	}
	defer resp.Body.Close()
	var answer struct {
		Data struct {
			ActiveTargets []struct {
				ScrapeURL, Health, LastError string
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return "prometheus targets: " + err.Error()
	}
	return fmt.Sprintf("prometheus targets: %+v", answer.Data.ActiveTargets)
}

// getAuthJSON is getJSON with a bearer token.
func (p *pipeline) getAuthJSON(t *testing.T, token, path string, into any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.api+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		t.Fatalf("GET %s: cannot decode the answer: %v", path, err)
	}
	return resp.StatusCode
}

// postAlerts posts alerts to Alertmanager's API as Prometheus does.
func postAlerts(t *testing.T, amURL string, alerts ...map[string]any) {
	t.Helper()
	body, err := json.Marshal(alerts)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(amURL+"/api/v2/alerts", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /api/v2/alerts: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST /api/v2/alerts: %d %s", resp.StatusCode, data)
	}
}

// amWebhookStats reads Alertmanager's own counters of webhook notifications.
func amWebhookStats(amURL string) string {
	resp, err := http.Get(amURL + "/metrics")
	if err != nil {
		return "alertmanager metrics: " + err.Error()
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "alertmanager_notifications") && strings.Contains(l, `integration="webhook"`) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}

// TestAlertmanagerWebhookEndToEnd runs Debian's prometheus-alertmanager with
// deploywatch as its webhook receiver (bearer token, send_resolved): an alert
// posted to Alertmanager opens an incident, and the same alert ended resolves it.
func TestAlertmanagerWebhookEndToEnd(t *testing.T) {
	const token = "dw_am_3c7f9e21"
	p := startServe(t, testenv.ClickHouse(t), func(c *serveConfig) { c.apiTokens = token })
	amURL := testenv.Alertmanager(t, fmt.Sprintf(`
route:
  receiver: deploywatch
  group_by: [alertname, service, env]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: deploywatch
    webhook_configs:
      - url: %s/webhooks/alertmanager
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: %s
`, p.api, token))

	labels := map[string]string{"alertname": "HighErrorRate", "service": "checkout", "env": "staging", "severity": "critical"}
	annotations := map[string]string{"summary": "checkout 5xx ratio above 2% for 2 minutes"}
	// Alertmanager keeps milliseconds; ClickHouse whole seconds.
	startsAt := time.Now().Add(-3 * time.Minute).UTC().Truncate(time.Millisecond)
	postAlerts(t, amURL, map[string]any{"labels": labels, "annotations": annotations, "startsAt": startsAt.Format(time.RFC3339Nano)})

	var open schema.IncidentState
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		var answer struct {
			Incidents []schema.IncidentState `json:"incidents"`
		}
		code := p.getAuthJSON(t, token, "/api/v1/incidents?service=checkout", &answer)
		if code != http.StatusOK || len(answer.Incidents) == 0 {
			return false, fmt.Sprintf("GET /api/v1/incidents?service=checkout: %d %+v (%s)", code, answer.Incidents, amWebhookStats(amURL))
		}
		open = answer.Incidents[0]
		return true, ""
	})
	if !strings.HasPrefix(open.ID, "am-") || !strings.HasSuffix(open.ID, "-"+strconv.FormatInt(startsAt.Unix(), 10)) ||
		open.Status != "open" || open.Service != "checkout" || open.Env != "staging" || open.Source != "alertmanager" ||
		open.Title != annotations["summary"] || open.OpenedAt == nil || !open.OpenedAt.Equal(startsAt.Truncate(time.Second)) ||
		open.ResolvedAt != nil {
		t.Fatalf("the incident Alertmanager opened: %+v", open)
	}

	// The alert ends, as Prometheus reports it once its rule stops firing.
	endsAt := time.Now().Add(-time.Second).UTC().Truncate(time.Millisecond)
	postAlerts(t, amURL, map[string]any{"labels": labels, "annotations": annotations,
		"startsAt": startsAt.Format(time.RFC3339Nano), "endsAt": endsAt.Format(time.RFC3339Nano)})
	var done schema.IncidentState
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		code := p.getAuthJSON(t, token, "/api/v1/incidents/"+open.ID, &done)
		return code == http.StatusOK && done.Status == "resolved",
			fmt.Sprintf("GET /api/v1/incidents/%s: %d %+v (%s)", open.ID, code, done, amWebhookStats(amURL))
	})
	if done.ResolvedAt == nil || !done.ResolvedAt.Equal(endsAt.Truncate(time.Second)) {
		t.Errorf("resolved_at = %v, want %s", done.ResolvedAt, endsAt.Truncate(time.Second))
	}
	wantSeconds(t, "mttr_s", done.MTTRS, endsAt.Truncate(time.Second).Sub(startsAt.Truncate(time.Second)).Seconds())
	var list struct {
		Incidents []schema.IncidentState `json:"incidents"`
	}
	if code := p.getAuthJSON(t, token, "/api/v1/incidents", &list); code != http.StatusOK || len(list.Incidents) != 1 {
		t.Errorf("GET /api/v1/incidents: %d %+v, want the one incident", code, list.Incidents)
	}
	if stats := amWebhookStats(amURL); !strings.Contains(stats, `alertmanager_notifications_failed_total{integration="webhook"} 0`) {
		t.Errorf("Alertmanager reports failed webhook notifications: %s", stats)
	}
}
