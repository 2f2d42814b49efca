package schema

import "strings"

// TypePush is a push to a repository: the commits it carried, with their
// times, which lead time needs when a deploy names only its sha.
const TypePush Type = "push"

// Push is one push of commits to a repository's branch. A deploy of HeadSHA
// ships these commits; the sink writes one commits row per commit.
type Push struct {
	ID      string `json:"id"`
	Type    Type   `json:"type"`
	Service string `json:"service"`
	Repo    string `json:"repo,omitempty"`
	Ref     string `json:"ref,omitempty"`
	// Before is the branch's head before the push, when known.
	Before string `json:"before,omitempty"`
	// HeadSHA is the branch's head after the push (GitHub's and GitLab's
	// "after"): the sha a deploy of this push names.
	HeadSHA  string   `json:"head_sha"`
	PushedAt Time     `json:"pushed_at"`
	Commits  []Commit `json:"commits"`
}

func (p *Push) EventType() Type { return TypePush }

// EventID is the push's id: a push is one fact, sent once.
func (p *Push) EventID() string      { return p.ID }
func (p *Push) EventTime() Time      { return p.PushedAt }
func (p *Push) EventService() string { return p.Service }

// Normalize fills in the type and, when the sender gave none, an id derived
// from the push's identity (service, repo and head), so that a re-sent push
// gets the same id.
func (p *Push) Normalize() {
	p.Type = TypePush
	p.Service = strings.TrimSpace(p.Service)
	p.HeadSHA = strings.TrimSpace(p.HeadSHA)
	if p.ID == "" && p.Service != "" && p.HeadSHA != "" {
		p.ID = derivedID("push", p.Service, p.Repo, p.HeadSHA)
	}
}

// Validate reports every problem of the push at once.
func (p *Push) Validate() error {
	var pr problems
	p.validate(&pr, "")
	return pr.err()
}

func (p *Push) validate(pr *problems, prefix string) {
	checkID(pr, join(prefix, "id"), p.ID)
	checkName(pr, join(prefix, "service"), p.Service, true)
	checkText(pr, join(prefix, "repo"), p.Repo, 256)
	checkText(pr, join(prefix, "ref"), p.Ref, 256)
	checkText(pr, join(prefix, "before"), p.Before, 128)
	if p.HeadSHA == "" {
		pr.add(join(prefix, "head_sha"), "is required: the branch's head after the push, the sha a deploy of it names")
	}
	checkText(pr, join(prefix, "head_sha"), p.HeadSHA, 128)
	p.PushedAt.check(pr, join(prefix, "pushed_at"), true)
	switch {
	case len(p.Commits) == 0:
		pr.add(join(prefix, "commits"), "is required: at least one commit with its sha and time")
	case len(p.Commits) > maxCommits:
		pr.addf(join(prefix, "commits"), "has %d commits; the limit is %d", len(p.Commits), maxCommits)
	}
	for i, c := range p.Commits {
		cp := join(prefix, "commits") + "[" + itoa(i) + "]"
		if c.SHA == "" {
			pr.add(join(cp, "sha"), "is required")
		}
		checkText(pr, join(cp, "sha"), c.SHA, 128)
		// A push's commits exist to give lead time their times.
		c.Time.check(pr, join(cp, "time"), true)
		checkText(pr, join(cp, "author"), c.Author, 256)
		checkText(pr, join(cp, "message"), c.Message, 4096)
	}
}
