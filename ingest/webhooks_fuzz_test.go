package ingest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deploywatch/deploywatch/schema"
)

// reencodes checks that a mapped event that validates is published as one
// the sink decodes to the same event under the same id.
func reencodes(t *testing.T, ev webhookEvent) {
	t.Helper()
	if ev.Validate() != nil {
		return
	}
	msgs, err := schema.EncodeMessages(ev, 1000, 0)
	if err != nil {
		t.Fatalf("cannot encode a valid %s event: %v", ev.EventType(), err)
	}
	again, err := schema.DecodeEvent(msgs[0].Data, "")
	if err != nil {
		t.Fatalf("a valid %s event is published as one the sink refuses: %v\n%s", ev.EventType(), err, msgs[0].Data)
	}
	if again.EventID() != ev.EventID() || msgs[0].ID != ev.EventID() {
		t.Fatalf("event %s decodes as %s", ev.EventID(), again.EventID())
	}
}

// fuzzSeeds adds every file under testdata/dir to f, with args before it.
func fuzzSeeds(f *testing.F, dir string, add func(name string, body []byte)) {
	f.Helper()
	err := filepath.WalkDir(filepath.Join("testdata", dir), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".json" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		add(path, b)
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
}

// mappedOK checks what a webhook mapping returned: one deploy with an id, or
// an error.
func mappedOK(t *testing.T, n int, ids []string, err error) {
	t.Helper()
	if err == nil && (n != 1 || ids[0] == "") {
		t.Fatalf("mapped to %d deploys %q without an error, want one with an id", n, ids)
	}
	if err != nil && (n != 0 || strings.TrimSpace(err.Error()) == "") {
		t.Fatalf("mapped to %d events with the error %q, want none and a reason the sender is told", n, err)
	}
}

// sameMapping fails unless mapping the delivery again gives the same ids
// and the same answer: a re-delivery is deduplicated only by equal ids.
func sameMapping(t *testing.T, ids []string, err error, again []webhookEvent, errAgain error) {
	t.Helper()
	if (err == nil) != (errAgain == nil) || (err != nil && err.Error() != errAgain.Error()) {
		t.Fatalf("mapped the same delivery with %v, then %v", err, errAgain)
	}
	if len(again) != len(ids) {
		t.Fatalf("mapped the same delivery to %d, then %d events", len(ids), len(again))
	}
	for i, ev := range again {
		if id := eventID(ev); id != ids[i] {
			t.Fatalf("mapped the same delivery to id %q, then %q", ids[i], id)
		}
	}
}

func FuzzGitHubWebhook(f *testing.F) {
	fuzzSeeds(f, "github-webhooks", func(path string, body []byte) {
		f.Add(filepath.Base(filepath.Dir(path)), body)
	})
	cfg := WebhookConfig{GitHubSecret: "s", GitHubDeployWorkflows: "*", ServiceMap: map[string]string{"Codertocat/Hello-World": "hello"}}
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		deploys, err := githubEvents(event, body, cfg)
		ids := make([]string, len(deploys))
		for i, d := range deploys {
			ids[i] = eventID(d)
			reencodes(t, d) // invalid is answered 400; valid must be what the sink takes
		}
		mappedOK(t, len(deploys), ids, err)
		again, errAgain := githubEvents(event, body, cfg)
		sameMapping(t, ids, err, again, errAgain)
	})
}

func FuzzGitLabWebhook(f *testing.F) {
	fuzzSeeds(f, "gitlab-webhooks", func(_ string, body []byte) { f.Add(body) })
	cfg := WebhookConfig{GitLabToken: "s"}
	f.Fuzz(func(t *testing.T, body []byte) {
		deploys, err := gitlabEvents(body, cfg)
		ids := make([]string, len(deploys))
		for i, d := range deploys {
			ids[i] = eventID(d)
			reencodes(t, d)
		}
		mappedOK(t, len(deploys), ids, err)
		again, errAgain := gitlabEvents(body, cfg)
		sameMapping(t, ids, err, again, errAgain)
	})
}
