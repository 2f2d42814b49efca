package ingest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/deploywatch/deploywatch/schema"
)

// maxPushCommits is how many commits of one push are kept: the event must
// pass validation and fit in one event log message. GitHub sends up to 2048.
const maxPushCommits = 1000

// maxPushMessage bounds a commit message taken from a push webhook: the
// subject line is what reports show, and 1000 full messages would not fit in
// one event log message.
const maxPushMessage = 256

type githubPushPayload struct {
	Ref        string `json:"ref"`
	Before     string `json:"before"`
	After      string `json:"after"`
	Deleted    bool   `json:"deleted"`
	Repository struct {
		githubRepository
		// A Unix time in push payloads, an RFC 3339 string in others.
		PushedAt json.RawMessage `json:"pushed_at"`
	} `json:"repository"`
	Commits    []webhookCommit `json:"commits"`
	HeadCommit *struct {
		Timestamp string `json:"timestamp"`
	} `json:"head_commit"`
}

// githubPushEvent maps a GitHub push to a push event: its commits with their
// times, keyed by the repository and the new head.
func githubPushEvent(body []byte, cfg WebhookConfig) ([]webhookEvent, error) {
	var p githubPushPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("cannot decode the push payload: %v", err)
	}
	repo := &p.Repository
	service := webhookService(cfg.ServiceMap, repo.FullName, repo.Name)
	if service == "" || repo.ID == 0 {
		return nil, fmt.Errorf("the push payload has no repository: send GitHub's payload as it is")
	}
	if err := pushIgnored(p.Ref, p.After, p.Deleted, len(p.Commits)); err != nil {
		return nil, err
	}
	push, err := newPush("gh-push-"+strconv.FormatInt(repo.ID, 10)+"-"+p.After, service, repo.FullName, p.Ref, p.Before, p.After,
		p.Commits, webhookTime)
	if err != nil {
		return nil, err
	}
	switch {
	case len(repo.PushedAt) > 0 && repo.PushedAt[0] != '"' && string(repo.PushedAt) != "null":
		var unix int64
		if err := json.Unmarshal(repo.PushedAt, &unix); err != nil {
			return nil, fmt.Errorf("repository.pushed_at %s is not a Unix time", repo.PushedAt)
		}
		push.PushedAt = schema.At(time.Unix(unix, 0))
	case len(repo.PushedAt) > 0 && repo.PushedAt[0] == '"':
		var s string
		_ = json.Unmarshal(repo.PushedAt, &s)
		if push.PushedAt, err = webhookTime("repository.pushed_at", s); err != nil {
			return nil, err
		}
	case p.HeadCommit != nil:
		if push.PushedAt, err = webhookTime("head_commit.timestamp", p.HeadCommit.Timestamp); err != nil {
			return nil, err
		}
	default:
		push.PushedAt = newestCommitTime(push.Commits)
	}
	push.Normalize()
	return []webhookEvent{push}, nil
}

// webhookCommit is a commit of a GitHub or GitLab push payload.
type webhookCommit struct {
	ID        string `json:"id"`
	Message   string `json:"message"`
	Timestamp string `json:"timestamp"`
	Author    struct {
		Name string `json:"name"`
	} `json:"author"`
}

// gitlabPush maps a GitLab Push Hook to a push event.
func gitlabPush(p *gitlabPayload, service, project string) ([]webhookEvent, error) {
	if err := pushIgnored(p.Ref, p.After, false, len(p.PushCommits)); err != nil {
		return nil, err
	}
	push, err := newPush("gl-push-"+project+"-"+p.After, service, p.Project.PathWithNamespace, p.Ref, p.Before, p.After,
		p.PushCommits, gitlabTime)
	if err != nil {
		return nil, err
	}
	// GitLab does not say when the push happened: the newest commit is the
	// latest time known to be no later than it, and the same on redelivery.
	push.PushedAt = newestCommitTime(push.Commits)
	push.Normalize()
	return []webhookEvent{push}, nil
}

// newPush is the push event of branch ref moving from before to after with
// commits, oldest first as both senders list them. It keeps the newest
// maxPushCommits, and leaves out a commit whose time no event may carry
// (before 2000, or more than an hour ahead: a committer's clock, a rewritten
// date): it says nothing true about lead time, and refusing the push for it
// would lose the other commits and mark the hook as failing.
func newPush(id, service, repo, ref, before, after string, commits []webhookCommit,
	parseTime func(field, s string) (schema.Time, error)) (*schema.Push, error) {
	push := &schema.Push{ID: id, Service: service, Repo: repo, Ref: ref, HeadSHA: after}
	if !isZeroSHA(before) {
		push.Before = before
	}
	first := max(0, len(commits)-maxPushCommits)
	for i, c := range commits[first:] {
		t, err := parseTime("commits["+strconv.Itoa(first+i)+"].timestamp", c.Timestamp)
		if err != nil {
			return nil, err
		}
		if schema.UsableTime(t.Time) {
			push.Commits = append(push.Commits, schema.Commit{SHA: c.ID, Time: t, Author: c.Author.Name, Message: commitSubject(c.Message)})
		}
	}
	if len(push.Commits) == 0 {
		return nil, errNoUsableCommitTime
	}
	return push, nil
}

// errNoUsableCommitTime answers a push none of whose commits has a usable time.
var errNoUsableCommitTime = errWebhookIgnored("no commit of the push has a usable time (all before 2000 or more than an hour ahead): nothing for lead time")

// pushIgnored says why a push maps to no event: it is not to a branch, it
// deleted one, or it carried no commits.
func pushIgnored(ref, after string, deleted bool, commits int) error {
	switch {
	case strings.HasPrefix(ref, "refs/tags/"):
		return errWebhookIgnored("tag pushes are not used: lead time counts the commits pushed to branches")
	case !strings.HasPrefix(ref, "refs/heads/"):
		return errWebhookIgnored("push to " + strconv.Quote(ref) + " is not used: only pushes to branches (refs/heads/) are")
	case deleted || isZeroSHA(after):
		return errWebhookIgnored("the push deleted branch " + strconv.Quote(strings.TrimPrefix(ref, "refs/heads/")) + ": it carries no commits")
	case after == "":
		return fmt.Errorf("the push payload has no after sha: send the payload as it is")
	case commits == 0:
		return errWebhookIgnored("the push carries no new commits (a branch created at an existing commit, or moved back): nothing for lead time")
	}
	return nil
}

// isZeroSHA reports whether sha is git's null sha, which GitHub and GitLab
// send as the head of a deleted branch or the base of a new one.
func isZeroSHA(sha string) bool { return sha != "" && strings.Trim(sha, "0") == "" }

// commitSubject is the first line of a commit message, cut to maxPushMessage
// bytes at a character boundary.
func commitSubject(msg string) string {
	msg, _, _ = strings.Cut(msg, "\n")
	msg = strings.TrimSpace(msg)
	if len(msg) <= maxPushMessage {
		return msg
	}
	cut := maxPushMessage
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut]
}

func newestCommitTime(commits []schema.Commit) schema.Time {
	var newest time.Time
	for _, c := range commits {
		if c.Time.Time.After(newest) {
			newest = c.Time.Time
		}
	}
	return schema.At(newest)
}
