package ingest

import (
	"os"
	"path/filepath"
	"testing"
)

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
			ids[i] = d.ID
			_ = d.Validate() // invalid is answered 400; it must not panic
		}
		mappedOK(t, len(deploys), ids, err)
	})
}

func FuzzGitLabWebhook(f *testing.F) {
	fuzzSeeds(f, "gitlab-webhooks", func(_ string, body []byte) { f.Add(body) })
	cfg := WebhookConfig{GitLabToken: "s"}
	f.Fuzz(func(t *testing.T, body []byte) {
		deploys, err := gitlabEvents(body, cfg)
		ids := make([]string, len(deploys))
		for i, d := range deploys {
			ids[i] = d.ID
			_ = d.Validate()
		}
		mappedOK(t, len(deploys), ids, err)
	})
}
