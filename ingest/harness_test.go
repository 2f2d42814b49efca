package ingest_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/deploywatch/deploywatch/eventlog"
	"github.com/deploywatch/deploywatch/ingest"
	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The embedded nats-server, the NATS connections and the HTTP servers are
	// all stopped in t.Cleanup; whatever is still running afterwards leaked.
	goleak.VerifyTestMain(m)
}

// harness is the API served over HTTP with a real eventlog.Publisher on a real
// embedded JetStream.
type harness struct {
	t    testing.TB
	url  string
	nats *server.Server
	js   jetstream.JetStream
	// pub, parts and metrics are the API's, for remote_write's finisher.
	pub     *eventlog.Publisher
	parts   *eventlog.Bucket
	metrics *metrics.Set
}

// setup says how to build a harness; the zero value is a plain API.
type setup struct {
	cfg     ingest.Config
	deploys ingest.DeployReader
	// ackTimeout bounds the publisher's wait for JetStream; 0 means 10s.
	ackTimeout time.Duration
	// checks, when nil, is {"nats": the publisher's check}.
	checks func(pub *eventlog.Publisher) map[string]ingest.Check
	// maxPayload, when set, is the nats-server's max_payload instead of
	// testenv's (that of deploywatch's embedded server, 8 MiB).
	maxPayload int32
	// finishDelay is remote_write's finisher's; 0 means 200ms. With
	// noFinisher, none runs (see harness.startFinisher).
	finishDelay time.Duration
	noFinisher  bool
	// deliveryLog gives the webhook routes a delivery log (a key-value
	// bucket, as serve does).
	deliveryLog bool
}

func start(t testing.TB, s setup) *harness {
	t.Helper()
	var srv *server.Server
	if s.maxPayload == 0 {
		srv = testenv.NATS(t)
	} else {
		var err error
		srv, err = eventlog.StartEmbedded(eventlog.EmbeddedOptions{Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir(), MaxPayload: s.maxPayload})
		if err != nil {
			t.Fatalf("cannot start embedded NATS: %v", err)
		}
		t.Cleanup(func() {
			srv.Shutdown()
			srv.WaitForShutdown()
		})
	}
	nc := testenv.NATSConn(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("cannot open JetStream: %v", err)
	}
	if err := eventlog.EnsureStreams(testContext(t), js, eventlog.DefaultStreamLimits()); err != nil {
		t.Fatal(err)
	}
	parts, err := eventlog.OpenBucket(testContext(t), js, eventlog.BucketConfig{Name: "remote_write_parts", MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.RemoteWrite.Parts == nil {
		s.cfg.RemoteWrite.Parts = parts
	}
	if s.deliveryLog {
		s.cfg.Webhooks.Deliveries, err = eventlog.OpenBucket(testContext(t), js, eventlog.BucketConfig{Name: "webhook_deliveries", MaxAge: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
	}
	if s.ackTimeout == 0 {
		s.ackTimeout = 10 * time.Second
	}
	if s.cfg.Metrics == nil {
		s.cfg.Metrics = metrics.NewSet()
	}
	pub, err := eventlog.NewPublisher(nc, s.ackTimeout, s.cfg.Metrics)
	if err != nil {
		t.Fatal(err)
	}
	if s.checks != nil {
		s.cfg.Checks = s.checks(pub)
	} else if s.cfg.Checks == nil {
		s.cfg.Checks = map[string]ingest.Check{"nats": pub.Check}
	}
	api := ingest.New(s.cfg, pub, s.deploys)
	hs := httptest.NewServer(api.Handler())
	t.Cleanup(hs.Close)
	h := &harness{t: t, url: hs.URL, nats: srv, js: js, pub: pub, parts: parts, metrics: s.cfg.Metrics}
	if !s.noFinisher {
		h.startFinisher(cmp.Or(s.finishDelay, 200*time.Millisecond))
	}
	return h
}

// startFinisher runs remote_write's finisher until the test ends or stop
// is called.
func (h *harness) startFinisher(delay time.Duration) (stop func()) {
	f := ingest.NewRemoteWriteFinisher(h.parts, h.pub, ingest.RemoteWriteFinisherConfig{FinishDelay: delay, Metrics: h.metrics})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := f.Run(ctx); err != nil {
			h.t.Errorf("the remote_write finisher failed: %v", err)
		}
	}()
	stop = func() {
		cancel()
		<-done
	}
	h.t.Cleanup(stop)
	return stop
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// response is what the API answered.
type response struct {
	code   int
	header http.Header
	body   []byte
}

// json decodes the body into v, failing on fields v does not have.
func (r response) json(t testing.TB, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("cannot decode the response %s into %T: %v", r.body, v, err)
	}
}

// do sends a request; headers are name, value pairs.
func (h *harness) do(method, path string, body io.Reader, headers ...string) response {
	h.t.Helper()
	req, err := http.NewRequestWithContext(testContext(h.t), method, h.url+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("cannot read the answer to %s %s: %v", method, path, err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: b}
}

// postJSON posts body as application/json; headers are name, value pairs.
func (h *harness) postJSON(path string, body []byte, headers ...string) response {
	h.t.Helper()
	return h.do(http.MethodPost, path, bytes.NewReader(body), append([]string{"Content-Type", "application/json"}, headers...)...)
}

func (h *harness) get(path string, headers ...string) response {
	h.t.Helper()
	return h.do(http.MethodGet, path, nil, headers...)
}

func (h *harness) stream(name string) jetstream.Stream {
	h.t.Helper()
	s, err := h.js.Stream(testContext(h.t), name)
	if err != nil {
		h.t.Fatalf("cannot open stream %s: %v", name, err)
	}
	return s
}

// count is how many messages stream holds.
func (h *harness) count(stream string) uint64 {
	h.t.Helper()
	info, err := h.stream(stream).Info(testContext(h.t))
	if err != nil {
		h.t.Fatalf("cannot get info of stream %s: %v", stream, err)
	}
	return info.State.Msgs
}

// counts is how many messages each of deploywatch's streams holds.
func (h *harness) counts() map[string]uint64 {
	h.t.Helper()
	return map[string]uint64{
		schema.ChangesStream:    h.count(schema.ChangesStream),
		schema.MetricsStream:    h.count(schema.MetricsStream),
		schema.DeadLetterStream: h.count(schema.DeadLetterStream),
	}
}

// stored reads every message of stream back from JetStream, oldest first.
func (h *harness) stored(stream string) []*jetstream.RawStreamMsg {
	h.t.Helper()
	s := h.stream(stream)
	info, err := s.Info(testContext(h.t))
	if err != nil {
		h.t.Fatal(err)
	}
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(testContext(h.t), seq)
		if err != nil {
			h.t.Fatalf("cannot get message %d of stream %s: %v", seq, stream, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// Realistic payloads.

// deployJSON is a deploy as a CI pipeline sends it when it finished.
func deployJSON(id, service, status string, finished time.Time) []byte {
	started := finished.Add(-4*time.Minute - 17*time.Second)
	return []byte(fmt.Sprintf(`{
  "type": "deploy",
  "id": %q,
  "service": %q,
  "env": "prod",
  "version": "v2.14.0",
  "previous_version": "v2.13.2",
  "status": %q,
  "started_at": %q,
  "finished_at": %q,
  "commits": [
    {"sha": "9f2c1e7b4a0d5e8c3b6f1a2d7e9c0b4a5f8e1d3c", "time": %q, "author": "Ana Souza", "message": "checkout: retry payment capture on 502 from the PSP"},
    {"sha": "1b7e3f90c2a84d6e5f0a9b8c7d6e5f4a3b2c1d0e", "time": %q, "author": "Jonas Berg", "message": "bump grpc-go to v1.72.0"}
  ],
  "author": "ana.souza",
  "strategy": "canary",
  "url": "https://github.com/acme/%s/actions/runs/8123456789",
  "labels": {"region": "eu-west-1", "team": "payments", "pipeline": "github-actions"}
}`, id, service, status, rfc3339(started), rfc3339(finished),
		rfc3339(started.Add(-26*time.Hour)), rfc3339(started.Add(-3*time.Hour)), service))
}

func incidentJSON(service string, opened time.Time) []byte {
	return []byte(fmt.Sprintf(`{"type":"incident","service":%q,"env":"prod","status":"opened","time":%q,`+
		`"title":"Elevated 5xx on POST /v1/payments","source":"pagerduty"}`, service, rfc3339(opened)))
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// metricsBatch is n samples of a service's instances every 10 s up to end,
// with a daily rhythm, noise, a few errors and latency quantiles that grow
// with load; every fifth sample carries a latency histogram instead.
func metricsBatch(service string, n int, end time.Time, seed uint64) schema.MetricsBatch {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	const instances = 24
	b := schema.MetricsBatch{Type: schema.TypeMetrics, Service: service, Env: "prod", Samples: make([]schema.Sample, n)}
	intervals := (n + instances - 1) / instances
	bounds := []float64{5, 10, 25, 50, 100, 250, 500, 1000, 2500}
	for i := range b.Samples {
		at := end.Add(-time.Duration(intervals-1-i/instances) * 10 * time.Second).Truncate(time.Second)
		hour := float64(at.Hour()) + float64(at.Minute())/60
		load := 1 + 0.6*math.Sin(2*math.Pi*(hour-9)/24) // busiest mid-afternoon
		requests := uint64(max(0, 850*load+rng.NormFloat64()*40))
		errRate := 0.002 + 0.003*rng.Float64()
		if rng.IntN(200) == 0 {
			errRate = 0.08 // a bad instance now and then
		}
		errors := min(requests, uint64(float64(requests)*errRate+rng.Float64()))
		s := schema.Sample{
			Time:      schema.At(at),
			IntervalS: schema.NumberOf(10),
			Version:   "v2.14.0",
			Instance:  fmt.Sprintf("%s-7d9f8c6b5-%05d", service, 10000+i%instances*37),
			Requests:  schema.CountOf(requests),
			Errors:    schema.CountOf(errors),
		}
		p50 := 38*load + rng.Float64()*6
		if i%5 == 4 {
			h := &schema.LatencyHistogram{BoundsMs: bounds, Counts: make([]schema.Count, len(bounds)+1)}
			left := requests
			for j := range bounds {
				share := uint64(float64(left) * (0.25 + 0.2*rng.Float64()))
				if j == len(bounds)-1 {
					share = left * 9 / 10
				}
				h.Counts[j] = schema.CountOf(share)
				left -= share
			}
			h.Counts[len(bounds)] = schema.CountOf(left)
			s.LatencyHistogram = h
		} else {
			s.LatencyMs = &schema.LatencyQuantiles{
				P50: schema.NumberOf(round1(p50)),
				P90: schema.NumberOf(round1(p50 * 2.1)),
				P95: schema.NumberOf(round1(p50 * 2.9)),
				P99: schema.NumberOf(round1(p50*5.5 + rng.Float64()*30)),
				Max: schema.NumberOf(round1(p50*12 + rng.Float64()*400)),
			}
		}
		b.Samples[i] = s
	}
	return b
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
