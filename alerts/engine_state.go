package alerts

import (
	"maps"
	"slices"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

// engineState is what the alert engine decides with: the deploys it knows,
// the alerts pending or firing, the silences. It does no I/O: the engine
// feeds it events and saves what changed (see dirty) to its key-value bucket.
// All times are event times, so a replay decides as the live run did.
type engineState struct {
	deploys  map[string]*engDeploy      // by subject: the deploy id, or service@env for regressions
	alerts   map[string]*engAlert       // by engAlertKey(rule, subject)
	silences map[string]*schema.Silence // by id
	// watermark is the newest event time seen; what is older than the
	// retention behind it is forgotten.
	watermark time.Time
	retention time.Duration

	dirtyDeploys, dirtyAlerts, dirtySilences map[string]bool
}

// engDeploy is what the engine knows of one deploy, or of one service
// and env's regressions (ID empty).
type engDeploy struct {
	// Known is true once a deploy event was seen; before that the fields
	// come from the deploy's verdicts.
	Known           bool              `json:"known"`
	ID              string            `json:"id,omitempty"`
	Service         string            `json:"service"`
	Env             string            `json:"env"`
	Version         string            `json:"version,omitempty"`
	PreviousVersion string            `json:"previous_version,omitempty"`
	Status          string            `json:"status,omitempty"`
	Strategy        string            `json:"strategy,omitempty"`
	Author          string            `json:"author,omitempty"`
	URL             string            `json:"url,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	StartedAt       time.Time         `json:"started_at,omitzero"`
	FinishedAt      time.Time         `json:"finished_at,omitzero"`
	// LastVerdictAt is the newest verdict judged: one not newer is a repeat.
	LastVerdictAt time.Time `json:"last_verdict_at,omitzero"`
	// RollbackID is set once a rollback signal went out: a deploy is undone once.
	RollbackID string `json:"rollback_id,omitempty"`
	// SupersededBy is the newer deploy of the same service and env that
	// succeeded: this one is no longer what runs, so it is neither alerted
	// on nor rolled back.
	SupersededBy string `json:"superseded_by,omitempty"`
	// SeenAt is the newest event time of the deploy or its verdicts.
	SeenAt time.Time `json:"seen_at"`
}

// engAlert is one rule's alert on one subject: pending (the condition
// holds, its `for` has not passed) or firing.
type engAlert struct {
	Rule    string `json:"rule"`
	Subject string `json:"subject"`
	// Since is when the condition began to hold; SinceVerdict the verdict.
	Since        time.Time `json:"since"`
	SinceVerdict string    `json:"since_verdict"`
	Firing       bool      `json:"firing"`
	// Alert is the firing event as published, the base of the resolved one.
	Alert *schema.Alert `json:"alert,omitempty"`
}

func newEngineState(retention time.Duration) *engineState {
	return &engineState{
		deploys: map[string]*engDeploy{}, alerts: map[string]*engAlert{}, silences: map[string]*schema.Silence{},
		retention:    retention,
		dirtyDeploys: map[string]bool{}, dirtyAlerts: map[string]bool{}, dirtySilences: map[string]bool{},
	}
}

func engAlertKey(rule, subject string) string { return rule + "\x00" + subject }

// engSubject is what a verdict's alerts are about: its deploy, or for a
// regression without one its service and env.
func engSubject(deployID, service, env string) string {
	if deployID != "" {
		return deployID
	}
	return service + "@" + env
}

func (s *engineState) advance(t time.Time) {
	if t.After(s.watermark) {
		s.watermark = t
	}
}

// engRuleErrorFunc is told of a condition that could not be evaluated.
type engRuleErrorFunc func(rule string, err error)

// verdict judges v with rules and returns the alerts and rollback signals it
// leads to. A verdict not newer than the last one of its deploy is a repeat
// (a redelivery, a republished verdict) and changes nothing.
func (s *engineState) verdict(rules *Rules, v *schema.Verdict, onErr engRuleErrorFunc) []schema.Event {
	at := v.EvaluatedAt.Time
	subject := engSubject(v.DeployID, v.Service, v.Env)
	rec := s.deploys[subject]
	if rec == nil {
		rec = &engDeploy{ID: v.DeployID, Service: v.Service, Env: v.Env}
		s.deploys[subject] = rec
	}
	if !rec.LastVerdictAt.IsZero() && !at.After(rec.LastVerdictAt) {
		return nil
	}
	if !rec.Known {
		rec.Version, rec.PreviousVersion = v.Version, v.PreviousVersion
	}
	rec.LastVerdictAt = at
	if at.After(rec.SeenAt) {
		rec.SeenAt = at
	}
	s.dirtyDeploys[subject] = true
	s.advance(at)
	if rec.Status == string(schema.DeployRolledBack) || rec.SupersededBy != "" {
		// What runs now is another version: nothing about this one is news.
		return nil
	}

	env := newExprRuleEnv(v, rec)
	var out []schema.Event
	for _, r := range rules.List {
		holds := false
		if r.Match.Matches(v.Service, v.Env, rec.Labels) {
			ok, err := r.eval(env)
			if err != nil {
				onErr(r.Name, err)
				continue // no change: an error is no evidence either way
			}
			holds = ok
		}
		key := engAlertKey(r.Name, subject)
		st := s.alerts[key]
		if !holds {
			if st != nil {
				if st.Firing {
					out = append(out, s.resolve(st, at, v.Reason, schema.ResolvedCleared, v))
				}
				delete(s.alerts, key)
				s.dirtyAlerts[key] = true
			}
			continue
		}
		if st == nil {
			st = &engAlert{Rule: r.Name, Subject: subject, Since: at, SinceVerdict: v.ID}
			s.alerts[key] = st
			s.dirtyAlerts[key] = true
		}
		// A final verdict is the last word on the deploy: its condition will
		// hold for ever, so a pending alert fires without waiting out `for`.
		if !st.Firing && (at.Sub(st.Since) >= time.Duration(r.For) || v.Final) {
			out = append(out, s.fire(r, st, v, rec)...)
			s.dirtyAlerts[key] = true
		}
	}
	return out
}

// fire makes a pending alert fire: the alert event and, when the rule rolls
// back and nothing holds it back, the deploy's rollback signal.
func (s *engineState) fire(r *Rule, st *engAlert, v *schema.Verdict, rec *engDeploy) []schema.Event {
	alertID := schema.NewAlertID(r.Name, v.DeployID, v.Service, v.Env, st.Since)
	a := &schema.Alert{
		ID: schema.AlertEventID(alertID, schema.AlertFiring), Type: schema.TypeAlert, AlertID: alertID,
		Status: schema.AlertFiring, Rule: r.Name, Severity: r.Severity, Actions: slices.Clone(r.Actions), DryRun: r.DryRun,
		Service: v.Service, Env: v.Env, DeployID: v.DeployID, Version: v.Version, PreviousVersion: v.PreviousVersion,
		Summary: v.Reason, VerdictID: v.ID, VerdictStatus: v.Status, VerdictScore: v.Score,
		StartsAt: v.EvaluatedAt, PendingSince: schema.At(st.Since), Labels: maps.Clone(rec.Labels),
		Condition: r.Condition,
	}
	if r.For > 0 {
		a.For = r.For.String()
	}
	if sil := s.silenceFor(r.Name, v.Service, v.Env, v.EvaluatedAt.Time); sil != nil {
		a.Silenced, a.SilenceID = true, sil.ID
	}
	out := []schema.Event{a}
	if r.Has(schema.ActionRollback) && !r.DryRun && !a.Silenced && v.DeployID != "" {
		if rec.RollbackID == "" {
			rec.RollbackID = schema.RollbackSignalID(v.DeployID)
			s.dirtyDeploys[v.DeployID] = true
			out = append(out, &schema.RollbackSignal{
				ID: rec.RollbackID, Type: schema.TypeRollback, Service: v.Service, Env: v.Env, DeployID: v.DeployID,
				Version: v.Version, PreviousVersion: v.PreviousVersion, Rule: r.Name, AlertID: alertID, VerdictID: v.ID,
				Reason: v.Reason, At: v.EvaluatedAt, Severity: r.Severity, Labels: maps.Clone(rec.Labels),
			})
		}
		a.RollbackID = rec.RollbackID
	}
	st.Firing, st.Alert = true, a
	return out
}

// resolve ends a firing alert at event time at.
func (s *engineState) resolve(st *engAlert, at time.Time, summary, why string, v *schema.Verdict) *schema.Alert {
	a := *st.Alert
	a.ID = schema.AlertEventID(a.AlertID, schema.AlertResolved)
	a.Status = schema.AlertResolved
	a.EndsAt = schema.At(at)
	a.Resolution = why
	a.Summary = summary
	if v != nil {
		a.VerdictID, a.VerdictStatus, a.VerdictScore = v.ID, v.Status, v.Score
	}
	return &a
}

// deploy learns of a deploy's status change. A rollback resolves the deploy's
// alerts; a newer deploy of the same service and env that succeeded
// supersedes the older ones and resolves theirs (and a regression's).
func (s *engineState) deploy(d *schema.Deploy) []schema.Event {
	at := d.EventTime().Time
	s.advance(at)
	rec := s.deploys[d.ID]
	if rec == nil {
		rec = &engDeploy{ID: d.ID}
		s.deploys[d.ID] = rec
	}
	rec.Known = true
	rec.Service, rec.Env, rec.Version, rec.PreviousVersion = d.Service, d.Env, d.Version, d.PreviousVersion
	rec.Strategy, rec.Author, rec.URL = string(d.Strategy), d.Author, d.URL
	if len(d.Labels) > 0 {
		rec.Labels = maps.Clone(d.Labels)
	}
	if !d.StartedAt.IsZero() {
		rec.StartedAt = d.StartedAt.Time
	}
	if !d.FinishedAt.IsZero() {
		rec.FinishedAt = d.FinishedAt.Time
	}
	if d.Status.Rank() >= schema.DeployStatus(rec.Status).Rank() {
		rec.Status = string(d.Status)
	}
	if at.After(rec.SeenAt) {
		rec.SeenAt = at
	}
	s.dirtyDeploys[d.ID] = true

	var out []schema.Event
	switch d.Status {
	case schema.DeployRolledBack:
		summary := "deploy " + d.ID + " of " + d.Version + " was rolled back"
		if d.PreviousVersion != "" {
			summary += " to " + d.PreviousVersion
		}
		out = append(out, s.endAlerts(d.ID, at, summary, schema.ResolvedRolledBack)...)
	case schema.DeploySucceeded:
		start := rec.StartedAt
		if start.IsZero() {
			start = rec.FinishedAt
		}
		summary := "superseded by deploy " + d.ID + " of " + d.Version
		for subject, other := range s.deploys {
			if other == rec || other.Service != d.Service || other.Env != d.Env || other.SupersededBy != "" {
				continue
			}
			regression := other.ID == ""
			if !regression && (!other.Known || other.StartedAt.IsZero() || !other.StartedAt.Before(start)) {
				continue
			}
			if !regression {
				other.SupersededBy = d.ID
				s.dirtyDeploys[subject] = true
			}
			out = append(out, s.endAlerts(subject, at, summary, schema.ResolvedSuperseded)...)
		}
	}
	return out
}

// endAlerts resolves the firing alerts of subject and forgets its pending ones.
func (s *engineState) endAlerts(subject string, at time.Time, summary, why string) []schema.Event {
	var out []schema.Event
	for _, key := range slices.Sorted(maps.Keys(s.alerts)) {
		st := s.alerts[key]
		if st.Subject != subject {
			continue
		}
		if st.Firing {
			end := at
			if end.Before(st.Alert.StartsAt.Time) {
				end = st.Alert.StartsAt.Time
			}
			out = append(out, s.resolve(st, end, summary, why, nil))
		}
		delete(s.alerts, key)
		s.dirtyAlerts[key] = true
	}
	return out
}

// silence records a silence.
func (s *engineState) silence(sil *schema.Silence) {
	s.silences[sil.ID] = sil
	s.dirtySilences[sil.ID] = true
}

// silenceFor returns a silence covering an alert of rule for service in env at t.
func (s *engineState) silenceFor(rule, service, env string, t time.Time) *schema.Silence {
	var found *schema.Silence
	for _, sil := range s.silences {
		if sil.Matches(rule, service, env, t) && (found == nil || sil.ID < found.ID) {
			found = sil
		}
	}
	return found
}

// prune forgets deploys and silences older than the retention behind the
// watermark; deploys with alerts pending or firing are kept.
func (s *engineState) prune() {
	if s.watermark.IsZero() || s.retention <= 0 {
		return
	}
	horizon := s.watermark.Add(-s.retention)
	busy := map[string]bool{}
	for _, st := range s.alerts {
		busy[st.Subject] = true
	}
	for subject, rec := range s.deploys {
		if rec.SeenAt.Before(horizon) && !busy[subject] {
			delete(s.deploys, subject)
			s.dirtyDeploys[subject] = true
		}
	}
	for id, sil := range s.silences {
		if sil.EndsAt.Before(horizon) {
			delete(s.silences, id)
			s.dirtySilences[id] = true
		}
	}
}

// counts returns the alerts firing and pending.
func (s *engineState) counts() (firing, pending int) {
	for _, st := range s.alerts {
		if st.Firing {
			firing++
		} else {
			pending++
		}
	}
	return firing, pending
}
