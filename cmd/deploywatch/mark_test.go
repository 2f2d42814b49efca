package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
)

// TestMarkDeploy records a deploy's start and success from the command line
// against a real pipeline, reads it back, and shows that a flag wins over the
// environment, which wins over the --config file.
func TestMarkDeploy(t *testing.T) {
	p := startServe(t, testenv.ClickHouse(t), nil)
	mark := func(env map[string]string, args ...string) (string, error) {
		t.Helper()
		for k, v := range env {
			t.Setenv(k, v)
		}
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"mark", "deploy"}, args...), &out, &errOut)
		return strings.TrimSpace(out.String()), err
	}

	id, err := mark(nil, "--server", p.api, "--service", "search", "--env", "production", "--version", "v7", "--status", "started")
	if err != nil || id == "" {
		t.Fatalf("mark deploy started: id %q, err %v", id, err)
	}

	config := filepath.Join(t.TempDir(), "mark.yaml")
	if err := os.WriteFile(config, []byte("server: http://127.0.0.1:1\nservice: from-file\nenv: production\nversion: v7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// --server from the flag beats the file's; --service from the environment beats the file's.
	again, err := mark(map[string]string{"DEPLOYWATCH_SERVICE": "search"},
		"--config", config, "--server", p.api, "--id", id, "--status", "succeeded")
	if err != nil || again != id {
		t.Fatalf("mark deploy succeeded: id %q (want %q), err %v", again, id, err)
	}
	var deploy map[string]any
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		code := p.getJSON(t, "/api/v1/deploys/"+id, &deploy)
		return code == http.StatusOK && deploy["status"] == "succeeded", fmt.Sprintf("waiting for the deploy: %d %v", code, deploy)
	})
	if deploy["service"] != "search" || deploy["started_at"] == nil || deploy["finished_at"] == nil {
		t.Errorf("deploy = %v, want service search with both times", deploy)
	}

	// Refused: a non-zero exit with the server's words.
	_, err = mark(nil, "--server", p.api, "--service", "search", "--env", "production", "--version", "v8", "--status", "deployed")
	if err == nil || !strings.Contains(err.Error(), "status: must be one of started, succeeded, failed, rolled_back") {
		t.Errorf("invalid status: err = %v, want the server's field problem", err)
	}
}

// TestHelp: every command answers --help.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"serve", "--help"}, {"migrate", "--help"}, {"mark", "--help"}, {"mark", "deploy", "--help"}, {"deploys", "--help"}, {"deploys", "list", "--help"}, {"deploys", "show", "--help"}, {"alerts", "--help"}, {"alerts", "list", "--help"}, {"silence", "--help"}, {"silence", "list", "--help"}, {"ack", "--help"}, {"rules", "--help"}, {"rules", "check", "--help"}, {"rules", "defaults", "--help"}, {"rollback-agent", "--help"}, {"version", "--help"}} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, &out, &errOut)
		if err == nil || !strings.Contains(errOut.String(), "USAGE") {
			t.Errorf("deploywatch %s: err %v, usage %q", strings.Join(args, " "), err, errOut.String())
		}
	}
}
