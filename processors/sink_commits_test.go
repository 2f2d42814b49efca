package processors

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
)

// TestSinkProjectsPushesIntoCommits publishes a push twice under two message
// ids (a redelivery after JetStream's deduplication window) and a later push
// of another branch head that carries one of the same commits: commits FINAL
// has one row per (push head, commit), with the commit's own time.
func TestSinkProjectsPushesIntoCommits(t *testing.T) {
	e := newEnv(t)
	at := func(s string) schema.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return schema.At(v)
	}
	feature := &schema.Push{ID: "gh-push-42-bbbb", Service: "checkout", Repo: "acme/checkout", Ref: "refs/heads/fix-cart",
		Before: "0a0a", HeadSHA: "bbbb", PushedAt: at("2026-11-19T18:00:00Z"),
		Commits: []schema.Commit{
			// An old commit rebased onto the branch: another year, another partition of nothing.
			{SHA: "aaaa", Time: at("2024-02-29T09:15:00Z"), Author: "li.wei", Message: "cart: keep the basket on reload"},
			{SHA: "bbbb", Time: at("2026-11-19T17:12:44Z"), Author: "ana.souza", Message: "cart: test the reload"},
		}}
	merge := &schema.Push{ID: "gh-push-42-cccc", Service: "checkout", Repo: "acme/checkout", Ref: "refs/heads/main",
		Before: "9999", HeadSHA: "cccc", PushedAt: at("2026-11-20T10:00:00Z"),
		Commits: []schema.Commit{
			{SHA: "bbbb", Time: at("2026-11-19T17:12:44Z"), Author: "ana.souza", Message: "cart: test the reload"},
			{SHA: "cccc", Time: at("2026-11-20T09:59:30Z"), Author: "ana.souza", Message: "Merge pull request #7"},
		}}
	var msgs []schema.Message
	for i, p := range []*schema.Push{feature, feature, merge} {
		p.Normalize()
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		data, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		// Distinct message ids, so that JetStream keeps both copies and the
		// table must deduplicate.
		msgs = append(msgs, schema.Message{Subject: schema.Subject(p), ID: fmt.Sprintf("%s-copy-%d", p.EventID(), i), Data: data})
	}
	if err := e.pub.Publish(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	stop := runSink(t, e, SinkConfig{FlushInterval: 100 * time.Millisecond})
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		n := e.count(t, "SELECT count() FROM commits WHERE service = 'checkout'")
		return n == 6, fmt.Sprintf("%d of 6 commit rows written", n)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := e.count(t, "SELECT count() FROM commits FINAL WHERE service = 'checkout'"); n != 4 {
		t.Fatalf("%d rows in commits FINAL, want 4: one per push head and commit", n)
	}
	rows, err := e.ch.Query(context.Background(), `SELECT repo, ref, sha, commit_time, author, message, head_sha, push_id, pushed_at
		FROM commits FINAL WHERE service = ? ORDER BY pushed_at, commit_time`, "checkout")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type row struct {
		repo, ref, sha              string
		commitTime                  time.Time
		author, message, head, push string
		pushedAt                    time.Time
	}
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.repo, &r.ref, &r.sha, &r.commitTime, &r.author, &r.message, &r.head, &r.push, &r.pushedAt); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var want []row
	for _, p := range []*schema.Push{feature, merge} {
		for _, c := range p.Commits {
			want = append(want, row{p.Repo, p.Ref, c.SHA, c.Time.Time, c.Author, c.Message, p.HeadSHA, p.ID, p.PushedAt.Time})
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got rows\n%+v\nwant\n%+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.repo != w.repo || g.ref != w.ref || g.sha != w.sha || !g.commitTime.Equal(w.commitTime) || g.author != w.author ||
			g.message != w.message || g.head != w.head || g.push != w.push || !g.pushedAt.Equal(w.pushedAt) {
			t.Errorf("row %d: got %+v, want %+v", i, g, w)
		}
	}
	// The raw log keeps the push as it keeps every change.
	if n := e.count(t, "SELECT count() FROM events FINAL WHERE type = 'push' AND service = 'checkout'"); n != 2 {
		t.Errorf("%d push events in events FINAL, want 2", n)
	}
}
