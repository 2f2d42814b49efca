package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
)

// TestServeDeliversAlertsToWebhooks follows a bad deploy through serve with
// --receivers: the built-in rules fire on its bad verdict, the alert reaches
// the receiver signed, after a failed first attempt, and both attempts are
// in webhook_deliveries.
func TestServeDeliversAlertsToWebhooks(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	var (
		mu     sync.Mutex
		got    []*http.Request
		bodies [][]byte
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r), append(bodies, body)
		n := len(got)
		mu.Unlock()
		if n == 1 {
			w.WriteHeader(http.StatusBadGateway) // a proxy in the way, once
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer receiver.Close()
	file := filepath.Join(t.TempDir(), "receivers.yaml")
	yaml := fmt.Sprintf("retry: {initial_interval: 50ms, max_interval: 200ms}\nreceivers:\n  - name: oncall\n    url: %s/hook\n    secret: env:TEST_ONCALL_SECRET\n", receiver.URL)
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_ONCALL_SECRET", secret)

	p := startServe(t, testenv.ClickHouse(t), func(c *serveConfig) {
		c.impact.enabled, c.alerts.enabled, c.delivery.receivers = true, true, file
	})
	deployAt := time.Now().UTC().Add(-50 * time.Minute).Truncate(time.Minute)
	finished := deployAt.Add(time.Minute)
	versionAt := func(ts time.Time) string {
		if ts.After(deployAt) {
			return "v9"
		}
		return "v8"
	}
	errorsAt := func(ts time.Time) float64 {
		if ts.After(finished) {
			return 0.04
		}
		return 0.004
	}
	deploy := fmt.Sprintf(`{"service":"basket","env":"production","version":"v9","previous_version":"v8","status":"succeeded","started_at":%q,"finished_at":%q}`,
		deployAt.Format(time.RFC3339), finished.Format(time.RFC3339))
	status, answer := p.post(t, "/api/v1/deploys", []byte(deploy))
	if status != http.StatusAccepted {
		t.Fatalf("POST deploy: %d %v", status, answer)
	}
	id := answer["ids"].([]any)[0].(string)
	for _, b := range serviceTraffic("basket", deployAt.Add(-30*time.Minute), finished.Add(10*time.Minute), 12, errorsAt, versionAt, 4) {
		if status, answer := p.post(t, "/api/v1/metrics", b); status != http.StatusAccepted {
			t.Fatalf("POST metrics: %d %v", status, answer)
		}
	}

	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		n := p.count(t, "SELECT count() FROM webhook_deliveries FINAL WHERE receiver = 'oncall' AND outcome = 'delivered'")
		return n >= 1, fmt.Sprintf("%d delivered attempts in webhook_deliveries", n)
	})
	mu.Lock()
	defer mu.Unlock()
	// The attempts of the first delivery: the failed one and its retry.
	var same []int
	for i, r := range got {
		if r.Header.Get("webhook-id") == got[0].Header.Get("webhook-id") {
			same = append(same, i)
		}
	}
	if len(same) != 2 {
		t.Fatalf("the first delivery came %d times, want twice (502, then 200) with one webhook-id", len(same))
	}
	var firing schema.Alert
	if err := json.Unmarshal(bodies[same[1]], &firing); err != nil || firing.DeployID != id || firing.Status != schema.AlertFiring {
		t.Fatalf("the receiver got %s, want the firing alert of deploy %s (%v)", bodies[same[1]], id, err)
	}
	for _, i := range same {
		r := got[i]
		key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(r.Header.Get("webhook-id") + "." + r.Header.Get("webhook-timestamp") + "." + string(bodies[i])))
		if want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)); r.Header.Get("webhook-signature") != want {
			t.Errorf("request %d: signature %q, want %q", i+1, r.Header.Get("webhook-signature"), want)
		}
	}
	if n := p.count(t, "SELECT count() FROM webhook_deliveries FINAL WHERE alert_event_id = ?", firing.ID); n != 2 {
		t.Errorf("%d attempts recorded for the firing alert, want 2", n)
	}
}
