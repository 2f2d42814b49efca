package store_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/deploywatch/deploywatch/store"
)

// The fixed history of TestDora, in four weeks (Mondays 2026-02-23, 03-02,
// 03-09, 03-16) and the week before them. "Now" is Wednesday 2026-03-18
// 12:00 UTC. Teams: checkout is payments, search is discovery.
var (
	w0 = time.Date(2026, 2, 16, 0, 0, 0, 0, time.UTC)
	w1 = w0.AddDate(0, 0, 7)
	w2 = w0.AddDate(0, 0, 14)
	w3 = w0.AddDate(0, 0, 21)
	w4 = w0.AddDate(0, 0, 28)
	// doraNow is Wednesday of w4, 12:00.
	doraNow = w4.Add(2*24*time.Hour + 12*time.Hour)
)

// at is day d (0 = Monday) of week w at hh:mm.
func at(w time.Time, d, hh, mm int) time.Time {
	return w.Add(time.Duration(d)*24*time.Hour + time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute)
}

// doraChange is one row of deploy_changes.
type doraChange struct {
	id, service, env, version string
	status                    schema.DeployStatus
	started, finished         time.Time
	commits                   []schema.Commit
}

func commit(sha string, t time.Time) schema.Commit {
	return schema.Commit{SHA: sha, Time: schema.At(t)}
}

// insertDoraDeploys writes deploy changes with the sink's columns and
// conventions: a commit without a time is the epoch, labels sorted by key.
func insertDoraDeploys(t *testing.T, conn driver.Conn, changes ...doraChange) {
	t.Helper()
	batch, err := conn.PrepareBatch(context.Background(), `INSERT INTO deploy_changes (deploy_id, status, status_rank, service, env, version,
		event_time, started_at, finished_at, url, label_keys, label_values, commit_shas, commit_times)`)
	if err != nil {
		t.Fatal(err)
	}
	teams := map[string]string{"checkout": "payments", "search": "discovery"}
	for _, c := range changes {
		var started, finished *time.Time
		if !c.started.IsZero() {
			started = &c.started
		}
		if !c.finished.IsZero() {
			finished = &c.finished
		}
		eventTime := c.finished
		if c.status == schema.DeployStarted {
			eventTime = c.started
		}
		shas, times := []string{}, []time.Time{}
		for _, cm := range c.commits {
			shas = append(shas, cm.SHA)
			if cm.Time.IsZero() {
				times = append(times, time.Unix(0, 0).UTC())
			} else {
				times = append(times, cm.Time.Time)
			}
		}
		keys, values := []string{"repo", "team"}, []string{c.service, teams[c.service]}
		if c.status == schema.DeployRolledBack { // as the rollback agent reports it: its own labels only
			keys, values = []string{"rollback_agent"}, []string{"agent-1"}
		}
		if err := batch.Append(c.id, string(c.status), c.status.Rank(), c.service, c.env, c.version, eventTime, started, finished,
			"https://ci.example.com/"+c.id, keys, values, shas, times); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("cannot insert deploy changes: %v", err)
	}
}

// insertDoraVerdicts writes verdicts with the columns the DORA views read.
func insertDoraVerdicts(t *testing.T, conn driver.Conn, deployID string, verdicts ...struct {
	at     time.Time
	status schema.VerdictStatus
	final  uint8
	reason string
}) {
	t.Helper()
	batch, err := conn.PrepareBatch(context.Background(), "INSERT INTO deploy_verdicts (id, deploy_id, service, env, status, final, reason, evaluated_at, body, received_at)")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range verdicts {
		id := fmt.Sprintf("%s:verdict:%d", deployID, v.at.Unix())
		if err := batch.Append(id, deployID, "x", "production", string(v.status), v.final, v.reason, v.at, "{}", v.at); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("cannot insert verdicts: %v", err)
	}
}

type pushedCommit struct {
	sha string
	at  time.Time
}

// insertPush writes one push's commits as the push webhooks do.
func insertPush(t *testing.T, conn driver.Conn, service, pushID, head string, commits ...pushedCommit) {
	t.Helper()
	batch, err := conn.PrepareBatch(context.Background(), "INSERT INTO commits (service, repo, ref, sha, commit_time, author, message, head_sha, push_id, pushed_at)")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range commits {
		if err := batch.Append(service, "acme/"+service, "refs/heads/main", c.sha, c.at, "dev", "change "+c.sha, head, pushID, commits[len(commits)-1].at); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("cannot insert push %s: %v", pushID, err)
	}
}

func incidentChange(id, service, env string, status schema.IncidentStatus, t time.Time, deployID string) schema.Incident {
	return schema.Incident{ID: id, Type: schema.TypeIncident, Service: service, Env: env, Status: status,
		Time: schema.At(t), Title: "incident " + id, Source: "alertmanager", DeployID: deployID}
}

func seedDora(t *testing.T, conn driver.Conn) {
	t.Helper()
	const prod, staging = "production", "staging"
	ok, failed, rolledBack := schema.DeploySucceeded, schema.DeployFailed, schema.DeployRolledBack
	c2 := commit("c2", at(w1, 0, 10, 0))
	insertDoraDeploys(t, conn,
		// The week before the window: only the frequency band sees it.
		doraChange{id: "d0", service: "checkout", env: prod, version: "v1.0.0", status: ok, started: at(w0, 2, 9, 50), finished: at(w0, 2, 10, 0),
			commits: []schema.Commit{commit("c0", at(w0, 2, 9, 0))}},

		// w1. d1 ships c1 and c2; d2 ships c2 again (counted at d1) and c3,
		// and gets a bad verdict; d3 fails and so does not ship c10; a
		// staging deploy of c1 before d1 counts only in staging.
		doraChange{id: "d1", service: "checkout", env: prod, version: "v1.1.0", status: schema.DeployStarted, started: at(w1, 1, 9, 50)},
		doraChange{id: "d1", service: "checkout", env: prod, version: "v1.1.0", status: ok, started: at(w1, 1, 9, 50), finished: at(w1, 1, 10, 0),
			commits: []schema.Commit{commit("c1", at(w1, 1, 8, 0)), c2}},
		doraChange{id: "dstg", service: "checkout", env: staging, version: "v1.1.0", status: ok, finished: at(w1, 1, 9, 0),
			commits: []schema.Commit{commit("c1", at(w1, 1, 8, 0))}},
		doraChange{id: "d2", service: "checkout", env: prod, version: "v1.2.0", status: ok, finished: at(w1, 3, 10, 0),
			commits: []schema.Commit{c2, commit("c3", at(w1, 3, 9, 0))}},
		doraChange{id: "d3", service: "search", env: prod, version: "v3.0.0", status: failed, finished: at(w1, 2, 15, 0),
			commits: []schema.Commit{commit("c10", at(w1, 2, 14, 0))}},

		// w2 has no deploy.

		// w3. d4 goes live, an incident opens, it is rolled back; c5's time
		// is after the deploy (clock skew). d5 ships c10 and names two
		// commits by sha only: a1b2c3d4e5, the head of push p1 (p1 and
		// itself), and e5e5e5e5, a commit of push p0 whose head was never
		// deployed. d6 ships no commits.
		doraChange{id: "d4", service: "checkout", env: prod, version: "v1.3.0", status: ok, started: at(w3, 0, 8, 50), finished: at(w3, 0, 9, 0),
			commits: []schema.Commit{commit("c4", at(w2, 4, 9, 0)), commit("c5", at(w3, 0, 10, 0))}},
		doraChange{id: "d4", service: "checkout", env: prod, version: "v1.2.0", status: rolledBack, finished: at(w3, 0, 9, 30)},
		doraChange{id: "d5", service: "search", env: prod, version: "v3.1.0", status: ok, finished: at(w3, 2, 12, 0),
			commits: []schema.Commit{commit("c10", at(w1, 2, 14, 0)), {SHA: "a1b2c3d4e5"}, {SHA: "e5e5e5e5"}}},
		doraChange{id: "d6", service: "checkout", env: prod, version: "v1.3.1", status: ok, finished: at(w3, 4, 16, 0)},

		// w4. d7 names only its version, the head of push p2. d8 ships c2 a
		// third time and c7. d9 finishes after now; d12 has only started.
		// d13 fails and its pipeline rolls it back: it never went live, so
		// it is a deploy but not a production one, not a failed change, and
		// does not ship c12.
		doraChange{id: "d7", service: "search", env: prod, version: "f00dfeed99", status: ok, finished: at(w4, 0, 10, 0)},
		doraChange{id: "d13", service: "search", env: prod, version: "v3.2.0", status: failed, finished: at(w4, 0, 15, 0),
			commits: []schema.Commit{commit("c12", at(w4, 0, 14, 0))}},
		doraChange{id: "d13", service: "search", env: prod, version: "v3.1.0", status: rolledBack, finished: at(w4, 0, 15, 20)},
		doraChange{id: "d8", service: "checkout", env: prod, version: "v1.4.0", status: ok, finished: at(w4, 1, 10, 0),
			commits: []schema.Commit{c2, commit("c7", at(w4, 1, 9, 30))}},
		doraChange{id: "d10", service: "checkout", env: prod, version: "v1.4.1", status: ok, finished: at(w4, 1, 14, 0),
			commits: []schema.Commit{commit("c8", at(w4, 1, 13, 0))}},
		doraChange{id: "d11", service: "checkout", env: prod, version: "v1.4.2", status: ok, finished: at(w4, 2, 9, 0),
			commits: []schema.Commit{commit("c9", at(w4, 2, 8, 59))}},
		doraChange{id: "d9", service: "checkout", env: prod, version: "v1.5.0", status: ok, finished: at(w4, 2, 13, 0),
			commits: []schema.Commit{commit("c11", at(w4, 2, 12, 30))}},
		doraChange{id: "d12", service: "checkout", env: prod, version: "v1.6.0", status: schema.DeployStarted, started: at(w4, 2, 11, 0)},
	)

	type v = struct {
		at     time.Time
		status schema.VerdictStatus
		final  uint8
		reason string
	}
	// d2: the final verdict is bad; an interim one after it does not change that.
	insertDoraVerdicts(t, conn, "d2",
		v{at(w1, 3, 10, 5), schema.VerdictPending, 0, "collecting"},
		v{at(w1, 3, 10, 35), schema.VerdictBad, 1, "error ratio 4.1% vs 0.3%"},
		v{at(w1, 3, 10, 50), schema.VerdictPending, 0, "late evaluation"})
	// d5: an early bad call overruled by the final healthy verdict.
	insertDoraVerdicts(t, conn, "d5",
		v{at(w3, 2, 12, 10), schema.VerdictBad, 0, "early: p99 up"},
		v{at(w3, 2, 12, 40), schema.VerdictHealthy, 1, "no regression"})

	p1 := []pushedCommit{{"p1", at(w3, 1, 12, 0)}, {"a1b2c3d4e5", at(w3, 2, 0, 0)}}
	insertPush(t, conn, "search", "push-p0", "9999aaaa", pushedCommit{"e5e5e5e5", at(w3, 2, 6, 0)}, pushedCommit{"9999aaaa", at(w3, 2, 7, 0)})
	insertPush(t, conn, "search", "push-p1", "a1b2c3d4e5", p1...)
	insertPush(t, conn, "search", "push-p1", "a1b2c3d4e5", p1...) // redelivered
	insertPush(t, conn, "search", "push-p2", "f00dfeed99", pushedCommit{"q1", at(w3, 6, 10, 0)}, pushedCommit{"f00dfeed99", at(w4, 0, 9, 0)})

	opened, resolved := schema.IncidentOpened, schema.IncidentResolved
	insertIncidents(t, conn,
		// w2: no deploy; 30 minutes.
		incidentChange("i1", "checkout", prod, opened, at(w2, 1, 10, 0), ""),
		incidentChange("i1", "checkout", prod, resolved, at(w2, 1, 10, 30), ""),
		// w3: caused by d4; 40 minutes.
		incidentChange("i2", "checkout", prod, opened, at(w3, 0, 9, 10), "d4"),
		incidentChange("i2", "checkout", prod, resolved, at(w3, 0, 9, 50), ""),
		// Opened in w3 (Sunday 22:00) by d5, resolved in w4 (Monday 01:00).
		incidentChange("i3", "search", prod, opened, at(w3, 6, 22, 0), "d5"),
		incidentChange("i3", "search", prod, resolved, at(w4, 0, 1, 0), "d5"),
		// Staging, a minute.
		incidentChange("istg", "checkout", staging, opened, at(w3, 1, 10, 0), ""),
		incidentChange("istg", "checkout", staging, resolved, at(w3, 1, 10, 1), ""),
		// w4: still open; a resolve whose opened change never came.
		incidentChange("i4", "checkout", prod, opened, at(w4, 1, 8, 0), ""),
		incidentChange("i5", "checkout", prod, resolved, at(w4, 1, 9, 0), ""),
	)
}

// wantWeek is a week's expected figures; nil pointers mean null.
type wantWeek struct {
	start                                time.Time
	deploys, freq, days, failures        int
	cfr                                  *float64
	leadP50, leadP90, mttrP50, mttrP90   *float64
	commits, incidents                   int
	bandFreq, bandLead, bandCFR, bandMTT string
}

func num(v float64) *float64 { return &v }

func sameFloat(a, b *float64) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return math.Abs(*a-*b) < 1e-6
}

func show(p *float64) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprint(*p)
}

func checkWeeks(t *testing.T, name string, got []schema.DoraWeek, want ...wantWeek) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d weeks, want %d: %+v", name, len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		var problems []string
		check := func(field string, ok bool, got, want any) {
			if !ok {
				problems = append(problems, fmt.Sprintf("%s = %v, want %v", field, got, want))
			}
		}
		check("week_start", g.WeekStart.Equal(w.start) && g.WeekStart.Location() == time.UTC, g.WeekStart, w.start)
		check("deploys", g.Deploys == w.deploys, g.Deploys, w.deploys)
		check("deploy_frequency", g.DeployFrequency == w.freq, g.DeployFrequency, w.freq)
		check("deploy_days", g.DeployDays == w.days, g.DeployDays, w.days)
		check("failures", g.Failures == w.failures, g.Failures, w.failures)
		check("change_failure_rate", sameFloat(g.ChangeFailureRate, w.cfr), show(g.ChangeFailureRate), show(w.cfr))
		check("lead_time_s.p50", sameFloat(g.LeadTimeS.P50, w.leadP50), show(g.LeadTimeS.P50), show(w.leadP50))
		check("lead_time_s.p90", sameFloat(g.LeadTimeS.P90, w.leadP90), show(g.LeadTimeS.P90), show(w.leadP90))
		check("mttr_s.p50", sameFloat(g.MTTRS.P50, w.mttrP50), show(g.MTTRS.P50), show(w.mttrP50))
		check("mttr_s.p90", sameFloat(g.MTTRS.P90, w.mttrP90), show(g.MTTRS.P90), show(w.mttrP90))
		check("commits", g.Commits == w.commits, g.Commits, w.commits)
		check("incidents", g.Incidents == w.incidents, g.Incidents, w.incidents)
		wantBands := schema.DoraBands{DeployFrequency: w.bandFreq, LeadTime: w.bandLead, ChangeFailureRate: w.bandCFR, MTTR: w.bandMTT}
		check("bands", g.Bands == wantBands, g.Bands, wantBands)
		if len(problems) > 0 {
			t.Errorf("%s, week of %s:\n\t%s", name, w.start.Format(time.DateOnly), strings.Join(problems, "\n\t"))
		}
	}
}

func TestDora(t *testing.T) {
	conn := migrated(t)
	ctx := context.Background()
	seedDora(t, conn)
	dora := store.NewDora(conn)
	report := func(f schema.DoraFilter) schema.DoraReport {
		t.Helper()
		r, err := dora.Report(ctx, f)
		if err != nil {
			t.Fatalf("Report(%+v): %v", f, err)
		}
		return r
	}

	// Production, every service, the four weeks up to now.
	//
	// w1: d1, d2 reached production, d3 failed: deploys 3, frequency 2, on
	// Tuesday and Thursday; d2's bad verdict is the one failure: 1/2. Lead
	// times: c1 10:00−08:00 = 7200, c2 Tue 10:00 − Mon 10:00 = 86400 (at d1;
	// d2 and d8 ship it again), c3 10:00−09:00 = 3600. Sorted 3600, 7200,
	// 86400: p50 = 7200, p90 at rank 0.9×2 = 1.8: 7200 + 0.8×79200 = 70560.
	// No incident. Bands: high (1..6 a week), elite (< 1 day), low (> 15%).
	//
	// w2: no deploy: zeros and nulls; the frequency is medium because w1 had
	// deploys (one within 4 weeks). i1 opened and resolved: 1800 s, elite.
	//
	// w3: d4 (rolled back, and i2 names it), d5 (i3 names it; its early bad
	// call was overruled by the final healthy verdict), d6 (clean, no
	// commits): 3 deploys on Mon, Wed, Fri, 2 failures: 2/3. Lead times: c4
	// Fri 09:00 → Mon 09:00 = 259200 (c5 is after d4: dropped); at d5,
	// Wed 12:00: c10 from w1 Wed 14:00 = 14 days − 2 h = 1202400 (d3 failed,
	// so d5 is its first production deploy), p1 Tue 12:00 = 86400,
	// a1b2c3d4e5 00:00 = 43200, e5e5e5e5 06:00 = 21600 (not 9999aaaa: the
	// head of its push was never deployed). Sorted 21600, 43200, 86400,
	// 259200, 1202400: p50 = 86400, p90 at rank 3.6: 259200 + 0.6×943200 =
	// 825120. Incidents opened: i2, i3 (istg is staging). Resolved: i2,
	// 09:10 → 09:50 = 2400 (i3 resolves in w4). Bands: high, high (a median
	// of exactly one day is not under one day), low, elite.
	//
	// w4 (up to Wednesday 12:00; d9 finishes after, d12 has not finished):
	// 5 deploys, d13 failed and rolled back (not live: not in the frequency,
	// not a failure, c12 not shipped); d7, d8, d10, d11 went live on Mon,
	// Tue, Tue, Wed, none failed: 0. Lead times: at
	// d7 (push p2 by its version) q1 Sun 10:00 → Mon 10:00 = 86400 and
	// f00dfeed99 09:00 = 3600; c7 1800; c8 3600; c9 60. Sorted 60, 1800,
	// 3600, 3600, 86400: p50 3600, p90 3600 + 0.6×82800 = 53280. Incidents
	// opened: i4 (open). Resolved: i3 Sun 22:00 → Mon 01:00 = 10800 (i5
	// never opened). Bands: high, elite, elite (0%), high (< 1 day).
	all := report(schema.DoraFilter{Weeks: 4, Now: doraNow})
	if all.Env != "production" || all.Service != "" || all.Team != "" || !all.NotableFrom.Equal(w3) {
		t.Errorf("report of %q/%q/%q notable from %s, want production, all services and teams, from %s",
			all.Env, all.Service, all.Team, all.NotableFrom, w3)
	}
	checkWeeks(t, "production", all.Weeks,
		wantWeek{start: w1, deploys: 3, freq: 2, days: 2, failures: 1, cfr: num(0.5), leadP50: num(7200), leadP90: num(70560), commits: 3,
			bandFreq: "high", bandLead: "elite", bandCFR: "low"},
		wantWeek{start: w2, mttrP50: num(1800), mttrP90: num(1800), incidents: 1, bandFreq: "medium", bandMTT: "elite"},
		wantWeek{start: w3, deploys: 3, freq: 3, days: 3, failures: 2, cfr: num(2.0 / 3), leadP50: num(86400), leadP90: num(825120), commits: 5,
			incidents: 2, mttrP50: num(2400), mttrP90: num(2400), bandFreq: "high", bandLead: "high", bandCFR: "low", bandMTT: "elite"},
		wantWeek{start: w4, deploys: 5, freq: 4, days: 3, failures: 0, cfr: num(0), leadP50: num(3600), leadP90: num(53280), commits: 5,
			incidents: 1, mttrP50: num(10800), mttrP90: num(10800), bandFreq: "high", bandLead: "elite", bandCFR: "elite", bandMTT: "high"},
	)

	// Notable, w3 and w4: the failures d4 (rolled back, i2) and d5 (i3),
	// and the 5 slowest of the lead times, each deploy's longest: d5
	// 1202400, d4 259200, d7 86400, d10 3600, d8 1800 (not d11, 60; d6 has
	// no commits). Newest first.
	type wantNotable struct {
		id       string
		reasons  string
		lead     *float64
		incident string
		verdict  string
	}
	checkNotable := func(name string, got []schema.NotableDeploy, want ...wantNotable) {
		t.Helper()
		var g []wantNotable
		for _, nd := range got {
			g = append(g, wantNotable{nd.DeployID, strings.Join(nd.Reasons, ","), nd.LeadTimeS, nd.IncidentID, nd.VerdictStatus + ": " + nd.VerdictReason})
		}
		same := len(g) == len(want)
		for i := 0; same && i < len(g); i++ {
			same = g[i].id == want[i].id && g[i].reasons == want[i].reasons && sameFloat(g[i].lead, want[i].lead) &&
				g[i].incident == want[i].incident && g[i].verdict == want[i].verdict
		}
		if !same {
			t.Errorf("%s: notable deploys\n got %+v\nwant %+v", name, g, want)
		}
	}
	checkNotable("production", all.Notable,
		wantNotable{"d10", "slow_lead_time", num(3600), "", ": "},
		wantNotable{"d8", "slow_lead_time", num(1800), "", ": "},
		wantNotable{"d7", "slow_lead_time", num(86400), "", ": "},
		wantNotable{"d5", "incident,slow_lead_time", num(1202400), "i3", "healthy: no regression"},
		wantNotable{"d4", "rolled_back,incident,slow_lead_time", num(259200), "i2", ": "},
	)
	for _, nd := range all.Notable {
		if nd.DeployID == "d4" && (nd.Service != "checkout" || nd.Env != "production" || nd.Team != "payments" || nd.Version != "v1.3.0" ||
			nd.Status != "rolled_back" || !nd.FinishedAt.Equal(at(w3, 0, 9, 0)) || nd.URL != "https://ci.example.com/d4") {
			t.Errorf("notable d4: %+v", nd)
		}
	}

	// Two weeks up to Wednesday of w2: notable from w1. d2's bad verdict
	// (its own longest new commit is c3, 3600) and d1's lead time.
	early := report(schema.DoraFilter{Weeks: 2, Now: at(w2, 2, 12, 0)})
	checkWeeks(t, "production up to w2", early.Weeks,
		wantWeek{start: w1, deploys: 3, freq: 2, days: 2, failures: 1, cfr: num(0.5), leadP50: num(7200), leadP90: num(70560), commits: 3,
			bandFreq: "high", bandLead: "elite", bandCFR: "low"},
		wantWeek{start: w2, incidents: 1, mttrP50: num(1800), mttrP90: num(1800), bandFreq: "medium", bandMTT: "elite"},
	)
	checkNotable("production up to w2", early.Notable,
		wantNotable{"d2", "bad_verdict,slow_lead_time", num(3600), "", "bad: error ratio 4.1% vs 0.3%"},
		wantNotable{"d1", "slow_lead_time", num(86400), "", ": "},
	)

	// Team payments (checkout): d3 and d5, d7 are discovery's; incidents
	// count by the linked deploy's team, so i1, i4 (no deploy) and i3 (d5)
	// do not. w3: d4, d6 with d4 failed; lead time c4 only. w4: d8, d10,
	// d11 on Tue, Tue, Wed; 60, 1800, 3600: p50 1800, p90 1800 + 0.8×1800.
	payments := report(schema.DoraFilter{Weeks: 4, Now: doraNow, Team: "payments"})
	checkWeeks(t, "team payments", payments.Weeks,
		wantWeek{start: w1, deploys: 2, freq: 2, days: 2, failures: 1, cfr: num(0.5), leadP50: num(7200), leadP90: num(70560), commits: 3,
			bandFreq: "high", bandLead: "elite", bandCFR: "low"},
		wantWeek{start: w2, bandFreq: "medium"},
		wantWeek{start: w3, deploys: 2, freq: 2, days: 2, failures: 1, cfr: num(0.5), leadP50: num(259200), leadP90: num(259200), commits: 1,
			incidents: 1, mttrP50: num(2400), mttrP90: num(2400), bandFreq: "high", bandLead: "high", bandCFR: "low", bandMTT: "elite"},
		wantWeek{start: w4, deploys: 3, freq: 3, days: 2, cfr: num(0), leadP50: num(1800), leadP90: num(3240), commits: 3,
			bandFreq: "high", bandLead: "elite", bandCFR: "elite"},
	)
	checkNotable("team payments", payments.Notable,
		wantNotable{"d11", "slow_lead_time", num(60), "", ": "},
		wantNotable{"d10", "slow_lead_time", num(3600), "", ": "},
		wantNotable{"d8", "slow_lead_time", num(1800), "", ": "},
		wantNotable{"d4", "rolled_back,incident,slow_lead_time", num(259200), "i2", ": "},
	)

	// Service search: w1 only the failed d3, so no production deploy and no
	// deploy in the 4 weeks up to w2 either: low. w3: d5's four commits
	// 21600, 43200, 86400, 1202400: p50 43200 + 0.5×43200 = 64800, p90 at
	// rank 2.7: 86400 + 0.7×1116000 = 867600; i3 opened. w4: d7 and d13
	// (failed, rolled back: not live); d7's 3600 and 86400: p50 45000, p90
	// 3600 + 0.9×82800 = 78120; i3 resolved.
	search := report(schema.DoraFilter{Weeks: 4, Now: doraNow, Service: "search"})
	checkWeeks(t, "service search", search.Weeks,
		wantWeek{start: w1, deploys: 1, bandFreq: "low"},
		wantWeek{start: w2, bandFreq: "low"},
		wantWeek{start: w3, deploys: 1, freq: 1, days: 1, failures: 1, cfr: num(1), leadP50: num(64800), leadP90: num(867600), commits: 4,
			incidents: 1, bandFreq: "high", bandLead: "elite", bandCFR: "low"},
		wantWeek{start: w4, deploys: 2, freq: 1, days: 1, cfr: num(0), leadP50: num(45000), leadP90: num(78120), commits: 2,
			mttrP50: num(10800), mttrP90: num(10800), bandFreq: "high", bandLead: "elite", bandCFR: "elite", bandMTT: "high"},
	)

	// Staging is its own env: its deploy of c1 at 09:00 is 3600, and istg.
	stg := report(schema.DoraFilter{Weeks: 4, Now: doraNow, Env: "staging"})
	checkWeeks(t, "staging", stg.Weeks,
		wantWeek{start: w1, deploys: 1, freq: 1, days: 1, cfr: num(0), leadP50: num(3600), leadP90: num(3600), commits: 1,
			bandFreq: "high", bandLead: "elite", bandCFR: "elite"},
		wantWeek{start: w2, bandFreq: "medium"},
		wantWeek{start: w3, incidents: 1, mttrP50: num(60), mttrP90: num(60), bandFreq: "medium", bandMTT: "elite"},
		wantWeek{start: w4, bandFreq: "medium"},
	)

	// One week: the current one only, notable included.
	one := report(schema.DoraFilter{Weeks: 1, Now: doraNow})
	if len(one.Weeks) != 1 || one.Weeks[0].DeployFrequency != 4 || !one.NotableFrom.Equal(w4) || len(one.Notable) != 4 {
		t.Errorf("one week: %+v, notable from %s: %+v; want w4 with 4 deploys and 4 notable", one.Weeks, one.NotableFrom, one.Notable)
	}

	// Unknown names and names with quotes are values: nothing, not an error.
	for _, f := range []schema.DoraFilter{{Service: "x' OR '1'='1"}, {Team: "nobody"}, {Env: "qa"}} {
		f.Weeks, f.Now = 4, doraNow
		r := report(f)
		for _, w := range r.Weeks {
			if w.Deploys != 0 || w.Incidents != 0 || w.Commits != 0 || w.MTTRS.P50 != nil {
				t.Errorf("%+v: week %+v, want nothing", f, w)
			}
		}
		if len(r.Weeks) != 4 || r.Notable == nil || len(r.Notable) != 0 {
			t.Errorf("%+v: %d weeks and notable %v, want 4 empty weeks and an empty list", f, len(r.Weeks), r.Notable)
		}
	}

	// Defaults: 12 weeks up to the current one.
	def, err := dora.Report(ctx, schema.DoraFilter{})
	if err != nil || len(def.Weeks) != 12 || def.Env != "production" || !def.Weeks[11].WeekStart.Add(7*24*time.Hour).After(time.Now()) {
		t.Errorf("the default report: %d weeks, env %q, %v", len(def.Weeks), def.Env, err)
	}
}

// TestDoraViews checks the views the dashboards query, row by row.
func TestDoraViews(t *testing.T) {
	conn := migrated(t)
	ctx := context.Background()
	seedDora(t, conn)

	rows := func(query string) []string {
		t.Helper()
		r, err := conn.Query(ctx, query)
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		defer r.Close()
		var out []string
		for r.Next() {
			var s string
			if err := r.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := func(query string, want ...string) {
		t.Helper()
		if got := rows(query); !slices.Equal(got, want) {
			t.Errorf("%s:\n got %q\nwant %q", query, got, want)
		}
	}

	// deploy_id env status team week day reached rolled_back bad incident failure
	want(`SELECT concat(deploy_id, ' ', env, ' ', status, ' ', team, ' ', toString(week_start), ' ', toString(day), ' ',
			toString(reached_production), toString(rolled_back), toString(bad_verdict), toString(incident), toString(failure))
		FROM dora_deploys ORDER BY finished_at, deploy_id`,
		"d0 production succeeded payments 2026-02-16 2026-02-18 10000",
		"dstg staging succeeded payments 2026-02-23 2026-02-24 10000",
		"d1 production succeeded payments 2026-02-23 2026-02-24 10000",
		"d3 production failed discovery 2026-02-23 2026-02-25 00000",
		"d2 production succeeded payments 2026-02-23 2026-02-26 10101",
		"d4 production rolled_back payments 2026-03-09 2026-03-09 11011",
		"d5 production succeeded discovery 2026-03-09 2026-03-11 10011",
		"d6 production succeeded payments 2026-03-09 2026-03-13 10000",
		"d7 production succeeded discovery 2026-03-16 2026-03-16 10000",
		"d13 production rolled_back discovery 2026-03-16 2026-03-16 01000",
		"d8 production succeeded payments 2026-03-16 2026-03-17 10000",
		"d10 production succeeded payments 2026-03-16 2026-03-17 10000",
		"d11 production succeeded payments 2026-03-16 2026-03-18 10000",
		"d9 production succeeded payments 2026-03-16 2026-03-18 10000",
	)
	// Each commit once per env, at its first production deploy.
	want(`SELECT concat(env, ' ', sha, ' ', deploy_id, ' ', team, ' ', toString(week_start), ' ', toString(lead_time_s))
		FROM dora_lead_times ORDER BY env, finished_at, sha`,
		"production c0 d0 payments 2026-02-16 3600",
		"production c1 d1 payments 2026-02-23 7200",
		"production c2 d1 payments 2026-02-23 86400",
		"production c3 d2 payments 2026-02-23 3600",
		"production c4 d4 payments 2026-03-09 259200",
		"production a1b2c3d4e5 d5 discovery 2026-03-09 43200",
		"production c10 d5 discovery 2026-03-09 1202400",
		"production e5e5e5e5 d5 discovery 2026-03-09 21600",
		"production p1 d5 discovery 2026-03-09 86400",
		"production f00dfeed99 d7 discovery 2026-03-16 3600",
		"production q1 d7 discovery 2026-03-16 86400",
		"production c7 d8 payments 2026-03-16 1800",
		"production c8 d10 payments 2026-03-16 3600",
		"production c9 d11 payments 2026-03-16 60",
		"production c11 d9 payments 2026-03-16 1800",
		"staging c1 dstg payments 2026-02-23 3600",
	)
	want(`SELECT concat(incident_id, ' ', env, ' ', team, ' ', deploy_id, ' ', toString(week_start), ' ', toString(restore_s))
		FROM dora_restores ORDER BY resolved_at`,
		"i1 production   2026-03-02 1800",
		"i2 production payments d4 2026-03-09 2400",
		"istg staging   2026-03-09 60",
		"i3 production discovery d5 2026-03-16 10800",
	)
	want(`SELECT concat(incident_id, ' ', toString(week_start), ' ', toString(resolved_at IS NULL)) FROM dora_incidents ORDER BY opened_at`,
		"i1 2026-03-02 0", "i2 2026-03-09 0", "istg 2026-03-09 0", "i3 2026-03-09 0", "i4 2026-03-16 1")
}

func TestDoraWhenClickHouseFails(t *testing.T) {
	conn := migrated(t)
	if err := conn.Exec(context.Background(), "DROP TABLE dora_lead_times"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.NewDora(conn).Report(context.Background(), schema.DoraFilter{}); err == nil || !strings.Contains(err.Error(), "lead times") {
		t.Fatalf("Report without the dora_lead_times view: %v, want an error about lead times", err)
	}
}

// A bad deploy rolled back gets a later final recovery verdict, healthy once
// the service recovered: that judges the service, not the deploy, which
// stays bad in dora_deploys.
func TestDoraDeployKeepsItsOwnVerdictAfterRecovery(t *testing.T) {
	conn := migrated(t)
	insertDoraDeploys(t, conn,
		doraChange{id: "r1", service: "checkout", env: "production", version: "v2", status: schema.DeploySucceeded, finished: at(w4, 0, 10, 0)},
		doraChange{id: "r1", service: "checkout", env: "production", version: "v1", status: schema.DeployRolledBack, finished: at(w4, 0, 10, 30)})
	batch, err := conn.PrepareBatch(context.Background(), "INSERT INTO deploy_verdicts (id, deploy_id, service, env, status, final, reason, comparison, evaluated_at, body, received_at)")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []struct {
		id, status, reason, comparison string
		at                             time.Time
	}{
		{"r1:verdict:1", "bad", "error ratio 5.0% vs 0.2%", "before_vs_after", at(w4, 0, 10, 20)},
		{"r1:recovery:1", "healthy", "recovered", "recovery_vs_baseline", at(w4, 0, 10, 40)},
	} {
		if err := batch.Append(v.id, "r1", "checkout", "production", v.status, uint8(1), v.reason, v.comparison, v.at, "{}", v.at); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	var status, reason string
	var bad, failure uint8
	if err := conn.QueryRow(context.Background(), "SELECT verdict_status, verdict_reason, bad_verdict, failure FROM dora_deploys WHERE deploy_id = 'r1'").
		Scan(&status, &reason, &bad, &failure); err != nil {
		t.Fatal(err)
	}
	if status != "bad" || reason != "error ratio 5.0% vs 0.2%" || bad != 1 || failure != 1 {
		t.Fatalf("dora_deploys has %q %q bad_verdict %d failure %d, want the deploy's own bad verdict and a failure", status, reason, bad, failure)
	}
}
