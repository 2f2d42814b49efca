package ingest_test

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/deploywatch/deploywatch/ingest"
	"github.com/deploywatch/deploywatch/schema"
)

const testGitLabToken = "gitlab-secret-token"

// gitlabPayload reads a GitLab webhook payload from testdata: the examples
// of GitLab's webhook events documentation.
func gitlabPayload(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "gitlab-webhooks", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// postGitLab posts body as GitLab delivers it, with token.
func postGitLab(h *harness, event, token string, body []byte) response {
	h.t.Helper()
	return h.postJSON("/webhooks/gitlab", body,
		"User-Agent", "GitLab/17.5.0",
		"X-Gitlab-Event", event,
		"X-Gitlab-Event-UUID", "13792a34-cac6-4fda-95a8-c58e00a3954e",
		"X-Gitlab-Token", token)
}

func gitlabSetup(services map[string]string) setup {
	return setup{cfg: ingest.Config{Webhooks: ingest.WebhookConfig{GitLabToken: testGitLabToken, ServiceMap: services}}}
}

func TestGitLabWebhookDeploymentLifecycle(t *testing.T) {
	h := start(t, gitlabSetup(nil))
	const sha = "279484c09fbe69ededfced8c1bb6e6d24616b468"
	want := schema.Deploy{ID: "gl-30-15", Type: schema.TypeDeploy, Service: "test-deployment-webhooks", Env: "staging", Version: sha,
		Commits: []schema.Commit{{SHA: sha, Message: "Add new file"}}, Author: "root",
		URL:    "http://10.126.0.2:3000/root/test-deployment-webhooks/-/jobs/796",
		Labels: map[string]string{"source": "gitlab", "repository": "root/test-deployment-webhooks", "ref": "master"}}
	for _, file := range []string{"deployment-running.json", "deployment-success.json", "deployment-success.json"} {
		r := postGitLab(h, "Deployment Hook", testGitLabToken, gitlabPayload(t, file))
		wantCode(t, r, http.StatusAccepted)
		var a webhookAnswer
		r.json(t, &a)
		if a.Accepted != 1 || !slices.Equal(a.IDs, []string{want.ID}) {
			t.Fatalf("%s: answer %+v, want the deploy %s", file, a, want.ID)
		}
	}
	got := storedDeploys(t, h)
	started, succeeded := want, want
	started.Status, started.StartedAt = schema.DeployStarted, at(t, "2021-04-28T19:48:12Z")
	succeeded.Status, succeeded.FinishedAt = schema.DeploySucceeded, at(t, "2021-04-28T19:50:00Z")
	if !slices.EqualFunc(got, []schema.Deploy{started, succeeded}, sameDeploy) {
		t.Fatalf("stored\n%+v\nwant the deploy started and succeeded, once each", got)
	}
}

func TestGitLabWebhookPipelines(t *testing.T) {
	h := start(t, gitlabSetup(map[string]string{"gitlab-org/gitlab-test": "gitlab-test-web"}))
	const sha = "bcbb5ec396a2c0f828686f14fac9b80b780504f2"
	r := postGitLab(h, "Pipeline Hook", testGitLabToken, gitlabPayload(t, "pipeline-success.json"))
	wantCode(t, r, http.StatusAccepted)
	want := schema.Deploy{ID: "gl-1-pipeline-31", Type: schema.TypeDeploy, Service: "gitlab-test-web", Env: "production", Version: sha,
		Status: schema.DeploySucceeded, StartedAt: at(t, "2016-08-12T15:23:28Z"), FinishedAt: at(t, "2016-08-12T15:26:29Z"),
		Commits: []schema.Commit{{SHA: sha, Time: at(t, "2016-08-12T15:23:21Z"), Author: "User", Message: "test\n"}},
		Author:  "root", URL: "http://example.com/gitlab-org/gitlab-test/-/pipelines/31",
		Labels: map[string]string{"source": "gitlab", "repository": "gitlab-org/gitlab-test", "ref": "master"}}
	if got := storedDeploys(t, h); !slices.EqualFunc(got, []schema.Deploy{want}, sameDeploy) {
		t.Fatalf("stored\n%+v\nwant\n%+v", got, want)
	}

	// A pipeline without a deploy job is valid, and no deploy (pushes: see
	// TestGitLabPush).
	for _, c := range []struct{ event, file string }{{"Pipeline Hook", "pipeline-no-deploy.json"}} {
		r := postGitLab(h, c.event, testGitLabToken, gitlabPayload(t, c.file))
		wantCode(t, r, http.StatusAccepted)
		var a webhookAnswer
		r.json(t, &a)
		if a.Accepted != 0 || a.Reason == "" {
			t.Fatalf("%s: answer %+v, want nothing accepted and a reason", c.file, a)
		}
	}
	if n := h.count(schema.ChangesStream); n != 1 {
		t.Fatalf("stored %d messages, want the one deploy", n)
	}
}

func TestGitLabWebhookRefusesUnverified(t *testing.T) {
	body := gitlabPayload(t, "deployment-success.json")
	h := start(t, gitlabSetup(nil))
	wantCode(t, postGitLab(h, "Deployment Hook", "wrong", body), http.StatusUnauthorized)
	wantCode(t, h.postJSON("/webhooks/gitlab", body, "X-Gitlab-Event", "Deployment Hook"), http.StatusUnauthorized)
	wantCode(t, postGitLab(h, "Deployment Hook", testGitLabToken, []byte(`{"object_kind":"deployment","status":"success"}`)), http.StatusBadRequest)
	if n := h.count(schema.ChangesStream); n != 0 {
		t.Fatalf("stored %d messages from unverified or invalid deliveries, want none", n)
	}
	off := start(t, setup{})
	wantCode(t, postGitLab(off, "Deployment Hook", testGitLabToken, body), http.StatusServiceUnavailable)
}
