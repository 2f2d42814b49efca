package ingest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

func (a *API) postGitLabWebhook(w http.ResponseWriter, r *http.Request) {
	want := a.cfg.Webhooks.GitLabToken
	if want == "" {
		writeError(w, http.StatusServiceUnavailable, "GitLab webhooks are off: no token is configured; set --gitlab-webhook-token (or DEPLOYWATCH_GITLAB_WEBHOOK_TOKEN) to the webhook's secret token. Unverified deliveries are never accepted", nil)
		return
	}
	if !sameSecret(r.Header.Get("X-Gitlab-Token"), want) {
		a.rejected.Inc()
		writeError(w, http.StatusUnauthorized, "missing or wrong X-Gitlab-Token: the webhook's secret token must equal --gitlab-webhook-token", nil)
		return
	}
	body, ok := a.readBody(w, r)
	if !ok {
		return
	}
	events, err := gitlabEvents(body, a.cfg.Webhooks)
	// GitLab 17.4+ keeps Idempotency-Key across its retries; older ones send
	// only the event's UUID.
	delivery := r.Header.Get("Idempotency-Key")
	if delivery == "" {
		delivery = r.Header.Get("X-Gitlab-Event-UUID")
	}
	a.answerWebhook(w, r, "gitlab", delivery, events, err)
}

type gitlabProject struct {
	ID                int64  `json:"id"`
	PathWithNamespace string `json:"path_with_namespace"`
}

type gitlabPayload struct {
	ObjectKind string        `json:"object_kind"`
	Project    gitlabProject `json:"project"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`

	// deployment events
	Status          string `json:"status"`
	StatusChangedAt string `json:"status_changed_at"`
	DeploymentID    int64  `json:"deployment_id"`
	DeployableURL   string `json:"deployable_url"`
	Environment     string `json:"environment"`
	Ref             string `json:"ref"`
	ShortSHA        string `json:"short_sha"`
	CommitURL       string `json:"commit_url"`
	CommitTitle     string `json:"commit_title"`

	// push events; GitLab lists at most 20 commits of a push
	Before      string          `json:"before"`
	After       string          `json:"after"`
	PushCommits []webhookCommit `json:"commits"`

	// pipeline events
	ObjectAttributes struct {
		ID         int64  `json:"id"`
		Ref        string `json:"ref"`
		SHA        string `json:"sha"`
		Status     string `json:"status"`
		CreatedAt  string `json:"created_at"`
		FinishedAt string `json:"finished_at"`
		URL        string `json:"url"`
	} `json:"object_attributes"`
	Commit webhookCommit `json:"commit"`
	Builds []struct {
		Name        string `json:"name"`
		Status      string `json:"status"`
		Environment *struct {
			Name   string `json:"name"`
			Action string `json:"action"`
		} `json:"environment"`
	} `json:"builds"`
}

// gitlabEvents maps one GitLab delivery to deploy or push events, or returns
// errWebhookIgnored saying why it maps to none.
func gitlabEvents(body []byte, cfg WebhookConfig) ([]webhookEvent, error) {
	var p gitlabPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("cannot decode the GitLab payload: %v", err)
	}
	switch p.ObjectKind {
	case "deployment", "pipeline", "push":
	case "":
		return nil, fmt.Errorf("the payload has no object_kind: send GitLab's payload as it is")
	case "tag_push":
		return nil, errWebhookIgnored("tag pushes are not used: lead time counts the commits pushed to branches; enable push events for branches instead")
	default:
		return nil, errWebhookIgnored(p.ObjectKind + " events are not used: enable only deployment, push (or pipeline) events on the webhook")
	}
	repo := p.Project.PathWithNamespace
	if repo == "" || p.Project.ID == 0 {
		return nil, fmt.Errorf("the %s payload has no project: send GitLab's payload as it is", p.ObjectKind)
	}
	service := webhookService(cfg.ServiceMap, repo, repo[strings.LastIndexByte(repo, '/')+1:])
	project := strconv.FormatInt(p.Project.ID, 10)
	labels := map[string]string{"source": "gitlab", "repository": repo}
	switch p.ObjectKind {
	case "deployment":
		return gitlabDeployment(&p, service, project, labels)
	case "push":
		return gitlabPush(&p, service, project)
	}
	return gitlabPipeline(&p, service, project, labels)
}

func gitlabDeployment(p *gitlabPayload, service, project string, labels map[string]string) ([]webhookEvent, error) {
	status, err := gitlabStatus("deployment", p.Status)
	if err != nil {
		return nil, err
	}
	if p.DeploymentID == 0 {
		return nil, fmt.Errorf("the deployment payload has no deployment_id: send GitLab's payload as it is")
	}
	// commit_url ends in the full sha; short_sha is all the payload has else.
	sha := p.CommitURL[strings.LastIndexByte(p.CommitURL, '/')+1:]
	if sha == "" {
		sha = p.ShortSHA
	}
	if sha == "" {
		return nil, fmt.Errorf("the deployment payload has neither commit_url nor short_sha: send GitLab's payload as it is")
	}
	changed, err := gitlabTime("status_changed_at", p.StatusChangedAt)
	if err != nil {
		return nil, err
	}
	if p.Ref != "" {
		labels["ref"] = p.Ref
	}
	d := &schema.Deploy{
		ID:      "gl-" + project + "-" + strconv.FormatInt(p.DeploymentID, 10),
		Service: service,
		Env:     webhookEnv(p.Environment),
		Version: sha,
		Status:  status,
		Commits: []schema.Commit{{SHA: sha, Message: p.CommitTitle}},
		Author:  p.User.Username,
		URL:     p.DeployableURL,
		Labels:  labels,
	}
	// GitLab tells when the status changed, not when the deploy started:
	// a finished deploy's start comes from its running event.
	if status == schema.DeployStarted {
		d.StartedAt = changed
	} else {
		d.FinishedAt = changed
	}
	d.Normalize()
	return []webhookEvent{d}, nil
}

func gitlabPipeline(p *gitlabPayload, service, project string, labels map[string]string) ([]webhookEvent, error) {
	pl := &p.ObjectAttributes
	env := ""
	for _, b := range p.Builds {
		if b.Environment != nil && b.Environment.Action == "start" && b.Status != "skipped" && b.Status != "manual" && b.Status != "created" {
			env = b.Environment.Name
			break
		}
	}
	if env == "" {
		return nil, errWebhookIgnored("the pipeline has no deploy job (a job with environment action start that ran): it is not a deploy")
	}
	status, err := gitlabStatus("pipeline", pl.Status)
	if err != nil {
		return nil, err
	}
	if pl.ID == 0 || pl.SHA == "" {
		return nil, fmt.Errorf("the pipeline payload has no object_attributes.id or sha: send GitLab's payload as it is")
	}
	started, err := gitlabTime("object_attributes.created_at", pl.CreatedAt)
	if err != nil {
		return nil, err
	}
	labels["ref"] = pl.Ref
	d := &schema.Deploy{
		ID:        "gl-" + project + "-pipeline-" + strconv.FormatInt(pl.ID, 10),
		Service:   service,
		Env:       webhookEnv(env),
		Version:   pl.SHA,
		Status:    status,
		StartedAt: started,
		Author:    p.User.Username,
		URL:       pl.URL,
		Labels:    labels,
	}
	if status != schema.DeployStarted {
		if d.FinishedAt, err = gitlabTime("object_attributes.finished_at", pl.FinishedAt); err != nil {
			return nil, err
		}
	}
	c := schema.Commit{SHA: pl.SHA}
	if p.Commit.ID == pl.SHA {
		c.Message, c.Author = p.Commit.Message, p.Commit.Author.Name
		if c.Time, err = gitlabTime("commit.timestamp", p.Commit.Timestamp); err != nil {
			return nil, err
		}
	}
	d.Commits = []schema.Commit{c}
	d.Normalize()
	return []webhookEvent{d}, nil
}

// gitlabStatus maps a deployment's or pipeline's status to the deploy's.
func gitlabStatus(kind, s string) (schema.DeployStatus, error) {
	switch s {
	case "running":
		return schema.DeployStarted, nil
	case "success":
		return schema.DeploySucceeded, nil
	case "failed":
		return schema.DeployFailed, nil
	default: // created, pending, canceled, skipped, manual, blocked, …
		return "", errWebhookIgnored(kind + " status " + strconv.Quote(s) + " is not used: only running, success and failed are a deploy's")
	}
}

// gitlabTime parses GitLab's webhook times: "2021-04-28 21:50:00 +0200",
// "2016-08-12 15:23:28 UTC" or RFC 3339.
func gitlabTime(field, s string) (schema.Time, error) {
	for _, layout := range []string{"2006-01-02 15:04:05 -0700", "2006-01-02 15:04:05 MST", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return schema.At(t), nil
		}
	}
	return schema.Time{}, fmt.Errorf("%s %q is not a time as GitLab sends it", field, s)
}
