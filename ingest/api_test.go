package ingest_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/eventlog"
	"github.com/deploywatch/deploywatch/ingest"
	"github.com/deploywatch/deploywatch/schema"
)

// accepted is the answer to a successful POST.
type accepted struct {
	Accepted int      `json:"accepted"`
	IDs      []string `json:"ids"`
}

// errorBody is the answer to a failed request.
type errorBody struct {
	Error  string              `json:"error"`
	Fields []schema.FieldError `json:"fields"`
}

func wantCode(t testing.TB, r response, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d; body: %s", r.code, code, r.body)
	}
}

func TestPostDeployIsStoredOnceUnderItsStatusID(t *testing.T) {
	h := start(t, setup{})
	const id = "gha-checkout-8123456789-1"
	finished := time.Now().Add(-2 * time.Minute)
	body := deployJSON(id, "checkout", "succeeded", finished)

	for range 2 { // the second time is a sender's retry
		r := h.postJSON("/api/v1/deploys", body)
		wantCode(t, r, http.StatusAccepted)
		var got accepted
		r.json(t, &got)
		if got.Accepted != 1 || !slices.Equal(got.IDs, []string{id}) {
			t.Fatalf("answer %+v, want accepted 1 and ids [%s]", got, id)
		}
	}
	msgs := h.stored(schema.ChangesStream)
	if len(msgs) != 1 {
		t.Fatalf("%d messages in %s after posting the same deploy twice, want 1 (JetStream deduplication)", len(msgs), schema.ChangesStream)
	}
	m := msgs[0]
	if m.Subject != "deploywatch.changes.deploy.checkout" {
		t.Errorf("subject %q, want deploywatch.changes.deploy.checkout", m.Subject)
	}
	if got := m.Header.Get("Nats-Msg-Id"); got != id+":succeeded" {
		t.Errorf("Nats-Msg-Id %q, want %q", got, id+":succeeded")
	}
	var d schema.Deploy
	if err := json.Unmarshal(m.Data, &d); err != nil {
		t.Fatalf("cannot decode the stored deploy %s: %v", m.Data, err)
	}
	if d.ID != id || d.Type != schema.TypeDeploy || d.Version != "v2.14.0" || d.Status != schema.DeploySucceeded ||
		len(d.Commits) != 2 || d.Labels["team"] != "payments" || !d.FinishedAt.Time.Equal(finished) {
		t.Errorf("stored deploy %+v does not match the one posted", d)
	}

	// The same deploy's start is another fact, with its own Nats-Msg-Id.
	wantCode(t, h.postJSON("/api/v1/deploys", deployJSON(id, "checkout", "started", finished)), http.StatusAccepted)
	msgs = h.stored(schema.ChangesStream)
	if len(msgs) != 2 || msgs[1].Header.Get("Nats-Msg-Id") != id+":started" {
		t.Fatalf("after posting the deploy's start: %d messages, want 2, the second with Nats-Msg-Id %s:started", len(msgs), id)
	}
}

func TestPostDeployWithoutIDGetsTheSameIDWhenResent(t *testing.T) {
	h := start(t, setup{})
	body := deployJSON("", "payments.api", "succeeded", time.Now().Add(-time.Minute))
	var ids []string
	for range 2 {
		r := h.postJSON("/api/v1/deploys", body)
		wantCode(t, r, http.StatusAccepted)
		var got accepted
		r.json(t, &got)
		if len(got.IDs) != 1 || got.IDs[0] == "" {
			t.Fatalf("answer %+v, want one generated id", got)
		}
		ids = append(ids, got.IDs[0])
	}
	if ids[0] != ids[1] {
		t.Fatalf("the same deploy got ids %s and %s: a resent request must get the same id", ids[0], ids[1])
	}
	msgs := h.stored(schema.ChangesStream)
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	// '.' separates subject tokens, so the service's becomes '_'.
	if msgs[0].Subject != "deploywatch.changes.deploy.payments_api" || msgs[0].Header.Get("Nats-Msg-Id") != ids[0]+":succeeded" {
		t.Fatalf("stored on %s with Nats-Msg-Id %s, want deploywatch.changes.deploy.payments_api and %s:succeeded",
			msgs[0].Subject, msgs[0].Header.Get("Nats-Msg-Id"), ids[0])
	}
}

func TestPostMetricsSplitsLargeBatchesIntoMessages(t *testing.T) {
	h := start(t, setup{})
	batch := metricsBatch("checkout", 2500, time.Now().Add(-time.Minute), 1)
	body := mustJSON(t, batch)

	var id string
	for range 2 {
		r := h.postJSON("/api/v1/metrics", body)
		wantCode(t, r, http.StatusAccepted)
		var got accepted
		r.json(t, &got)
		if got.Accepted != 2500 || len(got.IDs) != 1 || got.IDs[0] == "" {
			t.Fatalf("answer %+v, want accepted 2500 and the batch's id", got)
		}
		if id != "" && got.IDs[0] != id {
			t.Fatalf("the resent batch got id %s, the first %s", got.IDs[0], id)
		}
		id = got.IDs[0]
	}

	msgs := h.stored(schema.MetricsStream)
	if len(msgs) != 3 {
		t.Fatalf("%d messages in %s after posting 2,500 samples twice, want 3", len(msgs), schema.MetricsStream)
	}
	var samples []schema.Sample
	for i, m := range msgs {
		if m.Subject != "deploywatch.metrics.checkout" {
			t.Errorf("message %d: subject %q, want deploywatch.metrics.checkout", i, m.Subject)
		}
		if enc := m.Header.Get(schema.EncodingHeader); enc != schema.MetricsBinaryEncoding {
			t.Errorf("message %d: %s %q, want %q", i, schema.EncodingHeader, enc, schema.MetricsBinaryEncoding)
		}
		var part schema.MetricsBatch
		if err := schema.DecodeMetricsMessage(m.Header.Get(schema.EncodingHeader), m.Data, &part); err != nil {
			t.Fatalf("cannot decode message %d: %v", i, err)
		}
		wantID := fmt.Sprintf("%s.%dof3", id, i+1)
		if part.ID != wantID || m.Header.Get("Nats-Msg-Id") != wantID {
			t.Errorf("message %d: id %q, Nats-Msg-Id %q, want both %q", i, part.ID, m.Header.Get("Nats-Msg-Id"), wantID)
		}
		if len(part.Samples) > 1000 {
			t.Errorf("message %d holds %d samples, want at most 1000", i, len(part.Samples))
		}
		if part.Service != "checkout" || part.Env != "prod" {
			t.Errorf("message %d is for %s/%s, want checkout/prod", i, part.Service, part.Env)
		}
		samples = append(samples, part.Samples...)
	}
	if len(samples) != 2500 {
		t.Fatalf("the messages hold %d samples, want 2500", len(samples))
	}
	if !bytes.Equal(mustJSON(t, samples), mustJSON(t, batch.Samples)) {
		t.Fatal("the stored samples differ from the posted ones")
	}
}

func TestPostEventsPublishesAllOrNothing(t *testing.T) {
	h := start(t, setup{})
	now := time.Now()
	metrics := metricsBatch("checkout", 48, now.Add(-30*time.Second), 2)
	body := []byte("[" + string(deployJSON("argo-checkout-4411", "checkout", "succeeded", now.Add(-5*time.Minute))) + ",\n" +
		string(mustJSON(t, metrics)) + ",\n" + string(incidentJSON("checkout", now.Add(-time.Minute))) + "]")

	r := h.postJSON("/api/v1/events", body)
	wantCode(t, r, http.StatusAccepted)
	var got accepted
	r.json(t, &got)
	if got.Accepted != 3 || len(got.IDs) != 3 || got.IDs[0] != "argo-checkout-4411" || got.IDs[1] == "" || got.IDs[2] == "" {
		t.Fatalf("answer %+v, want accepted 3 and ids [argo-checkout-4411 <metrics id> <incident id>]", got)
	}
	changes := h.stored(schema.ChangesStream)
	if len(changes) != 2 {
		t.Fatalf("%d messages in %s, want the deploy and the incident", len(changes), schema.ChangesStream)
	}
	if changes[0].Header.Get("Nats-Msg-Id") != "argo-checkout-4411:succeeded" || changes[0].Subject != "deploywatch.changes.deploy.checkout" {
		t.Errorf("first change: %s %s, want the deploy", changes[0].Subject, changes[0].Header.Get("Nats-Msg-Id"))
	}
	var in schema.Incident
	if err := json.Unmarshal(changes[1].Data, &in); err != nil {
		t.Fatal(err)
	}
	if in.ID != got.IDs[2] || changes[1].Header.Get("Nats-Msg-Id") != got.IDs[2]+":opened" || changes[1].Subject != "deploywatch.changes.incident.checkout" {
		t.Errorf("second change: %s %s holding incident %s, want the incident %s", changes[1].Subject, changes[1].Header.Get("Nats-Msg-Id"), in.ID, got.IDs[2])
	}
	if ms := h.stored(schema.MetricsStream); len(ms) != 1 || ms[0].Header.Get("Nats-Msg-Id") != got.IDs[1] {
		t.Errorf("metrics stream holds %d messages, want 1 with Nats-Msg-Id %s", len(ms), got.IDs[1])
	}

	before := h.counts()
	f := func(name string, elements []string, wantField string) {
		t.Helper()
		r := h.postJSON("/api/v1/events", []byte("["+strings.Join(elements, ",")+"]"))
		if r.code != http.StatusBadRequest {
			t.Fatalf("%s: status %d, want 400; body: %s", name, r.code, r.body)
		}
		var e errorBody
		r.json(t, &e)
		if !slices.ContainsFunc(e.Fields, func(fe schema.FieldError) bool { return fe.Field == wantField }) {
			t.Fatalf("%s: fields %+v do not name %s", name, e.Fields, wantField)
		}
		if after := h.counts(); !mapsEqual(after, before) {
			t.Fatalf("%s: stream message counts went from %v to %v: nothing of a rejected request may be published", name, before, after)
		}
	}
	deploy := string(deployJSON("argo-checkout-4412", "checkout", "succeeded", now.Add(-3*time.Minute)))
	incident := string(incidentJSON("search", now.Add(-2*time.Minute)))
	badSamples := metricsBatch("checkout", 10, now.Add(-20*time.Second), 3)
	badSamples.Samples[4].Requests = schema.Count{}
	f("a sample without requests", []string{deploy, string(mustJSON(t, badSamples)), incident}, "[1].samples[4].requests")
	f("no type", []string{deploy, `{"service":"checkout","env":"prod","status":"opened","time":"` + rfc3339(now) + `"}`, incident}, "[1].type")
	f("unknown type", []string{deploy, `{"type":"deployment","service":"checkout"}`, incident}, "[1].type")
	f("a misspelt field", []string{deploy, strings.Replace(incident, `"title"`, `"titel"`, 1)}, "[1].titel")
	f("an invalid status", []string{deploy, strings.Replace(deploy, `"status": "succeeded"`, `"status": "done"`, 1)}, "[1].status")
	f("a number for an object", []string{deploy, `42`}, "[1]")
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestInvalidBatchIsRejectedNamingEveryField(t *testing.T) {
	h := start(t, setup{})
	batch := metricsBatch("checkout", 20, time.Now().Add(-time.Minute), 4)
	raw := map[string]any{}
	if err := json.Unmarshal(mustJSON(t, batch), &raw); err != nil {
		t.Fatal(err)
	}
	samples := raw["samples"].([]any)
	samples[3].(map[string]any)["requests"] = -5
	samples[11].(map[string]any)["interval_s"] = 0
	r := h.postJSON("/api/v1/metrics", mustJSON(t, raw))
	wantCode(t, r, http.StatusBadRequest)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}

	var shape map[string]json.RawMessage
	r.json(t, &shape)
	if len(shape) != 2 || shape["error"] == nil || shape["fields"] == nil {
		t.Fatalf("body %s, want exactly the keys error and fields", r.body)
	}
	var e errorBody
	r.json(t, &e)
	if !strings.Contains(e.Error, "nothing from this request was stored") {
		t.Errorf("error %q does not say that nothing was stored", e.Error)
	}
	want := map[string]string{"samples[3].requests": "whole number", "samples[11].interval_s": "> 0"}
	if len(e.Fields) != len(want) {
		t.Errorf("fields %+v, want one for each of %v", e.Fields, want)
	}
	for _, fe := range e.Fields {
		if hint, ok := want[fe.Field]; !ok || !strings.Contains(fe.Problem, hint) {
			t.Errorf("field %s: problem %q, want one of %v", fe.Field, fe.Problem, want)
		}
	}
	if got := h.counts(); got[schema.MetricsStream] != 0 || got[schema.ChangesStream] != 0 {
		t.Fatalf("streams hold %v after an invalid batch, want nothing", got)
	}
}

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBodySizeLimit(t *testing.T) {
	const limit = 64 << 10
	h := start(t, setup{cfg: ingest.Config{MaxBodyBytes: limit}})
	deploy := deployJSON("gha-search-77", "search", "succeeded", time.Now().Add(-time.Minute))
	// padded is the deploy followed by white space, n bytes in all.
	padded := func(n int) []byte { return append(slices.Clip(deploy), bytes.Repeat([]byte{' '}, n-len(deploy))...) }

	f := func(name string, body []byte, gzip bool, code int) {
		t.Helper()
		headers := []string{}
		if gzip {
			headers = append(headers, "Content-Encoding", "gzip")
		}
		r := h.postJSON("/api/v1/deploys", body, headers...)
		if r.code != code {
			t.Fatalf("%s: status %d, want %d; body: %s", name, r.code, code, r.body)
		}
		if code == http.StatusRequestEntityTooLarge {
			var e errorBody
			r.json(t, &e)
			if !strings.Contains(e.Error, "65536 bytes") {
				t.Fatalf("%s: error %q does not state the limit", name, e.Error)
			}
		}
	}
	f("at the limit", padded(limit), false, http.StatusAccepted)
	f("one byte above", padded(limit+1), false, http.StatusRequestEntityTooLarge)
	f("far above", padded(4*limit), false, http.StatusRequestEntityTooLarge)
	f("gzip", gzipped(t, deploy), true, http.StatusAccepted)
	f("gzip, at the limit decompressed", gzipped(t, padded(limit)), true, http.StatusAccepted)
	f("gzip, one byte above decompressed", gzipped(t, padded(limit+1)), true, http.StatusRequestEntityTooLarge)

	// A gzip bomb: 8 KiB that inflate to 8 MiB.
	bomb := gzipped(t, padded(8<<20))
	if len(bomb) > limit/4 {
		t.Fatalf("the bomb is %d bytes compressed, want a small one", len(bomb))
	}
	f("gzip bomb", bomb, true, http.StatusRequestEntityTooLarge)
	f("not gzip", deploy, true, http.StatusBadRequest)
	f("truncated gzip", gzipped(t, deploy)[:100], true, http.StatusBadRequest)
	corrupt := gzipped(t, padded(limit))
	corrupt[len(corrupt)-6] ^= 0xff // the CRC-32 in the trailer
	f("gzip with a wrong checksum, at the limit", corrupt, true, http.StatusBadRequest)

	if r := h.postJSON("/api/v1/deploys", deploy, "Content-Encoding", "br"); r.code != http.StatusUnsupportedMediaType {
		t.Fatalf("Content-Encoding br: status %d, want 415", r.code)
	}
	if n := h.count(schema.ChangesStream); n != 1 {
		t.Fatalf("%d messages stored, want the one deploy", n)
	}
}

func TestContentType(t *testing.T) {
	h := start(t, setup{})
	body := deployJSON("gha-search-78", "search", "succeeded", time.Now().Add(-time.Minute))
	f := func(contentType string, code int) {
		t.Helper()
		headers := []string{}
		if contentType != "" {
			headers = append(headers, "Content-Type", contentType)
		}
		r := h.do(http.MethodPost, "/api/v1/deploys", bytes.NewReader(body), headers...)
		if r.code != code {
			t.Fatalf("Content-Type %q: status %d, want %d; body: %s", contentType, r.code, code, r.body)
		}
		if code == http.StatusUnsupportedMediaType {
			var e errorBody
			r.json(t, &e)
			if !strings.Contains(e.Error, "application/json") {
				t.Fatalf("Content-Type %q: error %q does not name the right one", contentType, e.Error)
			}
		}
	}
	f("", http.StatusUnsupportedMediaType)
	f("text/plain", http.StatusUnsupportedMediaType)
	f("application/x-www-form-urlencoded", http.StatusUnsupportedMediaType)
	f("application/jsonl", http.StatusUnsupportedMediaType)
	f("application/json", http.StatusAccepted)
	f("application/json; charset=utf-8", http.StatusAccepted)
	f("Application/JSON; charset=UTF-8", http.StatusAccepted)
}

func TestAPITokens(t *testing.T) {
	h := start(t, setup{cfg: ingest.Config{APITokens: []string{"dw_ci_7f3a9c21", " dw_grafana_91b2e0 ", ""}}})
	body := deployJSON("gha-search-79", "search", "succeeded", time.Now().Add(-time.Minute))
	f := func(method, path, authorization string, code int) {
		t.Helper()
		headers := []string{"Content-Type", "application/json"}
		if authorization != "" {
			headers = append(headers, "Authorization", authorization)
		}
		var r response
		if method == http.MethodPost {
			r = h.do(method, path, bytes.NewReader(body), headers...)
		} else {
			r = h.do(method, path, nil, headers...)
		}
		if r.code != code {
			t.Fatalf("%s %s with Authorization %q: status %d, want %d; body: %s", method, path, authorization, r.code, code, r.body)
		}
		if code == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer ") {
			t.Fatalf("%s %s: 401 with WWW-Authenticate %q, want a Bearer challenge", method, path, r.header.Get("WWW-Authenticate"))
		}
	}
	f("POST", "/api/v1/deploys", "", http.StatusUnauthorized)
	f("POST", "/api/v1/deploys", "Bearer dw_ci_7f3a9c2", http.StatusUnauthorized)
	f("POST", "/api/v1/deploys", "Bearer dw_ci_7f3a9c211", http.StatusUnauthorized)
	f("POST", "/api/v1/deploys", "Bearer ", http.StatusUnauthorized)
	f("POST", "/api/v1/deploys", "dw_ci_7f3a9c21", http.StatusUnauthorized)
	f("POST", "/api/v1/deploys", "Basic ZHc6ZHdfY2lfN2YzYTljMjE=", http.StatusUnauthorized)
	f("POST", "/api/v1/metrics", "", http.StatusUnauthorized)
	f("POST", "/api/v1/events", "", http.StatusUnauthorized)
	f("GET", "/api/v1/deploys", "", http.StatusUnauthorized)
	f("GET", "/api/v1/deploys/gha-search-79", "Bearer nope", http.StatusUnauthorized)
	if n := h.count(schema.ChangesStream); n != 0 {
		t.Fatalf("%d messages stored from unauthorized requests", n)
	}

	f("POST", "/api/v1/deploys", "Bearer dw_ci_7f3a9c21", http.StatusAccepted)
	f("POST", "/api/v1/deploys", "Bearer dw_grafana_91b2e0", http.StatusAccepted)
	f("POST", "/api/v1/deploys", "bearer dw_ci_7f3a9c21", http.StatusAccepted) // the scheme is case-insensitive (RFC 9110)
	f("GET", "/healthz", "", http.StatusOK)
	f("GET", "/readyz", "", http.StatusOK)
	f("GET", "/metrics", "", http.StatusOK)
	f("GET", "/api/v1/schemas/deploy", "", http.StatusOK)
}

func TestEventLogUnavailable(t *testing.T) {
	t.Run("streams deleted", func(t *testing.T) {
		h := start(t, setup{cfg: ingest.Config{RetryAfter: 1500 * time.Millisecond}})
		ctx := testContext(t)
		for _, s := range []string{schema.ChangesStream, schema.MetricsStream} {
			if err := h.js.DeleteStream(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		body := deployJSON("gha-search-80", "search", "succeeded", time.Now().Add(-time.Minute))
		r := h.postJSON("/api/v1/deploys", body)
		wantUnavailable(t, r, "2") // 1.5s rounded up: never tell a sender 0
		wantUnavailable(t, h.postJSON("/api/v1/metrics", mustJSON(t, metricsBatch("search", 1500, time.Now(), 5))), "2")

		// Once the streams are back, the same request goes through.
		if err := eventlog.EnsureStreams(ctx, h.js, eventlog.DefaultStreamLimits()); err != nil {
			t.Fatal(err)
		}
		wantCode(t, h.postJSON("/api/v1/deploys", body), http.StatusAccepted)
		if n := h.count(schema.ChangesStream); n != 1 {
			t.Fatalf("%d messages after the retry, want 1", n)
		}
	})
	t.Run("NATS down", func(t *testing.T) {
		h := start(t, setup{ackTimeout: 500 * time.Millisecond})
		h.nats.Shutdown()
		h.nats.WaitForShutdown()
		wantUnavailable(t, h.postJSON("/api/v1/deploys", deployJSON("gha-search-81", "search", "succeeded", time.Now().Add(-time.Minute))), "5")
		wantUnavailable(t, h.postJSON("/api/v1/metrics", mustJSON(t, metricsBatch("search", 100, time.Now(), 6))), "5")

		r := h.get("/readyz")
		wantCode(t, r, http.StatusServiceUnavailable)
		var status map[string]string
		r.json(t, &status)
		if status["nats"] == "" || status["nats"] == "ok" {
			t.Fatalf("/readyz answered %s, want nats named as failing", r.body)
		}
	})
}

func wantUnavailable(t testing.TB, r response, retryAfter string) {
	t.Helper()
	wantCode(t, r, http.StatusServiceUnavailable)
	if got := r.header.Get("Retry-After"); got != retryAfter {
		t.Errorf("Retry-After %q, want %q", got, retryAfter)
	}
	var e errorBody
	r.json(t, &e)
	if !strings.Contains(e.Error, "retry") {
		t.Errorf("error %q does not tell the sender to retry", e.Error)
	}
}

// sampleLine is a sample in Prometheus' text exposition format.
var sampleLine = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\{ *([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*" *,? *)*\})? (-?[0-9.]+([eE][-+]?[0-9]+)?|NaN|[-+]Inf)$`)

func TestMetricsEndpoint(t *testing.T) {
	h := start(t, setup{})
	wantCode(t, h.postJSON("/api/v1/deploys", deployJSON("gha-search-82", "search", "succeeded", time.Now().Add(-time.Minute))), http.StatusAccepted)
	wantCode(t, h.postJSON("/api/v1/deploys", []byte(`{"service":"search"}`)), http.StatusBadRequest)
	wantCode(t, h.postJSON("/api/v1/metrics", mustJSON(t, metricsBatch("search", 30, time.Now(), 7))), http.StatusAccepted)

	r := h.get("/metrics")
	wantCode(t, r, http.StatusOK)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q, want Prometheus' text format", ct)
	}
	lines := strings.Split(strings.TrimSuffix(string(r.body), "\n"), "\n")
	for _, line := range lines {
		if !strings.HasPrefix(line, "#") && !sampleLine.MatchString(line) {
			t.Errorf("not a line of Prometheus' text format: %q", line)
		}
	}
	for _, want := range []string{
		`deploywatch_http_requests_total{route="POST /api/v1/deploys",code="202"} 1`,
		`deploywatch_http_requests_total{route="POST /api/v1/deploys",code="400"} 1`,
		`deploywatch_http_requests_total{route="POST /api/v1/metrics",code="202"} 1`,
		`deploywatch_ingest_rejected_requests_total 1`,
		`deploywatch_eventlog_published_total 2`,
		`deploywatch_ingest_samples_per_request_count 1`,
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestPostMetricsKeepsMessagesWithinTheMaxPayload(t *testing.T) {
	// A NATS server with its default max_payload, as an external one has.
	const maxPayload = 1 << 20
	h := start(t, setup{maxPayload: maxPayload})
	// 1,000 samples with 120-bucket exponential latency histograms (from 0.1 ms
	// up, as OpenTelemetry's exponential histograms have, whose first bucket
	// follows each sample's fastest response): about 2 MB as JSON and 1.2 MB
	// in the event log's binary encoding, within the body limit but not
	// within one message.
	const buckets = 120
	batch := metricsBatch("checkout", 1000, time.Now().Add(-time.Minute), 8)
	for i := range batch.Samples {
		s := &batch.Samples[i]
		s.LatencyMs = nil
		h := &schema.LatencyHistogram{Counts: make([]schema.Count, buckets+1)}
		left := s.Requests.Value
		offset := i % 50
		for j := range buckets {
			h.BoundsMs = append(h.BoundsMs, math.Round(100*math.Pow(1.09, float64(offset+j)))/1000)
			share := min(left, s.Requests.Value/(buckets+20))
			h.Counts[j] = schema.CountOf(share)
			left -= share
		}
		h.Counts[buckets] = schema.CountOf(left)
		s.LatencyHistogram = h
	}
	body := mustJSON(t, batch)
	if len(body) <= maxPayload {
		t.Fatalf("the batch is %d bytes, want more than the max payload", len(body))
	}
	for range 2 {
		r := h.postJSON("/api/v1/metrics", body)
		wantCode(t, r, http.StatusAccepted)
	}
	msgs := h.stored(schema.MetricsStream)
	if len(msgs) < 2 {
		t.Fatalf("%d messages, want the batch split in several", len(msgs))
	}
	n := 0
	for i, m := range msgs {
		if len(m.Data) > maxPayload {
			t.Errorf("message %d is %d bytes", i, len(m.Data))
		}
		var part schema.MetricsBatch
		if err := schema.DecodeMetricsMessage(m.Header.Get(schema.EncodingHeader), m.Data, &part); err != nil {
			t.Fatal(err)
		}
		n += len(part.Samples)
	}
	if n != 1000 {
		t.Fatalf("the messages hold %d samples, want 1000", n)
	}
}
