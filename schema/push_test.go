package schema

import (
	"testing"
	"time"
)

// pushBody is a valid push that pushCases change one thing of.
const pushBody = `{"service":"checkout","repo":"acme/checkout","ref":"refs/heads/main","before":"4be1c0de","head_sha":"9f2c1e4b","pushed_at":"2026-11-20T13:58:02Z","commits":[{"sha":"77ac21f0","time":"2026-11-19T17:12:44Z","author":"li.wei","message":"cart: new layout"},{"sha":"9f2c1e4b","time":"2026-11-20T11:47:15+01:00"}]}`

// pushCases are the contract cases of push events: the decoder and
// push.schema.json (and event.schema.json) must agree on each.
func pushCases() []contractCase {
	long := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = 'a'
		}
		return string(b)
	}
	commits := func(n int) []any {
		s := make([]any, n)
		for i := range s {
			s[i] = map[string]any{"sha": "4be1c0de", "time": "2026-11-19T17:12:44Z"}
		}
		return s
	}
	p := func(name, path string, v any, fields ...string) contractCase {
		return contractCase{name: "push: " + name, route: "push", body: edit(pushBody, path, v), fields: fields}
	}
	return []contractCase{
		{name: "push with the least", route: "push", body: `{"service":"checkout","head_sha":"9f2c1e4b","pushed_at":"2026-11-20T13:58:02Z","commits":[{"sha":"9f2c1e4b","time":"2026-11-20T11:47:15Z"}]}`},
		{name: "push without anything", route: "push", body: `{}`, fields: []string{"service", "head_sha", "pushed_at", "commits"}},
		{name: "events: a push and a deploy of its head", route: "event", body: `[
			{"type":"push","service":"checkout","head_sha":"9f2c1e4b","pushed_at":"2026-11-20T13:58:02Z","commits":[{"sha":"9f2c1e4b","time":"2026-11-20T11:47:15Z"}]},
			{"type":"deploy","service":"checkout","env":"prod","version":"9f2c1e4b","status":"succeeded","finished_at":"2026-11-20T14:09:41Z"}
		]`},
		{name: "events: push without type", route: "event", body: pushBody, fields: []string{"type"}},
		{name: "events: push with a commit without time", route: "event", body: `{"type":"push","service":"checkout","head_sha":"9f2c1e4b","pushed_at":"2026-11-20T13:58:02Z","commits":[{"sha":"9f2c1e4b"}]}`, fields: []string{"commits[0].time"}},
		p("as it is", "ref", "refs/heads/main"),
		p("with id and type", "id", "gh-push-186853002-6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
		p("type push", "type", "push"),
		p("optional fields null", "repo", nil),
		p("1000 commits", "commits", commits(1000)),
		p("type deploy", "type", "deploy", "type"),
		p("no service", "service", absent, "service"),
		p("service with a slash", "service", "acme/checkout", "service"),
		p("no head_sha", "head_sha", absent, "head_sha"),
		p("empty head_sha", "head_sha", "", "head_sha"),
		p("blank head_sha", "head_sha", "  ", "head_sha"),
		p("129-byte head_sha", "head_sha", long(129), "head_sha"),
		p("129-byte before", "before", long(129), "before"),
		p("257-byte repo", "repo", long(257), "repo"),
		p("257-byte ref", "ref", long(257), "ref"),
		p("no pushed_at", "pushed_at", absent, "pushed_at"),
		p("pushed_at without a zone", "pushed_at", "2026-11-20T13:58:02", "pushed_at"),
		p("no commits", "commits", absent, "commits"),
		p("empty commits", "commits", []any{}, "commits"),
		p("1001 commits", "commits", commits(1001), "commits"),
		p("commit without time", "commits.1.time", absent, "commits[1].time"),
		p("commit with a null time", "commits.1.time", nil, "commits[1].time"),
		p("commit without sha", "commits.0.sha", absent, "commits[0].sha"),
		p("commit with an unknown field", "commits.0.athor", "li.wei", "commits[0].athor"),
		p("257-byte commit author", "commits.0.author", long(257), "commits[0].author"),
		p("4097-byte commit message", "commits.0.message", long(4097), "commits[0].message"),
		p("bad id", "id", "push 42", "id"),
		p("an env", "env", "prod", "env"),
	}
}

func TestDecodePush(t *testing.T) {
	decode := func(body string) *Push {
		t.Helper()
		var p Push
		if err := DecodeInto([]byte(body), &p, ""); err != nil {
			t.Fatalf("cannot decode push %s: %v", body, err)
		}
		return &p
	}
	a, b := decode(pushBody), decode(pushBody)
	if !uuidPattern.MatchString(a.ID) || a.ID != b.ID || a.Type != TypePush {
		t.Fatalf("ids %q and %q, type %q: want one derived UUID", a.ID, b.ID, a.Type)
	}
	if a.EventID() != a.ID || a.EventService() != "checkout" || a.EventType() != TypePush {
		t.Fatalf("event id %q, service %q, type %q", a.EventID(), a.EventService(), a.EventType())
	}
	if want := time.Date(2026, 11, 20, 13, 58, 2, 0, time.UTC); !a.EventTime().Time.Equal(want) {
		t.Fatalf("event time %v, want pushed_at %v", a.EventTime(), want)
	}
	if got, want := a.Commits[1].Time.Time, time.Date(2026, 11, 20, 10, 47, 15, 0, time.UTC); !got.Equal(want) || got.Location() != time.UTC {
		t.Fatalf("commit time %v, want %v in UTC", got, want)
	}
	// Another head is another push; a sender's own id is kept.
	if other := decode(edit(pushBody, "head_sha", "77ac21f0")); other.ID == a.ID {
		t.Fatal("another push got the same id")
	}
	if own := decode(edit(pushBody, "id", "gl-push-15-da15608")); own.ID != "gl-push-15-da15608" || own.EventID() != own.ID {
		t.Fatalf("id %q, event id %q", own.ID, own.EventID())
	}
	// Through POST /api/v1/events, type names it.
	ev, err := DecodeEvent([]byte(edit(pushBody, "type", "push")), "")
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := ev.(*Push); !ok || p.ID != a.ID || Subject(p) != "deploywatch.changes.push.checkout" {
		t.Fatalf("decoded %T %+v", ev, ev)
	}
}
