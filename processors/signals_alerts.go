package processors

import (
	"context"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

// The alert engine's events and what people add to them: alert_events,
// rollback_signals, silences and alert_acks (migration 0006_alerts.sql), one
// row per event keyed by its id.

// writeAlerts inserts the buffered rows of the alert tables.
func (p *signalsProjection) writeAlerts(ctx context.Context, insert insertFunc) error {
	for _, t := range []struct {
		table, columns string
		n              int
		cols           func() []any
	}{
		{"alert_events", alertColumns, p.alerts.len(), p.alerts.columns},
		{"rollback_signals", rollbackColumns, p.rollbacks.len(), p.rollbacks.columns},
		{"silences", silenceColumns, p.silences.len(), p.silences.columns},
		{"alert_acks", ackColumns, p.acks.len(), p.acks.columns},
	} {
		if t.n == 0 {
			continue
		}
		if err := insert(ctx, t.table, t.columns, t.cols()); err != nil {
			return err
		}
	}
	return nil
}

// alertRows are rows of `alert_events`: one per alert status change.
type alertRows struct {
	id, alertID, status                       []string
	statusRank                                []uint8
	rule, severity                            []string
	actions                                   [][]string
	dryRun, silenced                          []uint8
	silenceID, service, env, deployID         []string
	version, previous, summary                []string
	verdictID, verdictStatus                  []string
	verdictScore                              []uint8
	pendingSince, startsAt, endsAt, eventTime []time.Time
	rollbackID, resolution, condition         []string
	labelKeys, labelValues                    [][]string
	body                                      []string
	receivedAt                                []time.Time
}

const alertColumns = "id, alert_id, status, status_rank, rule, severity, actions, dry_run, silenced, silence_id, " +
	"service, env, deploy_id, version, previous_version, summary, verdict_id, verdict_status, verdict_score, " +
	"pending_since, starts_at, ends_at, time, rollback_id, resolution, rule_condition, label_keys, label_values, body, received_at"

func (r *alertRows) add(a *schema.Alert, receivedAt time.Time, body []byte) {
	r.id = append(r.id, a.ID)
	r.alertID = append(r.alertID, a.AlertID)
	r.status = append(r.status, string(a.Status))
	r.statusRank = append(r.statusRank, a.Status.Rank())
	r.rule = append(r.rule, a.Rule)
	r.severity = append(r.severity, a.Severity)
	actions := a.Actions
	if actions == nil {
		actions = []string{}
	}
	r.actions = append(r.actions, actions)
	r.dryRun = append(r.dryRun, boolUInt8(a.DryRun))
	r.silenced = append(r.silenced, boolUInt8(a.Silenced))
	r.silenceID = append(r.silenceID, a.SilenceID)
	r.service = append(r.service, a.Service)
	r.env = append(r.env, a.Env)
	r.deployID = append(r.deployID, a.DeployID)
	r.version = append(r.version, a.Version)
	r.previous = append(r.previous, a.PreviousVersion)
	r.summary = append(r.summary, a.Summary)
	r.verdictID = append(r.verdictID, a.VerdictID)
	r.verdictStatus = append(r.verdictStatus, string(a.VerdictStatus))
	r.verdictScore = append(r.verdictScore, uint8(a.VerdictScore)) // validated: 0-100
	r.pendingSince = append(r.pendingSince, orEpoch(a.PendingSince))
	r.startsAt = append(r.startsAt, orEpoch(a.StartsAt))
	r.endsAt = append(r.endsAt, orEpoch(a.EndsAt))
	r.eventTime = append(r.eventTime, a.EventTime().Time)
	r.rollbackID = append(r.rollbackID, a.RollbackID)
	r.resolution = append(r.resolution, a.Resolution)
	r.condition = append(r.condition, a.Condition)
	keys, values := sortedLabels(a.Labels)
	r.labelKeys = append(r.labelKeys, keys)
	r.labelValues = append(r.labelValues, values)
	r.body = append(r.body, string(body))
	r.receivedAt = append(r.receivedAt, receivedAt)
}

func (r *alertRows) len() int { return len(r.id) }

func (r *alertRows) columns() []any {
	return []any{r.id, r.alertID, r.status, r.statusRank, r.rule, r.severity, r.actions, r.dryRun, r.silenced, r.silenceID,
		r.service, r.env, r.deployID, r.version, r.previous, r.summary, r.verdictID, r.verdictStatus, r.verdictScore,
		r.pendingSince, r.startsAt, r.endsAt, r.eventTime, r.rollbackID, r.resolution, r.condition, r.labelKeys, r.labelValues,
		r.body, r.receivedAt}
}

// rollbackRows are rows of `rollback_signals`.
type rollbackRows struct {
	id, service, env, deployID, version, previous []string
	rule, alertID, verdictID, severity, reason    []string
	at                                            []time.Time
	labelKeys, labelValues                        [][]string
	body                                          []string
	receivedAt                                    []time.Time
}

const rollbackColumns = "id, service, env, deploy_id, version, previous_version, rule, alert_id, verdict_id, severity, reason, " +
	"at, label_keys, label_values, body, received_at"

func (r *rollbackRows) add(s *schema.RollbackSignal, receivedAt time.Time, body []byte) {
	r.id = append(r.id, s.ID)
	r.service = append(r.service, s.Service)
	r.env = append(r.env, s.Env)
	r.deployID = append(r.deployID, s.DeployID)
	r.version = append(r.version, s.Version)
	r.previous = append(r.previous, s.PreviousVersion)
	r.rule = append(r.rule, s.Rule)
	r.alertID = append(r.alertID, s.AlertID)
	r.verdictID = append(r.verdictID, s.VerdictID)
	r.severity = append(r.severity, s.Severity)
	r.reason = append(r.reason, s.Reason)
	r.at = append(r.at, s.At.Time)
	keys, values := sortedLabels(s.Labels)
	r.labelKeys = append(r.labelKeys, keys)
	r.labelValues = append(r.labelValues, values)
	r.body = append(r.body, string(body))
	r.receivedAt = append(r.receivedAt, receivedAt)
}

func (r *rollbackRows) len() int { return len(r.id) }

func (r *rollbackRows) columns() []any {
	return []any{r.id, r.service, r.env, r.deployID, r.version, r.previous, r.rule, r.alertID, r.verdictID, r.severity, r.reason,
		r.at, r.labelKeys, r.labelValues, r.body, r.receivedAt}
}

// silenceRows are rows of `silences`.
type silenceRows struct {
	id, service, env, rule []string
	startsAt, endsAt       []time.Time
	createdBy, comment     []string
	createdAt              []time.Time
	body                   []string
	receivedAt             []time.Time
}

const silenceColumns = "id, service, env, rule, starts_at, ends_at, created_by, comment, created_at, body, received_at"

func (r *silenceRows) add(s *schema.Silence, receivedAt time.Time, body []byte) {
	r.id = append(r.id, s.ID)
	r.service = append(r.service, s.Service)
	r.env = append(r.env, s.Env)
	r.rule = append(r.rule, s.Rule)
	r.startsAt = append(r.startsAt, s.StartsAt.Time)
	r.endsAt = append(r.endsAt, s.EndsAt.Time)
	r.createdBy = append(r.createdBy, s.CreatedBy)
	r.comment = append(r.comment, s.Comment)
	r.createdAt = append(r.createdAt, s.CreatedAt.Time)
	r.body = append(r.body, string(body))
	r.receivedAt = append(r.receivedAt, receivedAt)
}

func (r *silenceRows) len() int { return len(r.id) }

func (r *silenceRows) columns() []any {
	return []any{r.id, r.service, r.env, r.rule, r.startsAt, r.endsAt, r.createdBy, r.comment, r.createdAt, r.body, r.receivedAt}
}

// ackRows are rows of `alert_acks`.
type ackRows struct {
	id, alertID, service, env, rule, by, comment []string
	at                                           []time.Time
	body                                         []string
	receivedAt                                   []time.Time
}

const ackColumns = "id, alert_id, service, env, rule, acked_by, comment, at, body, received_at"

func (r *ackRows) add(a *schema.Acknowledgement, receivedAt time.Time, body []byte) {
	r.id = append(r.id, a.ID)
	r.alertID = append(r.alertID, a.AlertID)
	r.service = append(r.service, a.Service)
	r.env = append(r.env, a.Env)
	r.rule = append(r.rule, a.Rule)
	r.by = append(r.by, a.By)
	r.comment = append(r.comment, a.Comment)
	r.at = append(r.at, a.At.Time)
	r.body = append(r.body, string(body))
	r.receivedAt = append(r.receivedAt, receivedAt)
}

func (r *ackRows) len() int { return len(r.id) }

func (r *ackRows) columns() []any {
	return []any{r.id, r.alertID, r.service, r.env, r.rule, r.by, r.comment, r.at, r.body, r.receivedAt}
}
