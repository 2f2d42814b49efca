package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/expr-lang/expr"
	"gopkg.in/yaml.v3"
)

// The recipes in deployments/recipes are run here against a real serve, the
// way their senders run them, so that they cannot rot: Argo CD's templates
// rendered with text/template and its triggers evaluated with expr (what Argo
// CD Notifications uses), the Jenkinsfile's and the chat recipes' shell run
// by sh and bash with the deploywatch binary built from this tree, GitHub
// Actions steps with their ${{ }} expressions resolved.

const recipeToken = "recipe-token-6f1d"

func recipePath(name string) string { return filepath.Join("..", "..", "deployments", "recipes", name) }

func readRecipe(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(recipePath(name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// yamlDocs decodes every document of a multi-document YAML file.
func yamlDocs(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if err == io.EOF {
			return docs
		}
		if err != nil {
			t.Fatalf("cannot decode YAML: %v", err)
		}
		docs = append(docs, doc)
	}
}

func docOfKind(t *testing.T, docs []map[string]any, kind string) map[string]any {
	t.Helper()
	for _, d := range docs {
		if d["kind"] == kind {
			return d
		}
	}
	t.Fatalf("no %s in the recipe", kind)
	return nil
}

// recipeServer is a serve with an API token, and the deploywatch binary.
type recipeServer struct {
	*pipeline
	bin string // directory holding deploywatch (and fakes), first on PATH
}

func startRecipeServer(t *testing.T) *recipeServer {
	t.Helper()
	p := startServe(t, testenv.ClickHouse(t), func(c *serveConfig) { c.apiTokens = recipeToken })
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "deploywatch"), ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("cannot build deploywatch: %v\n%s", err, out)
	}
	return &recipeServer{pipeline: p, bin: bin}
}

// run runs script with shell (sh or bash and its options) and env on top of
// the test's environment; it returns stdout, failing the test if the script
// failed unless wantFail.
func (s *recipeServer) run(t *testing.T, shell []string, script string, env map[string]string, wantFail bool) string {
	t.Helper()
	cmd := exec.Command(shell[0], append(shell[1:], "-c", script)...)
	cmd.Env = append(os.Environ(), "PATH="+s.bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"DEPLOYWATCH_SERVER="+s.api, "DEPLOYWATCH_TOKEN="+recipeToken)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if (err != nil) != wantFail {
		t.Fatalf("script exited with %v (want failure: %v)\n%s\nstdout:\n%s\nstderr:\n%s", err, wantFail, script, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// do sends an authenticated request and returns the status and body.
func (s *recipeServer) do(t *testing.T, method, path string, body []byte, headers map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.api+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+recipeToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// waitDeploy waits until deploy id is in the read model with status, and
// returns it.
func (s *recipeServer) waitDeploy(t *testing.T, id, status string) map[string]any {
	t.Helper()
	var d map[string]any
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		code, body := s.do(t, http.MethodGet, "/api/v1/deploys/"+id, nil, nil)
		d = nil
		_ = json.Unmarshal(body, &d)
		return code == http.StatusOK && d["status"] == status, fmt.Sprintf("GET deploy %s: %d %s", id, code, body)
	})
	return d
}

func wantFields(t *testing.T, what string, got map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if fmt.Sprint(got[k]) != fmt.Sprint(v) {
			t.Errorf("%s: %s = %v, want %v", what, k, got[k], v)
		}
	}
}

func TestRecipes(t *testing.T) {
	s := startRecipeServer(t)
	t.Run("argocd", func(t *testing.T) { testArgoCDRecipe(t, s) })
	t.Run("jenkins", func(t *testing.T) { testJenkinsRecipe(t, s) })
	t.Run("chatops", func(t *testing.T) { testChatOpsRecipe(t, s) })
	t.Run("flux", func(t *testing.T) { testFluxRecipe(t, s) })
	t.Run("push from CI", func(t *testing.T) { testPushSnippet(t, s) })
}

// testPushSnippet runs the README's push event snippet (a CI system without
// webhooks sending its commits) in a git repository with two commits.
func testPushSnippet(t *testing.T, s *recipeServer) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var snippet string
	for _, b := range fencedBlocks(string(readme), "sh") {
		if strings.Contains(b, `"type": "push"`) {
			snippet = b
		}
	}
	if snippet == "" {
		t.Fatal("the README has no push event snippet")
	}
	repo := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Li Wei", "GIT_AUTHOR_EMAIL=li.wei@example.com",
			"GIT_COMMITTER_NAME=Li Wei", "GIT_COMMITTER_EMAIL=li.wei@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "-b", "main")
	for i, date := range []string{"2026-11-19T17:12:44+01:00", "2026-11-20T09:30:00Z", "2026-11-20T11:47:15+01:00"} {
		cmd := exec.Command("git", "-C", repo, "commit", "-q", "--allow-empty", "-m", fmt.Sprintf("change %d \"quoted\"", i))
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Li Wei", "GIT_AUTHOR_EMAIL=li.wei@example.com", "GIT_COMMITTER_NAME=Li Wei",
			"GIT_COMMITTER_EMAIL=li.wei@example.com", "GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git commit: %v\n%s", err, out)
		}
	}
	deployed := git("rev-parse", "HEAD~2")
	head := git("rev-parse", "HEAD")
	out := s.run(t, []string{"sh", "-e"}, "cd "+repo+"\n"+snippet, map[string]string{"LAST_DEPLOYED_SHA": deployed}, false)
	if !strings.Contains(out, `"accepted":1`) {
		t.Fatalf("the snippet printed %q", out)
	}
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		n := s.count(t, "SELECT count() FROM commits FINAL WHERE service = 'checkout' AND head_sha = ?", head)
		return n == 2, fmt.Sprintf("%d of the 2 commits since the last deploy", n)
	})
	if n := s.count(t, "SELECT count() FROM commits FINAL WHERE head_sha = ? AND sha = ? AND commit_time = toDateTime('2026-11-20 10:47:15', 'UTC') AND author = 'Li Wei'", head, head); n != 1 {
		t.Errorf("the head commit is not stored with its time and author")
	}
}

// argoApp is an Application as Argo CD Notifications sees it, in a phase of
// a sync operation.
func argoApp(t *testing.T, phase, health, startedAt, finishedAt, initiatedBy string) map[string]any {
	t.Helper()
	const rev = "9f2c1e4b7a8d6c5b4a39281706f5e4d3c2b1a098"
	finished := ""
	if finishedAt != "" {
		finished = "\n    finishedAt: \"" + finishedAt + "\"\n    syncResult:\n      revision: " + rev + "\n      source: {repoURL: \"https://github.com/acme/checkout-deploy.git\", path: overlays/production, targetRevision: main}"
	}
	src := `
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: checkout
  namespace: argocd
  uid: 5b0e3f62-6c1d-4b8e-9a3e-1f2d3c4b5a69
  labels: {team: payments}
spec:
  project: shop
  source: {repoURL: "https://github.com/acme/checkout-deploy.git", path: overlays/production, targetRevision: main}
  destination: {server: "https://kubernetes.default.svc", namespace: production}
status:
  sync: {status: Synced, revision: ` + rev + `}
  health: {status: ` + health + `}
  operationState:
    operation:
      sync: {revision: ` + rev + `}
      initiatedBy: ` + initiatedBy + `
    phase: ` + phase + `
    message: "successfully synced (all tasks run)"
    startedAt: "` + startedAt + `"` + finished + "\n"
	var app map[string]any
	if err := yaml.Unmarshal([]byte(src), &app); err != nil {
		t.Fatal(err)
	}
	return app
}

func testArgoCDRecipe(t *testing.T, s *recipeServer) {
	docs := yamlDocs(t, readRecipe(t, "argocd-notifications.yaml"))
	secret := docOfKind(t, docs, "Secret")["stringData"].(map[string]any)
	if _, ok := secret["deploywatch-token"]; !ok {
		t.Fatal("argocd-notifications-secret has no deploywatch-token")
	}
	data := docOfKind(t, docs, "ConfigMap")["data"].(map[string]any)
	var service struct {
		URL     string `yaml:"url"`
		Headers []struct{ Name, Value string }
	}
	if err := yaml.Unmarshal([]byte(data["service.webhook.deploywatch"].(string)), &service); err != nil {
		t.Fatal(err)
	}
	headers := map[string]string{}
	for _, h := range service.Headers {
		// Argo CD replaces $key with the key of argocd-notifications-secret.
		headers[h.Name] = strings.ReplaceAll(h.Value, "$deploywatch-token", recipeToken)
	}
	if headers["Authorization"] != "Bearer "+recipeToken {
		t.Fatalf("the webhook's Authorization header is %q", headers["Authorization"])
	}
	var argoContext map[string]any
	if err := yaml.Unmarshal([]byte(data["context"].(string)), &argoContext); err != nil {
		t.Fatal(err)
	}
	type trigger struct {
		When    string   `yaml:"when"`
		OncePer string   `yaml:"oncePer"`
		Send    []string `yaml:"send"`
	}
	triggers := map[string][]trigger{}
	for k, v := range data {
		if name, ok := strings.CutPrefix(k, "trigger."); ok {
			var conds []trigger
			if err := yaml.Unmarshal([]byte(v.(string)), &conds); err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			triggers[name] = conds
		}
	}
	// The Application subscribes to every trigger, on the deploywatch service.
	annotations := docOfKind(t, docs, "Application")["metadata"].(map[string]any)["annotations"].(map[string]any)
	subscribed := 0
	for k := range annotations {
		rest, ok := strings.CutPrefix(k, "notifications.argoproj.io/subscribe.")
		if !ok {
			continue
		}
		trig, svc, _ := strings.Cut(rest, ".")
		if _, ok := triggers[trig]; !ok || data["service.webhook."+svc] == nil {
			t.Errorf("annotation %s names an unknown trigger or service", k)
		}
		subscribed++
	}
	if subscribed != len(triggers) {
		t.Errorf("the Application subscribes to %d triggers of %d", subscribed, len(triggers))
	}

	// notify evaluates every trigger on app as Argo CD does, sends the
	// templates of the ones that fire and returns their names and the ids
	// deploywatch answered.
	notify := func(app map[string]any) (fired []string, ids []string) {
		t.Helper()
		env := map[string]any{"app": app}
		for name, conds := range triggers {
			for _, c := range conds {
				ok, err := expr.Eval(c.When, env)
				if err != nil {
					t.Fatalf("trigger %s: when %q: %v", name, c.When, err)
				}
				if ok != true {
					continue
				}
				if once, err := expr.Eval(c.OncePer, env); err != nil || fmt.Sprint(once) == "" {
					t.Fatalf("trigger %s: oncePer %q = %v, %v", name, c.OncePer, once, err)
				}
				fired = append(fired, name)
				for _, tmplName := range c.Send {
					var tmpl struct {
						Webhook map[string]struct{ Method, Path, Body string }
					}
					raw, _ := data["template."+tmplName].(string)
					if err := yaml.Unmarshal([]byte(raw), &tmpl); err != nil || tmpl.Webhook["deploywatch"].Body == "" {
						t.Fatalf("template %s: %v", tmplName, err)
					}
					wh := tmpl.Webhook["deploywatch"]
					var body bytes.Buffer
					tt, err := template.New(tmplName).Parse(wh.Body)
					if err != nil {
						t.Fatalf("template %s: %v", tmplName, err)
					}
					if err := tt.Execute(&body, map[string]any{"app": app, "context": argoContext, "serviceType": "webhook"}); err != nil {
						t.Fatalf("template %s: %v", tmplName, err)
					}
					if bytes.Contains(body.Bytes(), []byte("<no value>")) {
						t.Fatalf("template %s refers to a field the app does not have:\n%s", tmplName, body.String())
					}
					code, answer := s.do(t, wh.Method, wh.Path, body.Bytes(), headers)
					if code != http.StatusAccepted {
						t.Fatalf("template %s: %s %s answered %d %s\n%s", tmplName, wh.Method, wh.Path, code, answer, body.String())
					}
					var a struct{ IDs []string }
					_ = json.Unmarshal(answer, &a)
					ids = append(ids, a.IDs...)
				}
			}
		}
		return fired, ids
	}
	const start, end = "2026-11-20T14:03:07Z", "2026-11-20T14:04:51Z"
	f := func(app map[string]any, want ...string) []string {
		t.Helper()
		fired, ids := notify(app)
		if strings.Join(fired, ",") != strings.Join(want, ",") {
			t.Fatalf("fired %q, want %q", fired, want)
		}
		return ids
	}
	started := f(argoApp(t, "Running", "Progressing", start, "", "{automated: true}"), "deploywatch-on-sync-running")
	f(argoApp(t, "Succeeded", "Progressing", start, end, "{automated: true}")) // synced, not healthy yet
	succeeded := f(argoApp(t, "Succeeded", "Healthy", start, end, "{automated: true}"), "deploywatch-on-deployed")
	if len(started) != 1 || len(succeeded) != 1 || started[0] != succeeded[0] {
		t.Fatalf("started %q and succeeded %q: want one deploy id", started, succeeded)
	}
	d := s.waitDeploy(t, started[0], "succeeded")
	wantFields(t, "argocd deploy", d, map[string]any{"service": "checkout", "env": "production",
		"version": "9f2c1e4b7a8d6c5b4a39281706f5e4d3c2b1a098", "duration_s": 104})
	failed := f(argoApp(t, "Failed", "Degraded", "2026-11-20T15:10:00Z", "2026-11-20T15:11:30Z", "{username: admin}"), "deploywatch-on-sync-failed")
	d = s.waitDeploy(t, failed[0], "failed")
	wantFields(t, "argocd failed deploy", d, map[string]any{"author": "admin"})
}

// groovyShell returns the script of the sh step (a triple-quoted string) of the Groovy
// function fn, as Groovy hands it to sh: a backslash before a newline joins
// the lines.
func groovyShell(t *testing.T, src, fn string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)def ` + fn + `\(String status\) \{.*?sh '''(.*?)'''`).FindStringSubmatch(src)
	if m == nil {
		t.Fatalf("no sh ''' step in %s", fn)
	}
	script := strings.ReplaceAll(m[1], "\\\n", "")
	if strings.Contains(script, `\`) {
		t.Fatalf("%s: a backslash Groovy would read as an escape:\n%s", fn, script)
	}
	return script
}

func testJenkinsRecipe(t *testing.T, s *recipeServer) {
	src := string(readRecipe(t, "Jenkinsfile"))
	for _, want := range []string{"markDeploy('started')", "success {", "markDeploy('succeeded')", "failure {", "markDeploy('failed')",
		"withCredentials([string(credentialsId: 'deploywatch-token', variable: 'DEPLOYWATCH_TOKEN')])"} {
		if !strings.Contains(src, want) {
			t.Errorf("the Jenkinsfile has no %s", want)
		}
	}
	envBlock := regexp.MustCompile(`(?s)environment \{(.*?)\}`).FindStringSubmatch(src)
	if envBlock == nil {
		t.Fatal("the Jenkinsfile has no environment block")
	}
	env := map[string]string{}
	for _, m := range regexp.MustCompile(`(\w+)\s*=\s*'([^']*)'`).FindAllStringSubmatch(envBlock[1], -1) {
		env[m[1]] = m[2]
	}
	delete(env, "DEPLOYWATCH_SERVER") // the test's server
	// What Jenkins sets for a multibranch build.
	env["JOB_NAME"] = "shop/checkout/main"
	env["GIT_COMMIT"] = "3484a3fb816e0859fd6e1cea078d76385ff50625"
	sh := []string{"sh", "-xe"} // as Jenkins runs sh steps
	for _, c := range []struct{ fn, build, end string }{{"markDeploy", "42", "succeeded"}, {"markDeployWithCurl", "43", "failed"}} {
		script := groovyShell(t, src, c.fn)
		env["BUILD_NUMBER"], env["BUILD_URL"] = c.build, "https://jenkins.example.com/job/shop/job/checkout/job/main/"+c.build+"/"
		for _, status := range []string{"started", c.end} {
			env["DW_STATUS"] = status
			s.run(t, sh, script, env, false)
		}
		d := s.waitDeploy(t, "jenkins-shop-checkout-main-"+c.build, c.end)
		wantFields(t, c.fn, d, map[string]any{"service": "checkout", "env": "production", "version": env["GIT_COMMIT"], "url": env["BUILD_URL"]})
		if d["started_at"] == nil || d["finished_at"] == nil {
			t.Errorf("%s: started_at %v, finished_at %v: want both, one deploy", c.fn, d["started_at"], d["finished_at"])
		}
	}
}

// fencedBlocks returns the bodies of the ```lang blocks of a Markdown text.
func fencedBlocks(md, lang string) []string {
	var out []string
	for _, m := range regexp.MustCompile("(?s)```"+lang+"\n(.*?)```").FindAllStringSubmatch(md, -1) {
		out = append(out, m[1])
	}
	return out
}

// ghExpr resolves the ${{ }} expressions of a GitHub Actions value: property
// paths into ctx and toJSON(path), which is all the recipes use.
func ghExpr(t *testing.T, value string, ctx map[string]any) string {
	t.Helper()
	return regexp.MustCompile(`\$\{\{\s*(.*?)\s*\}\}`).ReplaceAllStringFunc(value, func(m string) string {
		e := strings.TrimSpace(m[3 : len(m)-2])
		toJSON := false
		if inner, ok := strings.CutPrefix(e, "toJSON("); ok {
			e, toJSON = strings.TrimSuffix(inner, ")"), true
		}
		var v any = ctx
		for _, key := range strings.Split(e, ".") {
			obj, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%s: %s is not an object", e, key)
			}
			if v, ok = obj[key]; !ok {
				t.Fatalf("the recipe uses %s, which the test does not know", e)
			}
		}
		if toJSON {
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		return fmt.Sprint(v)
	})
}

// runGitHubStep runs a GitHub Actions step as the runner does: env resolved,
// run by bash -eo pipefail.
func runGitHubStep(t *testing.T, s *recipeServer, step map[string]any, ctx map[string]any) string {
	t.Helper()
	env := map[string]string{}
	for k, v := range step["env"].(map[string]any) {
		env[k] = ghExpr(t, fmt.Sprint(v), ctx)
	}
	if env["DEPLOYWATCH_TOKEN"] != recipeToken {
		t.Fatalf("the step's DEPLOYWATCH_TOKEN is %q, want the secret", env["DEPLOYWATCH_TOKEN"])
	}
	env["DEPLOYWATCH_SERVER"] = s.api
	return s.run(t, []string{"bash", "--noprofile", "--norc", "-eo", "pipefail"}, step["run"].(string), env, false)
}

func testChatOpsRecipe(t *testing.T, s *recipeServer) {
	md := string(readRecipe(t, "chatops.md"))
	blocks := fencedBlocks(md, "sh")
	if len(blocks) != 3 {
		t.Fatalf("chatops.md has %d sh blocks, want 3 (bot, bot with start, curl)", len(blocks))
	}
	sh := []string{"sh", "-e"}
	chat := map[string]string{"CHAT_USER": "ana.souza", "CHAT_CHANNEL": "deploys", "SERVICE": "payments", "DEPLOY_ENV": "production", "VERSION": "v3.1.0", "DEPLOY_OK": "1"}
	id := strings.TrimSpace(s.run(t, sh, blocks[0], chat, false))
	d := s.waitDeploy(t, id, "succeeded")
	wantFields(t, "chat deploy", d, map[string]any{"service": "payments", "author": "ana.souza", "version": "v3.1.0"})
	chat["VERSION"], chat["DEPLOY_OK"] = "v3.1.1", "0"
	id = strings.TrimSpace(s.run(t, sh, blocks[0], chat, false))
	s.waitDeploy(t, id, "failed")

	chat["VERSION"] = "v3.2.0"
	s.run(t, sh, blocks[1], chat, false)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		n := s.count(t, "SELECT count() FROM deploys WHERE service = 'payments' AND version = 'v3.2.0' AND status = 'succeeded' AND started_at IS NOT NULL")
		return n == 1, fmt.Sprintf("%d deploys of v3.2.0 started and succeeded", n)
	})

	out := s.run(t, sh, blocks[2], nil, false)
	var a struct{ IDs []string }
	if err := json.Unmarshal([]byte(out), &a); err != nil || len(a.IDs) != 1 {
		t.Fatalf("curl printed %q", out)
	}
	s.waitDeploy(t, a.IDs[0], "succeeded")

	// The GitHub Actions step.
	yamls := fencedBlocks(md, "yaml")
	var steps []map[string]any
	if len(yamls) != 1 || yaml.Unmarshal([]byte(yamls[0]), &steps) != nil || len(steps) != 1 {
		t.Fatalf("chatops.md: want one yaml block with one step")
	}
	ctx := map[string]any{
		"secrets": map[string]any{"DEPLOYWATCH_TOKEN": recipeToken},
		"steps":   map[string]any{"deploy": map[string]any{"outcome": "success"}},
		"github": map[string]any{"sha": "ffac537e6cbbf934b08745a378932722df287a53", "run_id": "7431190552", "run_attempt": "2",
			"server_url": "https://github.com", "repository": "acme/search", "actor": "octocat",
			"event": map[string]any{"repository": map[string]any{"name": "search"}}},
	}
	runGitHubStep(t, s, steps[0], ctx)
	d = s.waitDeploy(t, "gha-search-7431190552-2", "succeeded")
	wantFields(t, "GitHub Actions deploy", d, map[string]any{"service": "search", "author": "octocat",
		"url": "https://github.com/acme/search/actions/runs/7431190552"})
}

func testFluxRecipe(t *testing.T, s *recipeServer) {
	docs := yamlDocs(t, readRecipe(t, "flux-alert.yaml"))
	provider := docOfKind(t, docs, "Provider")
	alert := docOfKind(t, docs, "Alert")
	secret := docOfKind(t, docs, "Secret")
	pspec := provider["spec"].(map[string]any)
	if pspec["type"] != "githubdispatch" || pspec["secretRef"].(map[string]any)["name"] != secret["metadata"].(map[string]any)["name"] ||
		alert["spec"].(map[string]any)["providerRef"].(map[string]any)["name"] != provider["metadata"].(map[string]any)["name"] {
		t.Fatalf("the Provider, Alert and Secret do not refer to each other: %v %v", provider, alert)
	}
	var workflow map[string]any
	if err := yaml.Unmarshal(readRecipe(t, "flux-dispatch-workflow.yaml"), &workflow); err != nil {
		t.Fatal(err)
	}
	job := workflow["jobs"].(map[string]any)["record-deploy"].(map[string]any)
	step := job["steps"].([]any)[0].(map[string]any)
	// Flux events, in the format of Flux's event documentation, as the
	// githubdispatch Provider sends them: the event is the client_payload.
	dispatch := func(kind, name, ns, severity, reason, revisionKey, revision, ts string) {
		t.Helper()
		event := map[string]any{
			"involvedObject": map[string]any{"apiVersion": strings.Split(revisionKey, "/")[0] + "/v1", "kind": kind, "name": name, "namespace": ns,
				"uid": "7d0cdc51-ddcf-4743-b223-83ca5c699632"},
			"metadata":            map[string]any{revisionKey: revision, "env": "production"},
			"severity":            severity,
			"reason":              reason,
			"message":             `service/apps/webapp "configured"; it's $(done)`,
			"reportingController": strings.Split(revisionKey, ".")[0] + "-controller",
			"timestamp":           ts,
		}
		ctx := map[string]any{
			"secrets": map[string]any{"DEPLOYWATCH_TOKEN": recipeToken},
			"github":  map[string]any{"event": map[string]any{"action": kind + "/" + name + "." + ns, "client_payload": event}},
		}
		runGitHubStep(t, s, step, ctx)
	}
	dispatch("Kustomization", "webapp", "flux-system", "info", "ReconciliationSucceeded", "kustomize.toolkit.fluxcd.io/revision",
		"main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1", "2026-11-20T07:26:19Z")
	d := s.waitDeploy(t, "flux-kustomization-flux-system-webapp-731f7eaddfb6", "succeeded")
	wantFields(t, "flux deploy", d, map[string]any{"service": "webapp", "env": "production", "version": "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"})
	dispatch("HelmRelease", "podinfo", "flux-system", "error", "UpgradeFailed", "helm.toolkit.fluxcd.io/revision", "6.5.4", "2026-11-20T07:40:02Z")
	s.waitDeploy(t, "flux-helmrelease-flux-system-podinfo-6.5.4", "failed")
	// The older revision format, and an event that is no outcome: skipped.
	dispatch("Kustomization", "catalog", "flux-system", "info", "Progressing", "kustomize.toolkit.fluxcd.io/revision",
		"main/2c6e4d9a1b0f8e7d6c5b4a3928170f6e5d4c3b2a", "2026-11-20T07:50:00Z")
	dispatch("Kustomization", "catalog", "flux-system", "error", "HealthCheckFailed", "kustomize.toolkit.fluxcd.io/revision",
		"main/2c6e4d9a1b0f8e7d6c5b4a3928170f6e5d4c3b2a", "2026-11-20T07:55:00Z")
	s.waitDeploy(t, "flux-kustomization-flux-system-catalog-2c6e4d9a1b0f", "failed")
	if n := s.count(t, "SELECT count() FROM deploy_changes FINAL WHERE service = 'catalog'"); n != 1 {
		t.Errorf("%d changes of catalog, want the failure only (Progressing is no outcome)", n)
	}

	// Way B: the CI step around flux reconcile, with a stand-in flux CLI.
	fake := "#!/bin/sh\necho \"flux $*\" >&2\nexit ${FAKE_FLUX_EXIT:-0}\n"
	if err := os.WriteFile(filepath.Join(s.bin, "flux"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	step2 := string(readRecipe(t, "flux-ci-step.sh"))
	env := map[string]string{"SERVICE": "cart", "DEPLOY_ENV": "production", "KUSTOMIZATION": "cart", "GIT_SHA": "b2c3d4e5f60718293a4b5c6d7e8f901234567890"}
	s.run(t, []string{"sh"}, step2, env, false)
	env["GIT_SHA"], env["FAKE_FLUX_EXIT"] = "c3d4e5f60718293a4b5c6d7e8f90123456789012", "1"
	s.run(t, []string{"sh"}, step2, env, true)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		ok := s.count(t, "SELECT count() FROM deploys WHERE service = 'cart' AND status = 'succeeded' AND version = 'b2c3d4e5f60718293a4b5c6d7e8f901234567890' AND started_at IS NOT NULL")
		bad := s.count(t, "SELECT count() FROM deploys WHERE service = 'cart' AND status = 'failed' AND version = 'c3d4e5f60718293a4b5c6d7e8f90123456789012' AND started_at IS NOT NULL")
		return ok == 1 && bad == 1, fmt.Sprintf("cart: %d succeeded and %d failed deploys with their start", ok, bad)
	})
}

// TestRecipesKeepTokensOffCommandLines: a token in curl's arguments shows
// in the process list of the CI machine; the recipes and the README hand it
// to curl on stdin instead.
func TestRecipesKeepTokensOffCommandLines(t *testing.T) {
	entries, err := os.ReadDir(recipePath(""))
	if err != nil {
		t.Fatal(err)
	}
	files := []string{filepath.Join("..", "..", "README.md")}
	for _, e := range entries {
		files = append(files, recipePath(e.Name()))
	}
	onCommandLine := regexp.MustCompile(`-H\s+["']?Authorization:`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if onCommandLine.MatchString(line) {
				t.Errorf("%s:%d passes the token on curl's command line: %s", f, i+1, strings.TrimSpace(line))
			}
		}
	}
}
