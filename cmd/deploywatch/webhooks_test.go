package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
)

func TestWebhookConfig(t *testing.T) {
	f := func(serviceMap, workflows string, want map[string]string, wantErr string) {
		t.Helper()
		w, err := webhookConfig(serveConfig{webhookServiceMap: serviceMap, githubDeployWorkflows: workflows, githubWebhookSecret: "s"})
		switch {
		case wantErr == "" && err != nil:
			t.Fatalf("webhookConfig(%q, %q): %v", serviceMap, workflows, err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Fatalf("webhookConfig(%q, %q) error %v, want one saying %q", serviceMap, workflows, err, wantErr)
		case wantErr == "" && (!maps.Equal(w.ServiceMap, want) || w.GitHubDeployWorkflows != workflows || w.GitHubSecret != "s"):
			t.Fatalf("webhookConfig(%q, %q) = %+v, want the map %v", serviceMap, workflows, w, want)
		}
	}
	f("", "", nil, "")
	f("acme/checkout-web=checkout, billing-api = billing", "Deploy*", map[string]string{"acme/checkout-web": "checkout", "billing-api": "billing"}, "")
	f("acme/checkout-web", "", nil, `entry "acme/checkout-web" must be repo=service`)
	f("=checkout", "", nil, "must be repo=service")
	f("", "Deploy[", nil, "") // * and ? are the only wildcards: [ is itself
}

// The flags reach the API: a signed GitHub deployment and its status become
// one deploy, under the mapped service, in the read model.
func TestServeGitHubWebhooks(t *testing.T) {
	const secret = "e2e-secret"
	p := startServe(t, testenv.ClickHouse(t), func(c *serveConfig) {
		c.githubWebhookSecret = secret
		c.webhookServiceMap = "Codertocat/Hello-World=hello"
	})
	for _, c := range []struct{ event, file string }{
		{"deployment", "deployment/payload.json"},
		{"deployment_status", "deployment_status/payload.json"},
	} {
		body, err := os.ReadFile(filepath.Join("..", "..", "ingest", "testdata", "github-webhooks", c.file))
		if err != nil {
			t.Fatal(err)
		}
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		req, err := http.NewRequest(http.MethodPost, p.api+"/webhooks/github", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", c.event)
		req.Header.Set("X-GitHub-Delivery", "delivery-"+c.event)
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST %s: %d %s", c.file, resp.StatusCode, answer)
		}
	}
	// GitLab has no token configured: refused, saying why.
	if code, answer := p.post(t, "/webhooks/gitlab", []byte(`{"object_kind":"deployment"}`)); code != http.StatusServiceUnavailable {
		t.Fatalf("POST /webhooks/gitlab without --gitlab-webhook-token: %d %v, want 503", code, answer)
	}
	var deploy map[string]any
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		code := p.getJSON(t, "/api/v1/deploys/gh-186853002-145988746", &deploy)
		return code == http.StatusOK && deploy["status"] == "succeeded", fmt.Sprintf("GET deploy: %d %v", code, deploy)
	})
	for field, want := range map[string]any{
		"service": "hello", "env": "production", "version": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e", "duration_s": 2.0,
	} {
		if deploy[field] != want {
			t.Errorf("deploy %s = %v, want %v", field, deploy[field], want)
		}
	}
}
