package ingest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

// storedPushes decodes the push events on the changes stream as the sink
// does, checking each one's subject and Nats-Msg-Id.
func storedPushes(t *testing.T, h *harness) []schema.Push {
	t.Helper()
	var out []schema.Push
	for _, m := range h.stored(schema.ChangesStream) {
		ev, err := schema.DecodeEvent(m.Data, "")
		if err != nil {
			t.Fatalf("the stored message %s does not decode as the sink decodes it: %v", m.Data, err)
		}
		p, ok := ev.(*schema.Push)
		if !ok {
			t.Fatalf("stored a %T, want pushes only", ev)
		}
		if got := m.Header.Get("Nats-Msg-Id"); got != p.ID {
			t.Errorf("Nats-Msg-Id %q, want the push id %q", got, p.ID)
		}
		if want := "deploywatch.changes.push." + schema.SubjectToken(p.Service); m.Subject != want {
			t.Errorf("subject %q, want %q", m.Subject, want)
		}
		out = append(out, *p)
	}
	return out
}

func samePush(a, b schema.Push) bool {
	return a.ID == b.ID && a.Type == b.Type && a.Service == b.Service && a.Repo == b.Repo && a.Ref == b.Ref &&
		a.Before == b.Before && a.HeadSHA == b.HeadSHA && a.PushedAt.Time.Equal(b.PushedAt.Time) &&
		slices.EqualFunc(a.Commits, b.Commits, func(x, y schema.Commit) bool {
			return x.SHA == y.SHA && x.Time.Time.Equal(y.Time.Time) && x.Author == y.Author && x.Message == y.Message
		})
}

// editJSON returns body with fn applied to it as a generic JSON object.
func editJSON(t *testing.T, body []byte, fn func(doc map[string]any)) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	fn(doc)
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// answerOf checks that r is 202 and returns its answer.
func answerOf(t *testing.T, r response) webhookAnswer {
	t.Helper()
	wantCode(t, r, http.StatusAccepted)
	var a webhookAnswer
	r.json(t, &a)
	return a
}

const (
	helloHead = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
	helloPush = "gh-push-186853002-" + helloHead
)

// TestGitHubPushEveryFixture posts each of GitHub's example push payloads:
// a tag deletion (202 with a reason) and a new branch with its commit.
func TestGitHubPushEveryFixture(t *testing.T) {
	f := func(services map[string]string, file string, want *schema.Push, reason string) {
		t.Helper()
		h := start(t, githubSetup("", services))
		a := answerOf(t, postGitHub(h, "push", "6e1a3fd0-7ac2-11e9-8f9e-2a86e4085a59", testGitHubSecret, githubPayload(t, filepath.Join("push", file))))
		stored := storedPushes(t, h)
		if want == nil {
			if a.Accepted != 0 || a.Reason != reason || len(stored) != 0 {
				t.Fatalf("%s: answer %+v and stored %+v, want nothing stored and reason %q", file, a, stored, reason)
			}
			return
		}
		if a.Accepted != 1 || !slices.Equal(a.IDs, []string{want.ID}) || len(stored) != 1 {
			t.Fatalf("%s: answer %+v and stored %d pushes, want 1 with id %s", file, a, len(stored), want.ID)
		}
		if !samePush(stored[0], *want) {
			t.Fatalf("%s: stored\n%+v\nwant\n%+v", file, stored[0], *want)
		}
	}
	f(nil, "payload.json", nil, "tag pushes are not used: lead time counts the commits pushed to branches")
	want := schema.Push{ID: helloPush, Type: schema.TypePush, Service: "Hello-World", Repo: "Codertocat/Hello-World",
		Ref: "refs/heads/master", HeadSHA: helloHead,
		PushedAt: at(t, "2019-05-15T15:20:57Z"), // repository.pushed_at, a Unix time in push payloads
		Commits:  []schema.Commit{{SHA: helloHead, Time: at(t, "2019-05-15T15:19:25Z"), Author: "Codertocat", Message: "Initial commit"}}}
	f(nil, "with-new-branch.payload.json", &want, "")
	// The service mapping applies as it does to deploys.
	want.Service = "hello"
	f(map[string]string{"Codertocat/Hello-World": "hello"}, "with-new-branch.payload.json", &want, "")
}

// TestGitHubPushShapes covers the pushes GitHub sends besides its examples:
// several commits, deleted branches, pushes without new commits, other refs.
func TestGitHubPushShapes(t *testing.T) {
	h := start(t, githubSetup("", nil))
	fixture := githubPayload(t, filepath.Join("push", "with-new-branch.payload.json"))
	post := func(delivery string, body []byte) webhookAnswer {
		t.Helper()
		return answerOf(t, postGitHub(h, "push", delivery, testGitHubSecret, body))
	}
	commit := func(sha, ts, author, msg string) map[string]any {
		return map[string]any{"id": sha, "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433", "distinct": true, "message": msg,
			"timestamp": ts, "url": "https://github.com/Codertocat/Hello-World/commit/" + sha,
			"author":    map[string]any{"name": author, "email": author + "@example.com", "username": author},
			"committer": map[string]any{"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"},
			"added":     []any{}, "removed": []any{}, "modified": []any{"README.md"}}
	}
	const a, b, c = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678", "b2c3d4e5f60718293a4b5c6d7e8f901234567890", "c3d4e5f60718293a4b5c6d7e8f90123456789012"
	three := editJSON(t, fixture, func(doc map[string]any) {
		doc["ref"], doc["before"], doc["after"], doc["created"] = "refs/heads/main", helloHead, c, false
		// A merge: the commits were made earlier, on another branch and in
		// another time zone; the message's body is left out.
		doc["commits"] = []any{
			commit(a, "2019-05-14T09:00:00+02:00", "Octocat", "Fix the README\n\nIt said Hello Wrold."),
			commit(b, "2019-05-14T10:30:00-07:00", "Monalisa", "Add a licence"),
			commit(c, "2019-05-15T15:40:00Z", "Codertocat", "Merge pull request #2 from Codertocat/fixes"),
		}
		doc["head_commit"] = commit(c, "2019-05-15T15:40:00Z", "Codertocat", "Merge pull request #2 from Codertocat/fixes")
		doc["repository"].(map[string]any)["pushed_at"] = 1557935001
	})
	got := post("d-1", three)
	if got.Accepted != 1 || !slices.Equal(got.IDs, []string{"gh-push-186853002-" + c}) {
		t.Fatalf("answer %+v", got)
	}
	// Redelivered by hand from GitHub's settings: another delivery id, the
	// same push, stored once.
	if again := post("d-2", three); !slices.Equal(again.IDs, got.IDs) {
		t.Fatalf("redelivery answered %+v, want %+v", again, got)
	}
	want := schema.Push{ID: "gh-push-186853002-" + c, Type: schema.TypePush, Service: "Hello-World", Repo: "Codertocat/Hello-World",
		Ref: "refs/heads/main", Before: helloHead, HeadSHA: c, PushedAt: at(t, "2019-05-15T15:43:21Z"),
		Commits: []schema.Commit{
			{SHA: a, Time: at(t, "2019-05-14T07:00:00Z"), Author: "Octocat", Message: "Fix the README"},
			{SHA: b, Time: at(t, "2019-05-14T17:30:00Z"), Author: "Monalisa", Message: "Add a licence"},
			{SHA: c, Time: at(t, "2019-05-15T15:40:00Z"), Author: "Codertocat", Message: "Merge pull request #2 from Codertocat/fixes"},
		}}
	if stored := storedPushes(t, h); len(stored) != 1 || !samePush(stored[0], want) {
		t.Fatalf("stored\n%+v\nwant\n%+v", stored, want)
	}

	// Valid pushes that carry nothing for lead time: 202 with the reason.
	for _, tc := range []struct {
		name   string
		edit   func(doc map[string]any)
		reason string
	}{
		{"branch deleted", func(doc map[string]any) {
			doc["ref"], doc["before"], doc["after"], doc["deleted"], doc["created"] = "refs/heads/fixes", c, "0000000000000000000000000000000000000000", true, false
			doc["commits"], doc["head_commit"] = []any{}, nil
		}, `the push deleted branch "fixes": it carries no commits`},
		{"branch created at an existing commit", func(doc map[string]any) {
			doc["ref"], doc["commits"] = "refs/heads/release-1.2", []any{}
		}, "the push carries no new commits (a branch created at an existing commit, or moved back): nothing for lead time"},
		{"tag created", func(doc map[string]any) { doc["ref"] = "refs/tags/v1.2.0" }, "tag pushes are not used: lead time counts the commits pushed to branches"},
		{"notes", func(doc map[string]any) { doc["ref"] = "refs/notes/commits" }, `push to "refs/notes/commits" is not used: only pushes to branches (refs/heads/) are`},
	} {
		if got := post("d-"+tc.name, editJSON(t, fixture, tc.edit)); got.Accepted != 0 || got.Reason != tc.reason {
			t.Errorf("%s: answer %+v, want reason %q", tc.name, got, tc.reason)
		}
	}

	// A push without pushed_at (as in payloads of older GitHub Enterprise
	// servers) takes its head commit's time.
	noTime := editJSON(t, three, func(doc map[string]any) {
		doc["after"] = b
		doc["commits"] = doc["commits"].([]any)[:2]
		doc["head_commit"] = commit(b, "2019-05-14T10:30:00-07:00", "Monalisa", "Add a licence")
		delete(doc["repository"].(map[string]any), "pushed_at")
	})
	if got := post("d-3", noTime); got.Accepted != 1 {
		t.Fatalf("push without pushed_at: answer %+v", got)
	}
	stored := storedPushes(t, h)
	if len(stored) != 2 || !stored[1].PushedAt.Time.Equal(at(t, "2019-05-14T17:30:00Z").Time) {
		t.Fatalf("stored %+v, want a second push at its head commit's time", stored)
	}

	// A push whose payload is broken is refused, and nothing stored.
	bad := editJSON(t, three, func(doc map[string]any) {
		doc["after"] = "d4e5f60718293a4b5c6d7e8f9012345678901234"
		doc["commits"].([]any)[0].(map[string]any)["timestamp"] = "yesterday"
	})
	wantCode(t, postGitHub(h, "push", "d-4", testGitHubSecret, bad), http.StatusBadRequest)
	if n := h.count(schema.ChangesStream); n != 2 {
		t.Fatalf("stored %d messages, want the 2 pushes", n)
	}

	// A commit dated before 2000 or hours ahead (a committer's clock) is
	// left out; the push keeps its other commits. None usable: 202 and why.
	skewed := editJSON(t, three, func(doc map[string]any) {
		doc["after"] = "e5f60718293a4b5c6d7e8f9012345678901234ab"
		cs := doc["commits"].([]any)
		cs[0].(map[string]any)["timestamp"] = "1970-01-01T00:00:00Z"
		cs[1].(map[string]any)["timestamp"] = time.Now().Add(5 * time.Hour).UTC().Format(time.RFC3339)
	})
	if got := post("d-5", skewed); got.Accepted != 1 {
		t.Fatalf("push with two unusable commit times: answer %+v, want it accepted", got)
	}
	if stored := storedPushes(t, h); len(stored) != 3 || len(stored[2].Commits) != 1 || stored[2].Commits[0].SHA != c {
		t.Fatalf("stored %+v, want a third push with only commit %s", stored, c)
	}
	none := editJSON(t, skewed, func(doc map[string]any) {
		doc["after"] = "f60718293a4b5c6d7e8f9012345678901234abcd"
		doc["commits"] = doc["commits"].([]any)[:2]
	})
	if got := post("d-6", none); got.Accepted != 0 || !strings.Contains(got.Reason, "no commit of the push has a usable time") {
		t.Fatalf("push without a usable commit time: answer %+v, want 0 accepted and why", got)
	}
}

// TestGitHubPushKeepsNewestCommits checks a push of more commits than one
// event takes (GitHub sends up to 2048): the newest are kept, messages cut.
func TestGitHubPushKeepsNewestCommits(t *testing.T) {
	h := start(t, githubSetup("", nil))
	long := make([]byte, 5000)
	for i := range long {
		long[i] = 'x'
	}
	var commits []any
	var head string
	for i := range 1500 {
		head = fmt.Sprintf("%040x", i+1)
		commits = append(commits, map[string]any{"id": head, "timestamp": "2019-05-15T15:19:25Z", "message": string(long), "author": map[string]any{"name": "Codertocat"}})
	}
	body := editJSON(t, githubPayload(t, filepath.Join("push", "with-new-branch.payload.json")), func(doc map[string]any) {
		doc["after"], doc["commits"] = head, commits
	})
	if a := answerOf(t, postGitHub(h, "push", "d-big", testGitHubSecret, body)); a.Accepted != 1 {
		t.Fatalf("answer %+v", a)
	}
	p := storedPushes(t, h)[0]
	if len(p.Commits) != 1000 || p.Commits[999].SHA != head || p.Commits[0].SHA != fmt.Sprintf("%040x", 501) || len(p.Commits[0].Message) != 256 {
		t.Fatalf("kept %d commits, last %s, first %s, message of %d bytes", len(p.Commits), p.Commits[999].SHA, p.Commits[0].SHA, len(p.Commits[0].Message))
	}
}

func TestGitLabPush(t *testing.T) {
	h := start(t, gitlabSetup(nil))
	const after = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
	fixture := gitlabPayload(t, "push.json")
	a := answerOf(t, postGitLab(h, "Push Hook", testGitLabToken, fixture))
	want := schema.Push{ID: "gl-push-15-" + after, Type: schema.TypePush, Service: "diaspora", Repo: "mike/diaspora",
		Ref: "refs/heads/master", Before: "95790bf891e76fee5e1747ab589903a6a1f80f22", HeadSHA: after,
		// GitLab does not say when the push happened: the newest commit's time.
		PushedAt: at(t, "2012-01-03T21:36:29Z"),
		Commits:  []schema.Commit{{SHA: after, Time: at(t, "2012-01-03T21:36:29Z"), Author: "GitLab dev user", Message: "fixed readme"}}}
	if a.Accepted != 1 || !slices.Equal(a.IDs, []string{want.ID}) {
		t.Fatalf("answer %+v, want the push %s", a, want.ID)
	}
	if stored := storedPushes(t, h); len(stored) != 1 || !samePush(stored[0], want) {
		t.Fatalf("stored\n%+v\nwant\n%+v", stored, want)
	}

	// The service mapping applies as it does to deploys.
	mapped := start(t, gitlabSetup(map[string]string{"mike/diaspora": "diaspora-web"}))
	answerOf(t, postGitLab(mapped, "Push Hook", testGitLabToken, fixture))
	if stored := storedPushes(t, mapped); len(stored) != 1 || stored[0].Service != "diaspora-web" {
		t.Fatalf("stored %+v, want the push of diaspora-web", stored)
	}

	for _, c := range []struct {
		name   string
		edit   func(doc map[string]any)
		reason string
	}{
		{"branch deleted", func(doc map[string]any) {
			doc["after"], doc["checkout_sha"], doc["commits"], doc["total_commits_count"] = "0000000000000000000000000000000000000000", nil, []any{}, 0
		}, `the push deleted branch "master": it carries no commits`},
		{"tag pushed", func(doc map[string]any) {
			doc["object_kind"], doc["event_name"], doc["ref"] = "tag_push", "tag_push", "refs/tags/v1.0.0"
		}, "tag pushes are not used: lead time counts the commits pushed to branches; enable push events for branches instead"},
	} {
		if got := answerOf(t, postGitLab(h, "Push Hook", testGitLabToken, editJSON(t, fixture, c.edit))); got.Accepted != 0 || got.Reason != c.reason {
			t.Errorf("%s: answer %+v, want reason %q", c.name, got, c.reason)
		}
	}
	if n := h.count(schema.ChangesStream); n != 1 {
		t.Fatalf("stored %d messages, want the one push", n)
	}
}

// TestPostPushEvent sends a push as a CI system without webhooks does.
func TestPostPushEvent(t *testing.T) {
	h := start(t, setup{})
	body := []byte(`{"type":"push","service":"checkout","repo":"acme/checkout","ref":"refs/heads/main","head_sha":"9f2c1e4b","pushed_at":"2026-11-20T13:58:02Z",
		"commits":[{"sha":"77ac21f0","time":"2026-11-19T17:12:44Z","author":"li.wei"},{"sha":"9f2c1e4b","time":"2026-11-20T11:47:15+01:00"}]}`)
	r := h.postJSON("/api/v1/events", body)
	wantCode(t, r, http.StatusAccepted)
	var a struct {
		Accepted int      `json:"accepted"`
		IDs      []string `json:"ids"`
	}
	r.json(t, &a)
	stored := storedPushes(t, h)
	if a.Accepted != 1 || len(a.IDs) != 1 || len(stored) != 1 || stored[0].ID != a.IDs[0] || len(stored[0].Commits) != 2 {
		t.Fatalf("answer %+v, stored %+v", a, stored)
	}
	// A push without commit times is refused: they are what it is for.
	r = h.postJSON("/api/v1/events", []byte(`{"type":"push","service":"checkout","head_sha":"9f2c1e4b","pushed_at":"2026-11-20T13:58:02Z","commits":[{"sha":"9f2c1e4b"}]}`))
	wantCode(t, r, http.StatusBadRequest)
}
