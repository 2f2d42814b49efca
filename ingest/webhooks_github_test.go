package ingest_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/ingest"
	"github.com/deploywatch/deploywatch/schema"
)

const testGitHubSecret = "It's a Secret to Everybody"

// webhookAnswer is what the webhook routes answer.
type webhookAnswer struct {
	Accepted int      `json:"accepted"`
	IDs      []string `json:"ids"`
	Reason   string   `json:"reason"`
}

// githubPayload reads a real GitHub webhook payload from testdata (a copy of
// GitHub's own examples, see testdata/github-webhooks/LICENSE).
func githubPayload(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "github-webhooks", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func githubSignature(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// postGitHub posts body as GitHub delivers it, signed with secret.
func postGitHub(h *harness, event, delivery, secret string, body []byte) response {
	h.t.Helper()
	return h.postJSON("/webhooks/github", body,
		"User-Agent", "GitHub-Hookshot/a8a6f4e",
		"X-GitHub-Event", event,
		"X-GitHub-Delivery", delivery,
		"X-GitHub-Hook-ID", "292430182",
		"X-Hub-Signature-256", githubSignature(secret, body))
}

// storedDeploys decodes the deploy changes on the changes stream as the sink
// does, checking each one's Nats-Msg-Id.
func storedDeploys(t *testing.T, h *harness) []schema.Deploy {
	t.Helper()
	var out []schema.Deploy
	for _, m := range h.stored(schema.ChangesStream) {
		ev, err := schema.DecodeEvent(m.Data, "")
		if err != nil {
			t.Fatalf("the stored message %s does not decode as the sink decodes it: %v", m.Data, err)
		}
		d, ok := ev.(*schema.Deploy)
		if !ok {
			t.Fatalf("stored a %T, want deploys only", ev)
		}
		if got := m.Header.Get("Nats-Msg-Id"); got != d.EventID() {
			t.Errorf("Nats-Msg-Id %q, want the event id %q", got, d.EventID())
		}
		out = append(out, *d)
	}
	return out
}

func githubSetup(workflows string, services map[string]string) setup {
	return setup{cfg: ingest.Config{Webhooks: ingest.WebhookConfig{
		GitHubSecret: testGitHubSecret, GitHubDeployWorkflows: workflows, ServiceMap: services}}}
}

func at(t testing.TB, s string) schema.Time { return schema.At(mustTime(t, s)) }

func TestGitHubWebhookEveryFixture(t *testing.T) {
	const sha = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
	const id = "gh-186853002-145988746"
	labels := func(ref string) map[string]string {
		return map[string]string{"source": "github", "repository": "Codertocat/Hello-World", "ref": ref}
	}
	f := func(event, file string, want *schema.Deploy, reason string) {
		t.Helper()
		h := start(t, githubSetup("test", map[string]string{"octo-org/octo-repo": "octo"}))
		r := postGitHub(h, event, "72d3162e-cc78-11e3-81ab-4c9367dc0958", testGitHubSecret, githubPayload(t, filepath.Join(event, file)))
		wantCode(t, r, http.StatusAccepted)
		var got webhookAnswer
		r.json(t, &got)
		stored := storedDeploys(t, h)
		if want == nil {
			if got.Accepted != 0 || got.Reason != reason || len(stored) != 0 {
				t.Fatalf("%s/%s: answer %+v and stored %+v, want nothing stored and reason %q", event, file, got, stored, reason)
			}
			return
		}
		want.Type = schema.TypeDeploy
		if got.Accepted != 1 || !slices.Equal(got.IDs, []string{want.ID}) || len(stored) != 1 {
			t.Fatalf("%s/%s: answer %+v and stored %d deploys, want 1 with id %s", event, file, got, len(stored), want.ID)
		}
		if d := stored[0]; !sameDeploy(d, *want) {
			t.Fatalf("%s/%s: stored\n%+v\nwant\n%+v", event, file, d, *want)
		}
	}
	f("deployment", "payload.json", &schema.Deploy{ID: id, Service: "Hello-World", Env: "production", Version: sha,
		Status: schema.DeployStarted, StartedAt: at(t, "2019-05-15T15:20:53Z"), Commits: []schema.Commit{{SHA: sha}},
		Author: "Codertocat", Labels: labels("master")}, "")
	f("deployment", "gh-pages.payload.json", &schema.Deploy{ID: id, Service: "Hello-World", Env: "github-pages", Version: sha,
		Status: schema.DeployStarted, StartedAt: at(t, "2022-01-03T01:28:30Z"), Commits: []schema.Commit{{SHA: sha}},
		Author: "github-pages[bot]", Labels: labels("gh-pages")}, "")
	f("deployment_status", "payload.json", &schema.Deploy{ID: id, Service: "Hello-World", Env: "production", Version: sha,
		Status: schema.DeploySucceeded, StartedAt: at(t, "2019-05-15T15:20:53Z"), FinishedAt: at(t, "2019-05-15T15:20:55Z"),
		Commits: []schema.Commit{{SHA: sha}}, Author: "Codertocat", Labels: labels("master")}, "")
	f("deployment_status", "gh-pages.payload.json", &schema.Deploy{ID: id, Service: "Hello-World", Env: "github-pages", Version: sha,
		Status: schema.DeployStarted, StartedAt: at(t, "2022-01-03T01:28:30Z"), Commits: []schema.Commit{{SHA: sha}},
		Author: "github-pages[bot]", URL: "https://github.com/CorsixTH/CorsixTH/runs/4687056418?check_suite_focus=true", Labels: labels("master")}, "")
	const head = "3484a3fb816e0859fd6e1cea078d76385ff50625"
	f("workflow_run", "completed.payload.json", &schema.Deploy{ID: "gha-300029405-289782451-1", Service: "octo", Env: "production", Version: head,
		Status: schema.DeploySucceeded, StartedAt: at(t, "2020-10-05T16:33:49Z"), FinishedAt: at(t, "2020-10-05T16:33:49Z"),
		Commits: []schema.Commit{{SHA: head, Time: at(t, "2020-10-05T16:32:07Z"), Author: "Matthias Fax", Message: "build(test): check workflow run event payload"}},
		Author:  "Codertocat", URL: "https://github.com/octo-org/octo-repo/actions/runs/289782451",
		Labels: map[string]string{"source": "github", "repository": "octo-org/octo-repo", "ref": "master", "workflow": "test"}}, "")
	// push: see TestGitHubPushEveryFixture.
	f("pull_request", "closed.payload.json", nil, "pull_request events are not used: subscribe the webhook to deployment, deployment_status, workflow_run and push events only")
	f("release", "published.payload.json", nil, "release events are not used: subscribe the webhook to deployment, deployment_status, workflow_run and push events only")
}

func sameDeploy(a, b schema.Deploy) bool {
	return a.ID == b.ID && a.Type == b.Type && a.Service == b.Service && a.Env == b.Env && a.Version == b.Version &&
		a.Status == b.Status && a.StartedAt.Equal(b.StartedAt.Time) && a.FinishedAt.Equal(b.FinishedAt.Time) &&
		slices.EqualFunc(a.Commits, b.Commits, func(x, y schema.Commit) bool {
			return x.SHA == y.SHA && x.Time.Equal(y.Time.Time) && x.Author == y.Author && x.Message == y.Message
		}) &&
		a.Author == b.Author && a.URL == b.URL && maps.Equal(a.Labels, b.Labels)
}

// A deployment's events share its deploy's id, and GitHub's re-delivery of
// a delivery stores nothing twice.
func TestGitHubWebhookLifecycleAndRedelivery(t *testing.T) {
	h := start(t, githubSetup("", nil))
	created := githubPayload(t, "deployment/payload.json")
	succeeded := githubPayload(t, "deployment_status/payload.json")
	wantCode(t, postGitHub(h, "deployment", "d-1", testGitHubSecret, created), http.StatusAccepted)
	wantCode(t, postGitHub(h, "deployment_status", "d-2", testGitHubSecret, succeeded), http.StatusAccepted)
	wantCode(t, postGitHub(h, "deployment_status", "d-2", testGitHubSecret, succeeded), http.StatusAccepted) // "Redeliver"
	got := storedDeploys(t, h)
	if len(got) != 2 || got[0].ID != got[1].ID || got[0].Status != schema.DeployStarted || got[1].Status != schema.DeploySucceeded {
		t.Fatalf("stored %+v, want the deploy started then succeeded, once each", got)
	}
	if d := got[1]; d.FinishedAt.Sub(d.StartedAt.Time) != 2*time.Second {
		t.Fatalf("deploy took %s, want 2s", d.FinishedAt.Sub(d.StartedAt.Time))
	}
	// Without a configured workflow pattern a workflow run is no deploy.
	r := postGitHub(h, "workflow_run", "d-3", testGitHubSecret, githubPayload(t, "workflow_run/completed.payload.json"))
	wantCode(t, r, http.StatusAccepted)
	var a webhookAnswer
	r.json(t, &a)
	if a.Accepted != 0 || a.Reason == "" {
		t.Fatalf("answer %+v to a workflow run without --github-deploy-workflows, want a reason", a)
	}
}

func TestGitHubWebhookRefusesUnverified(t *testing.T) {
	body := githubPayload(t, "deployment/payload.json")
	h := start(t, githubSetup("*", nil))
	// A forged signature, a signature over other bytes, none at all.
	wantCode(t, postGitHub(h, "deployment", "d-1", "not the secret", body), http.StatusUnauthorized)
	wantCode(t, h.postJSON("/webhooks/github", append(body, ' '), "X-GitHub-Event", "deployment", "X-GitHub-Delivery", "d-2",
		"X-Hub-Signature-256", githubSignature(testGitHubSecret, body)), http.StatusUnauthorized)
	wantCode(t, h.postJSON("/webhooks/github", body, "X-GitHub-Event", "deployment", "X-GitHub-Delivery", "d-3"), http.StatusUnauthorized)
	// Signed, but not GitHub's payload.
	wantCode(t, postGitHub(h, "deployment", "d-4", testGitHubSecret, []byte(`{"action":"created"}`)), http.StatusBadRequest)
	if n := h.count(schema.ChangesStream); n != 0 {
		t.Fatalf("stored %d messages from unverified or invalid deliveries, want none", n)
	}

	// No secret configured: every delivery is refused, saying why.
	off := start(t, setup{})
	r := postGitHub(off, "deployment", "d-5", testGitHubSecret, body)
	wantCode(t, r, http.StatusServiceUnavailable)
	var e struct {
		Error string `json:"error"`
	}
	r.json(t, &e)
	if e.Error == "" {
		t.Fatal("a 503 without the reason")
	}
	if n := off.count(schema.ChangesStream); n != 0 {
		t.Fatalf("stored %d messages without a secret, want none", n)
	}
}

// Every deployment status GitHub sends maps to a step of the deploy, or to
// nothing with a reason; a status that maps to a step already stored (queued
// after pending, error after failure) is the same event and stored once.
func TestGitHubWebhookDeploymentStates(t *testing.T) {
	h := start(t, githubSetup("", nil))
	payload := githubPayload(t, "deployment_status/payload.json")
	f := func(state string, want schema.DeployStatus, stored int) {
		t.Helper()
		body := bytes.Replace(payload, []byte(`"state": "success"`), []byte(`"state": "`+state+`"`), 1)
		r := postGitHub(h, "deployment_status", "state-"+state, testGitHubSecret, body)
		wantCode(t, r, http.StatusAccepted)
		var a webhookAnswer
		r.json(t, &a)
		got := storedDeploys(t, h)
		if len(got) != stored {
			t.Fatalf("state %s: %d deploy changes stored, want %d", state, len(got), stored)
		}
		if want == "" {
			if a.Accepted != 0 || a.Reason == "" {
				t.Fatalf("state %s: answer %+v, want nothing accepted and a reason", state, a)
			}
			return
		}
		if a.Accepted != 1 || got[len(got)-1].Status != want {
			t.Fatalf("state %s: answer %+v, stored %+v, want the deploy %s", state, a, got, want)
		}
	}
	f("pending", schema.DeployStarted, 1)
	f("queued", schema.DeployStarted, 1)
	f("in_progress", schema.DeployStarted, 1)
	f("failure", schema.DeployFailed, 2)
	f("error", schema.DeployFailed, 2)
	f("inactive", "", 2)
}

// A delivery id is used once: sent again, even with another signed body,
// it is answered 202 with the reason and nothing is published. A delivery
// that was refused is not remembered, and GitLab's Idempotency-Key counts
// across its retries.
func TestWebhookDeliveryIDsAreUsedOnce(t *testing.T) {
	s := githubSetup("", nil)
	s.cfg.Webhooks.GitLabToken = testGitLabToken
	s.deliveryLog = true
	h := start(t, s)
	created := githubPayload(t, "deployment/payload.json")
	succeeded := githubPayload(t, "deployment_status/payload.json")

	first := answerOf(t, postGitHub(h, "deployment", "d-1", testGitHubSecret, created))
	if first.Accepted != 1 {
		t.Fatalf("first delivery answered %+v, want 1 accepted", first)
	}
	for _, body := range [][]byte{created, succeeded} {
		again := answerOf(t, postGitHub(h, "deployment", "d-1", testGitHubSecret, body))
		if again.Accepted != 0 || !strings.Contains(again.Reason, "received before") {
			t.Fatalf("delivery d-1 sent again answered %+v, want 0 accepted and why", again)
		}
	}
	if n := h.count(schema.ChangesStream); n != 1 {
		t.Fatalf("%d messages after one delivery and two replays of its id, want 1", n)
	}
	// Refused for its signature, then sent right: processed.
	wantCode(t, postGitHub(h, "deployment_status", "d-2", "not the secret", succeeded), http.StatusUnauthorized)
	if a := answerOf(t, postGitHub(h, "deployment_status", "d-2", testGitHubSecret, succeeded)); a.Accepted != 1 {
		t.Fatalf("d-2 after a refused attempt answered %+v, want 1 accepted", a)
	}

	gitlab := func(key string, body []byte) webhookAnswer {
		return answerOf(t, h.postJSON("/webhooks/gitlab", body, "X-Gitlab-Event", "Deployment Hook",
			"X-Gitlab-Event-UUID", key+"-uuid", "Idempotency-Key", key, "X-Gitlab-Token", testGitLabToken))
	}
	running := gitlabPayload(t, "deployment-running.json")
	if a := gitlab("k-1", running); a.Accepted != 1 {
		t.Fatalf("GitLab delivery answered %+v, want 1 accepted", a)
	}
	if a := gitlab("k-1", gitlabPayload(t, "deployment-success.json")); a.Accepted != 0 {
		t.Fatalf("GitLab retry with the same Idempotency-Key answered %+v, want 0 accepted", a)
	}
	if n := h.count(schema.ChangesStream); n != 3 {
		t.Fatalf("%d messages, want 3 (GitHub's two, GitLab's one)", n)
	}
	r := h.get("/metrics")
	wantCode(t, r, http.StatusOK)
	for _, want := range []string{
		`deploywatch_webhook_repeated_deliveries_total{sender="github"} 2`,
		`deploywatch_webhook_repeated_deliveries_total{sender="gitlab"} 1`,
	} {
		if !strings.Contains(string(r.body), want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// The fixtures are the shared senders' payloads: every one of
// ../shared/testdata/github-webhooks (beside the checkout, as in CI) is kept
// here unchanged, and every one is answered 202 (mapped, or with why not)
// with nothing refused.
func TestGitHubWebhookSharedFixtures(t *testing.T) {
	shared := filepath.Join("..", "..", "shared", "testdata", "github-webhooks")
	if _, err := os.Stat(shared); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI runs with ../shared beside the checkout: %v", err)
		}
		shared = filepath.Join("testdata", "github-webhooks") // a checkout of its own: the copy
	}
	h := start(t, githubSetup("*", nil))
	n := 0
	err := filepath.WalkDir(shared, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return err
		}
		rel, _ := filepath.Rel(shared, path)
		body, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if kept := githubPayload(t, rel); !bytes.Equal(kept, body) {
			t.Errorf("testdata/github-webhooks/%s differs from %s: copy it again", rel, path)
		}
		event := filepath.Dir(rel)
		r := postGitHub(h, event, "fixture-"+rel, testGitHubSecret, body)
		if r.code != http.StatusAccepted {
			t.Errorf("%s: %d %s, want 202", rel, r.code, r.body)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 9 {
		t.Fatalf("posted %d payloads from %s, want the 9 or more there are", n, shared)
	}
}
