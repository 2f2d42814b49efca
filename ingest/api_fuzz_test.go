package ingest_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/ingest"
	"github.com/deploywatch/deploywatch/schema"
)

// Route-level fuzz targets: a body goes through the real handler, with its
// authentication, decoding, validation and publishing, into a recording
// publisher. Whatever a route accepts must be what the event log's
// consumers accept; whatever it refuses must publish nothing.

// checkPublished checks what a route published for its answer code.
func checkPublished(t *testing.T, rec *httptest.ResponseRecorder, msgs []schema.Message) {
	t.Helper()
	switch {
	case rec.Code == http.StatusAccepted || rec.Code == http.StatusNoContent:
		for _, m := range msgs {
			if strings.HasPrefix(m.Subject, "deploywatch.metrics.") {
				var b schema.MetricsBatch
				if err := schema.DecodeMetricsMessage(schema.EncodingOf(m.Data), m.Data, &b); err != nil {
					t.Fatalf("published a batch the sink refuses: %v", err)
				}
				if m.ID != b.ID || m.Subject != schema.Subject(&b) {
					t.Fatalf("published batch %s on %s under id %q", b.ID, m.Subject, m.ID)
				}
				continue
			}
			ev, err := schema.DecodeEvent(m.Data, "")
			if err != nil {
				t.Fatalf("published %s, which the sink refuses: %v", m.Data, err)
			}
			if m.ID != ev.EventID() || m.Subject != schema.Subject(ev) {
				t.Fatalf("published %s event %s on %s under id %q", ev.EventType(), ev.EventID(), m.Subject, m.ID)
			}
		}
	case rec.Code >= 400 && rec.Code < 500, rec.Code == http.StatusServiceUnavailable:
		if len(msgs) != 0 {
			t.Fatalf("answered %d after publishing %d messages", rec.Code, len(msgs))
		}
		if !bytes.Contains(rec.Body.Bytes(), []byte(`"error"`)) {
			t.Fatalf("answered %d without saying why: %s", rec.Code, rec.Body)
		}
	default:
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
}

func fixtures(f *testing.F, dir string) map[string][]byte {
	f.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(filepath.Join("testdata", dir), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".json" {
			return err
		}
		b, err := os.ReadFile(path)
		out[path] = b
		return err
	})
	if err != nil || len(out) == 0 {
		f.Fatalf("no fixtures in testdata/%s: %v", dir, err)
	}
	return out
}

var apiRoutes = []string{"/api/v1/events", "/api/v1/deploys", "/api/v1/metrics"}

// FuzzAPIPost posts bodies to the JSON routes: events, deploys, metrics.
func FuzzAPIPost(f *testing.F) {
	now := time.Now().Add(-time.Hour)
	deploy := deployJSON("checkout-2026.11.22-1", "checkout", "succeeded", now)
	batch := mustJSON(f, metricsBatch("checkout", 10, now, 1))
	f.Add(uint8(0), deploy)
	f.Add(uint8(0), []byte("["+string(deploy)+","+string(incidentJSON("checkout", now))+","+string(batch)+"]"))
	f.Add(uint8(1), deploy)
	f.Add(uint8(2), batch)
	f.Add(uint8(2), []byte(`{"service":"checkout","env":"prod","samples":[{"time":"2026-11-22T08:00:00Z","interval_s":10,"requests":-4,"errors":0}]}`))
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		pub := &recordingPublisher{}
		// Small messages, so that batches are split as large ones are.
		api := ingest.New(ingest.Config{MaxBodyBytes: 1 << 20, MaxSamplesPerMessage: 7}, pub, nil)
		req := httptest.NewRequest(http.MethodPost, apiRoutes[int(route)%len(apiRoutes)], bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		api.Handler().ServeHTTP(rec, req)
		if rec.Code == http.StatusAccepted && len(pub.msgs) == 0 {
			t.Fatalf("202 without publishing: %s", rec.Body)
		}
		checkPublished(t, rec, pub.msgs)
	})
}

// FuzzWebhookDelivery posts signed GitHub deliveries and GitLab deliveries
// with the right token, of any event, through the webhook routes.
func FuzzWebhookDelivery(f *testing.F) {
	for path, body := range fixtures(f, "github-webhooks") {
		f.Add(false, filepath.Base(filepath.Dir(path)), body)
	}
	gitlabEvents := map[string]string{"deployment": "Deployment Hook", "pipeline": "Pipeline Hook", "push": "Push Hook"}
	for path, body := range fixtures(f, "gitlab-webhooks") {
		kind, _, _ := strings.Cut(filepath.Base(path), "-")
		f.Add(true, gitlabEvents[strings.TrimSuffix(kind, ".json")], body)
	}
	cfg := ingest.Config{Webhooks: ingest.WebhookConfig{
		GitHubSecret: testGitHubSecret, GitLabToken: testGitLabToken, GitHubDeployWorkflows: "*",
		ServiceMap: map[string]string{"Codertocat/Hello-World": "hello"},
	}}
	f.Fuzz(func(t *testing.T, gitlab bool, event string, body []byte) {
		pub := &recordingPublisher{}
		api := ingest.New(cfg, pub, nil)
		var req *http.Request
		if gitlab {
			req = httptest.NewRequest(http.MethodPost, "/webhooks/gitlab", bytes.NewReader(body))
			req.Header.Set("X-Gitlab-Event", event)
			req.Header.Set("X-Gitlab-Token", testGitLabToken)
		} else {
			req = httptest.NewRequest(http.MethodPost, "/webhooks/github", bytes.NewReader(body))
			req.Header.Set("X-GitHub-Event", event)
			req.Header.Set("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
			req.Header.Set("X-Hub-Signature-256", githubSignature(testGitHubSecret, body))
		}
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		api.Handler().ServeHTTP(rec, req)
		checkPublished(t, rec, pub.msgs)
	})
}
