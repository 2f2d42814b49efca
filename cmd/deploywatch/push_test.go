package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
)

// TestServePushesIntoCommits goes through the real serve wiring: a signed
// GitHub push delivery, delivered twice (and once more under a delivery id
// seen before), and a push sent to POST
// /api/v1/events by a CI system become rows of commits, once each.
func TestServePushesIntoCommits(t *testing.T) {
	const secret = "e2e-push-secret"
	p := startServe(t, testenv.ClickHouse(t), func(c *serveConfig) {
		c.githubWebhookSecret = secret
		c.webhookServiceMap = "Codertocat/Hello-World=hello"
	})
	body, err := os.ReadFile(filepath.Join("..", "..", "ingest", "testdata", "github-webhooks", "push", "with-new-branch.payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	signature := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	for i, delivery := range []string{"push-delivery-1", "push-delivery-2", "push-delivery-1"} {
		req, err := http.NewRequest(http.MethodPost, p.api+"/webhooks/github", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", delivery)
		req.Header.Set("X-Hub-Signature-256", signature)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || !bytes.Contains(answer, []byte(`"gh-push-186853002-6113728f27ae82c7b1a177c8d03f9e96e0adf246"`)) {
			t.Fatalf("POST push %s: %d %s", delivery, resp.StatusCode, answer)
		}
		// The delivery id seen before is answered from serve's delivery log.
		if replayed := bytes.Contains(answer, []byte(`"accepted":0`)); replayed != (i == 2) {
			t.Fatalf("POST push %s (%d): %s", delivery, i, answer)
		}
	}
	code, answer := p.post(t, "/api/v1/events", []byte(`{"type":"push","service":"checkout","repo":"acme/checkout","ref":"refs/heads/main",
		"head_sha":"9f2c1e4b7a8d","pushed_at":"2026-11-20T13:58:02Z",
		"commits":[{"sha":"77ac21f0","time":"2026-11-19T17:12:44Z","author":"li.wei","message":"cart: new layout"},
		           {"sha":"9f2c1e4b7a8d","time":"2026-11-20T11:47:15+01:00","author":"ana.souza"}]}`))
	if code != http.StatusAccepted {
		t.Fatalf("POST /api/v1/events push: %d %v", code, answer)
	}
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		n := p.count(t, "SELECT count() FROM commits FINAL")
		return n == 3, fmt.Sprintf("%d of 3 commit rows", n)
	})
	f := func(service, sha, head, commitTime string) {
		t.Helper()
		n := p.count(t, `SELECT count() FROM commits FINAL WHERE service = ? AND sha = ? AND head_sha = ? AND commit_time = toDateTime(?, 'UTC')`,
			service, sha, head, commitTime)
		if n != 1 {
			t.Errorf("%d rows of commit %s of %s pushed as %s at %s, want 1", n, sha, service, head, commitTime)
		}
	}
	f("hello", "6113728f27ae82c7b1a177c8d03f9e96e0adf246", "6113728f27ae82c7b1a177c8d03f9e96e0adf246", "2019-05-15 15:19:25")
	f("checkout", "77ac21f0", "9f2c1e4b7a8d", "2026-11-19 17:12:44")
	f("checkout", "9f2c1e4b7a8d", "9f2c1e4b7a8d", "2026-11-20 10:47:15")
	// The redelivered webhook was one message in the event log.
	if n := p.count(t, "SELECT count() FROM commits WHERE service = 'hello'"); n != 1 {
		t.Errorf("%d raw rows for the push delivered twice, want 1: the event log deduplicates by push id", n)
	}

	// A deploy that names only the pushed head gets lead time from the
	// push's commit times: what the commits table is for.
	code, answer = p.post(t, "/api/v1/events", []byte(`{"type":"deploy","service":"checkout","env":"production","version":"9f2c1e4b7a8d",
		"status":"succeeded","started_at":"2026-11-20T14:03:07Z","finished_at":"2026-11-20T14:09:41Z"}`))
	if code != http.StatusAccepted {
		t.Fatalf("POST deploy: %d %v", code, answer)
	}
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		n := p.count(t, "SELECT count() FROM dora_lead_times WHERE service = 'checkout'")
		return n == 2, fmt.Sprintf("%d of 2 lead times", n)
	})
	for sha, want := range map[string]uint64{
		"77ac21f0":     75417, // 2026-11-19 17:12:44 → 2026-11-20 14:09:41
		"9f2c1e4b7a8d": 12146, // 10:47:15 → 14:09:41
	} {
		if got := p.count(t, "SELECT toUInt64(lead_time_s) FROM dora_lead_times WHERE service = 'checkout' AND sha = ?", sha); got != want {
			t.Errorf("lead time of %s: %d s, want %d s", sha, got, want)
		}
	}
}
