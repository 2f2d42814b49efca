package ingest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

// WebhookConfig holds the settings of the GitHub and GitLab webhook routes.
type WebhookConfig struct {
	// GitHubSecret verifies X-Hub-Signature-256; without it
	// /webhooks/github answers 503.
	GitHubSecret string
	// GitLabToken is compared with X-Gitlab-Token; without it
	// /webhooks/gitlab answers 503.
	GitLabToken string
	// ServiceMap maps a repository ("owner/name" or "name"; for GitLab the
	// project's path_with_namespace or path) to a deploywatch service. A
	// repository not in it is the service of its own name.
	ServiceMap map[string]string
	// GitHubDeployWorkflows is a pattern (* any characters, ? one): completed workflow runs
	// whose workflow name matches it are deploys. "" means no workflow is.
	GitHubDeployWorkflows string
	// Deliveries remembers the deliveries whose events the event log
	// acknowledged, so that one sent again (GitHub's Redeliver, GitLab's
	// retries, a replayed request) is answered without publishing. nil
	// leaves deduplication to the events' ids alone.
	Deliveries DeliveryLog
}

// DeliveryLog is where webhook delivery ids are remembered, such as a
// JetStream key-value bucket whose keys expire.
type DeliveryLog interface {
	// Has tells whether key was put.
	Has(ctx context.Context, key string) (bool, error)
	Put(ctx context.Context, key string, value []byte) error
}

// webhookDefaultEnv is the env of a deploy whose sender names none (a
// workflow run, a deployment without an environment).
const webhookDefaultEnv = "production"

// webhookAnswer is the answer to a webhook delivery: what was published, or
// why nothing was.
type webhookAnswer struct {
	Accepted int      `json:"accepted"`
	IDs      []string `json:"ids,omitempty"`
	Reason   string   `json:"reason,omitempty"`
}

// errWebhookIgnored is returned by a mapping for a valid delivery that maps
// to no event; its text is the reason the sender is told.
type errWebhookIgnored string

func (e errWebhookIgnored) Error() string { return string(e) }

func (a *API) postGitHubWebhook(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Webhooks.GitHubSecret == "" {
		writeError(w, http.StatusServiceUnavailable, "GitHub webhooks are off: no secret is configured; set --github-webhook-secret (or DEPLOYWATCH_GITHUB_WEBHOOK_SECRET) to the webhook's secret. Unsigned deliveries are never accepted", nil)
		return
	}
	body, ok := a.readBody(w, r)
	if !ok {
		return
	}
	if !validGitHubSignature(a.cfg.Webhooks.GitHubSecret, body, r.Header.Get("X-Hub-Signature-256")) {
		a.rejected.Inc()
		writeError(w, http.StatusUnauthorized, "missing or wrong X-Hub-Signature-256: the webhook's secret must equal --github-webhook-secret", nil)
		return
	}
	delivery := r.Header.Get("X-GitHub-Delivery")
	event := r.Header.Get("X-GitHub-Event")
	if delivery == "" || event == "" {
		a.reject(w, fmt.Errorf("missing X-GitHub-Event or X-GitHub-Delivery header: send GitHub's webhook deliveries as they are"))
		return
	}
	events, err := githubEvents(event, body, a.cfg.Webhooks)
	a.answerWebhook(w, r, "github", delivery, events, err)
}

// webhookEvent is what a webhook delivery maps to: a deploy change or a push.
type webhookEvent interface {
	schema.Event
	Validate() error
}

// answerWebhook publishes what a delivery mapped to, or answers why nothing.
func (a *API) answerWebhook(w http.ResponseWriter, r *http.Request, sender, delivery string, mapped []webhookEvent, err error) {
	if ig, ok := err.(errWebhookIgnored); ok {
		a.log.Debug("webhook delivery ignored", "sender", sender, "delivery", delivery, "reason", string(ig))
		writeJSON(w, http.StatusAccepted, webhookAnswer{Reason: string(ig)})
		return
	}
	if err != nil {
		a.reject(w, err)
		return
	}
	events := make([]schema.Event, len(mapped))
	ids := make([]string, len(mapped))
	for i, ev := range mapped {
		if err := ev.Validate(); err != nil {
			a.reject(w, fmt.Errorf("the %s delivery %s maps to an invalid %s event: %w", sender, delivery, ev.EventType(), err))
			return
		}
		events[i], ids[i] = ev, eventID(ev)
	}
	key := ""
	if a.cfg.Webhooks.Deliveries != nil {
		key = deliveryKey(sender, delivery)
	}
	if a.deliverySeen(r.Context(), sender, key) {
		writeJSON(w, http.StatusAccepted, webhookAnswer{IDs: ids,
			Reason: "delivery " + delivery + " was received before and its events are stored; nothing was stored again"})
		return
	}
	if !a.publish(w, r, events, webhookAnswer{Accepted: len(events), IDs: ids}) || key == "" {
		return
	}
	// Remembered only after the event log took the events: a delivery
	// that failed here is processed in full when it is sent again.
	if err := a.cfg.Webhooks.Deliveries.Put(r.Context(), key, nil); err != nil {
		a.log.Warn("cannot remember a webhook delivery; a re-delivery of it will be deduplicated by its events' ids", "sender", sender, "delivery", delivery, "err", err)
	}
}

// deliveryKey is the delivery log's key of a delivery id, or "" without an
// id. Ids are hashed: a key may not hold every byte a
// header can.
func deliveryKey(sender, delivery string) string {
	if delivery == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(delivery))
	return sender + "." + hex.EncodeToString(sum[:16])
}

// deliverySeen tells whether the delivery log has key. When the log cannot
// be read the delivery is processed: its events' ids still deduplicate it.
func (a *API) deliverySeen(ctx context.Context, sender, key string) bool {
	if key == "" {
		return false
	}
	seen, err := a.cfg.Webhooks.Deliveries.Has(ctx, key)
	if err != nil {
		a.log.Warn("cannot read the webhook delivery log; processing the delivery", "sender", sender, "err", err)
		return false
	}
	if seen {
		a.metrics.GetOrCreateCounter(`deploywatch_webhook_repeated_deliveries_total{sender="` + sender + `"}`).Inc()
	}
	return seen
}

// validGitHubSignature checks header ("sha256=<hex>") against the
// HMAC-SHA256 of body, in constant time.
func validGitHubSignature(secret string, body []byte, header string) bool {
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

type githubRepository struct {
	ID       int64  `json:"id"`
	Name     string `json:"name"`
	FullName string `json:"full_name"`
}

type githubUser struct {
	Login string `json:"login"`
}

type githubDeployment struct {
	ID          int64      `json:"id"`
	SHA         string     `json:"sha"`
	Ref         string     `json:"ref"`
	Environment string     `json:"environment"`
	CreatedAt   string     `json:"created_at"`
	Creator     githubUser `json:"creator"`
}

type githubPayload struct {
	Action           string           `json:"action"`
	Repository       githubRepository `json:"repository"`
	Deployment       githubDeployment `json:"deployment"`
	DeploymentStatus struct {
		State       string `json:"state"`
		Environment string `json:"environment"`
		CreatedAt   string `json:"created_at"`
		TargetURL   string `json:"target_url"`
		LogURL      string `json:"log_url"`
	} `json:"deployment_status"`
	WorkflowRun struct {
		ID           int64          `json:"id"`
		Name         string         `json:"name"`
		HeadSHA      string         `json:"head_sha"`
		HeadBranch   string         `json:"head_branch"`
		Status       string         `json:"status"`
		Conclusion   string         `json:"conclusion"`
		RunAttempt   int64          `json:"run_attempt"`
		RunStartedAt string         `json:"run_started_at"`
		CreatedAt    string         `json:"created_at"`
		UpdatedAt    string         `json:"updated_at"`
		HTMLURL      string         `json:"html_url"`
		Actor        githubUser     `json:"actor"`
		HeadCommit   *webhookCommit `json:"head_commit"`
	} `json:"workflow_run"`
	Workflow struct {
		Name string `json:"name"`
	} `json:"workflow"`
}

// githubEvents maps one GitHub delivery of the given X-GitHub-Event to
// deploy or push events, or returns errWebhookIgnored saying why it maps to none.
func githubEvents(event string, body []byte, cfg WebhookConfig) ([]webhookEvent, error) {
	switch event {
	case "deployment", "deployment_status", "workflow_run":
	case "ping":
		return nil, errWebhookIgnored("ping received: the webhook is set up")
	case "push":
		return githubPushEvent(body, cfg)
	default:
		return nil, errWebhookIgnored(event + " events are not used: subscribe the webhook to deployment, deployment_status, workflow_run and push events only")
	}
	var p githubPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("cannot decode the %s payload: %v", event, err)
	}
	service := webhookService(cfg.ServiceMap, p.Repository.FullName, p.Repository.Name)
	if service == "" || p.Repository.ID == 0 {
		return nil, fmt.Errorf("the %s payload has no repository: send GitHub's payload as it is", event)
	}
	switch event {
	case "deployment":
		if p.Action != "created" {
			return nil, errWebhookIgnored("deployment action " + strconv.Quote(p.Action) + " is not used")
		}
		d, err := githubDeploy(&p, service, schema.DeployStarted, "")
		if err != nil {
			return nil, err
		}
		return []webhookEvent{d}, nil
	case "deployment_status":
		var status schema.DeployStatus
		switch s := p.DeploymentStatus.State; s {
		case "pending", "queued", "in_progress":
			status = schema.DeployStarted
		case "success":
			status = schema.DeploySucceeded
		case "failure", "error":
			status = schema.DeployFailed
		case "inactive":
			return nil, errWebhookIgnored("deployment status inactive is not used: a later deploy replaced this one, and that deploy's own events record it")
		default:
			return nil, errWebhookIgnored("deployment status " + strconv.Quote(s) + " is not used")
		}
		d, err := githubDeploy(&p, service, status, p.DeploymentStatus.CreatedAt)
		if err != nil {
			return nil, err
		}
		if u := firstNonEmpty(p.DeploymentStatus.LogURL, p.DeploymentStatus.TargetURL); u != "" {
			d.URL = u
		}
		if p.DeploymentStatus.Environment != "" {
			d.Env = webhookEnv(p.DeploymentStatus.Environment)
		}
		return []webhookEvent{d}, nil
	default: // workflow_run
		return githubWorkflowRun(&p, service, cfg.GitHubDeployWorkflows)
	}
}

// githubDeploy builds the deploy of p.Deployment with the given status; its
// id is the same for every status of that deployment.
func githubDeploy(p *githubPayload, service string, status schema.DeployStatus, finished string) (*schema.Deploy, error) {
	dep := &p.Deployment
	if dep.ID == 0 || dep.SHA == "" {
		return nil, fmt.Errorf("the payload has no deployment id or sha: send GitHub's payload as it is")
	}
	started, err := webhookTime("deployment.created_at", dep.CreatedAt)
	if err != nil {
		return nil, err
	}
	d := &schema.Deploy{
		ID:        "gh-" + strconv.FormatInt(p.Repository.ID, 10) + "-" + strconv.FormatInt(dep.ID, 10),
		Service:   service,
		Env:       webhookEnv(dep.Environment),
		Version:   dep.SHA,
		Status:    status,
		StartedAt: started,
		Commits:   []schema.Commit{{SHA: dep.SHA}},
		Author:    dep.Creator.Login,
		Labels:    map[string]string{"source": "github", "repository": p.Repository.FullName, "ref": dep.Ref},
	}
	if status != schema.DeployStarted {
		if d.FinishedAt, err = webhookTime("deployment_status.created_at", finished); err != nil {
			return nil, err
		}
	}
	d.Normalize()
	return d, nil
}

func githubWorkflowRun(p *githubPayload, service, pattern string) ([]webhookEvent, error) {
	run := &p.WorkflowRun
	name := firstNonEmpty(p.Workflow.Name, run.Name)
	if p.Action != "completed" || run.Status != "completed" {
		return nil, errWebhookIgnored("workflow_run action " + strconv.Quote(p.Action) + " is not used: only completed runs are deploys")
	}
	if pattern == "" {
		return nil, errWebhookIgnored("workflow runs are not deploys here: set --github-deploy-workflows to a glob of the names of the workflows that deploy")
	}
	if !matchWorkflow(pattern, name) {
		return nil, errWebhookIgnored("workflow " + strconv.Quote(name) + " does not match --github-deploy-workflows " + strconv.Quote(pattern))
	}
	var status schema.DeployStatus
	switch run.Conclusion {
	case "success":
		status = schema.DeploySucceeded
	case "failure", "timed_out", "startup_failure":
		status = schema.DeployFailed
	default: // cancelled, skipped, neutral, action_required, stale
		return nil, errWebhookIgnored("workflow run conclusion " + strconv.Quote(run.Conclusion) + " is not a deploy's outcome")
	}
	if run.ID == 0 || run.HeadSHA == "" {
		return nil, fmt.Errorf("the workflow_run payload has no run id or head_sha: send GitHub's payload as it is")
	}
	started, err := webhookTime("workflow_run.run_started_at", firstNonEmpty(run.RunStartedAt, run.CreatedAt))
	if err != nil {
		return nil, err
	}
	finished, err := webhookTime("workflow_run.updated_at", run.UpdatedAt)
	if err != nil {
		return nil, err
	}
	attempt := max(run.RunAttempt, 1)
	d := &schema.Deploy{
		ID:         "gha-" + strconv.FormatInt(p.Repository.ID, 10) + "-" + strconv.FormatInt(run.ID, 10) + "-" + strconv.FormatInt(attempt, 10),
		Service:    service,
		Env:        webhookDefaultEnv,
		Version:    run.HeadSHA,
		Status:     status,
		StartedAt:  started,
		FinishedAt: finished,
		Author:     run.Actor.Login,
		URL:        run.HTMLURL,
		Labels:     map[string]string{"source": "github", "repository": p.Repository.FullName, "ref": run.HeadBranch, "workflow": name},
	}
	c := schema.Commit{SHA: run.HeadSHA}
	if hc := run.HeadCommit; hc != nil && hc.ID == run.HeadSHA {
		c.Message = hc.Message
		c.Author = hc.Author.Name
		if c.Time, err = webhookTime("workflow_run.head_commit.timestamp", hc.Timestamp); err != nil {
			return nil, err
		}
	}
	d.Commits = []schema.Commit{c}
	d.Normalize()
	return []webhookEvent{d}, nil
}

// webhookService is the service of a repository: the mapped one, or the
// repository's own name.
func webhookService(m map[string]string, fullName, name string) string {
	if s, ok := m[fullName]; ok {
		return s
	}
	if s, ok := m[name]; ok {
		return s
	}
	return name
}

// webhookEnv is the env of a deployment environment; names deploywatch does
// not accept as such ("Production / EU") are cleaned up.
func webhookEnv(env string) string {
	env = strings.TrimSpace(env)
	if env == "" {
		return webhookDefaultEnv
	}
	var b strings.Builder
	for _, r := range env {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	if env = strings.Trim(b.String(), "-._"); env == "" {
		return webhookDefaultEnv
	}
	return env
}

func webhookTime(field, s string) (schema.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return schema.Time{}, fmt.Errorf("%s %q is not an RFC 3339 time", field, s)
	}
	return schema.At(t), nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// matchWorkflow tells whether a workflow's name matches pattern, where * is
// any run of characters and ? any one. Unlike path.Match, * crosses "/":
// workflow names such as "Deploy / production" are not paths.
func matchWorkflow(pattern, name string) bool {
	re := regexp.QuoteMeta(pattern)
	re = strings.ReplaceAll(re, `\*`, ".*")
	re = strings.ReplaceAll(re, `\?`, ".")
	ok, err := regexp.MatchString("^(?s:"+re+")$", name)
	return err == nil && ok
}
