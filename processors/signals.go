package processors

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go/jetstream"
)

// signalsProjection writes the derived facts of the signals stream: verdicts
// into deploy_verdicts, and every signal into the raw events table. A signal
// of a type this version does not know is refused (and so dead-lettered with
// the reason) rather than guessed at.
type signalsProjection struct {
	events     eventRows
	verdicts   verdictRows
	deliveries deliveryRows
	alerts     alertRows
	rollbacks  rollbackRows
	silences   silenceRows
	acks       ackRows
}

func (p *signalsProjection) add(msg jetstream.Msg, meta *jetstream.MsgMetadata) error {
	ev, err := schema.DecodeSignal(msg.Data())
	if err != nil {
		return fmt.Errorf("cannot decode the signal: %w", err)
	}
	return p.addSignal(ev, meta.Timestamp.UTC(), msg.Data())
}

// addVerdict adds a verdict that does not come from a message (a replay's),
// with its JSON encoding as the body.
func (p *signalsProjection) addVerdict(v *schema.Verdict, receivedAt time.Time) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("cannot encode verdict %s: %w", v.ID, err)
	}
	return p.addSignal(v, receivedAt, body)
}

// addSignal adds one decoded signal; body is its JSON.
func (p *signalsProjection) addSignal(ev schema.Event, receivedAt time.Time, body []byte) error {
	switch e := ev.(type) {
	case *schema.Verdict:
		p.verdicts.add(e, receivedAt, body)
	case *schema.Delivery:
		p.deliveries.add(e, receivedAt)
	case *schema.Alert:
		p.alerts.add(e, receivedAt, body)
	case *schema.RollbackSignal:
		p.rollbacks.add(e, receivedAt, body)
	case *schema.Silence:
		p.silences.add(e, receivedAt, body)
	case *schema.Acknowledgement:
		p.acks.add(e, receivedAt, body)
	default:
		return fmt.Errorf("%s signals are not projected into ClickHouse yet", ev.EventType())
	}
	p.events.add(ev, receivedAt, body)
	return nil
}

func (p *signalsProjection) rows() int { return p.events.len() }

func (p *signalsProjection) write(ctx context.Context, insert insertFunc) error {
	// As for changes: the typed tables first, the raw log last; a retry
	// rewrites all of them and every table deduplicates by the event id.
	if p.verdicts.len() > 0 {
		if err := insert(ctx, "deploy_verdicts", verdictColumns, p.verdicts.columns()); err != nil {
			return err
		}
	}
	if p.deliveries.len() > 0 {
		if err := insert(ctx, "webhook_deliveries", deliveryColumns, p.deliveries.columns()); err != nil {
			return err
		}
	}
	if err := p.writeAlerts(ctx, insert); err != nil {
		return err
	}
	return insert(ctx, "events", eventColumns, p.events.columns())
}

func (p *signalsProjection) reset() { *p = signalsProjection{} }

// verdictRows are rows of `deploy_verdicts`: one per verdict event.
type verdictRows struct {
	id, deployID, service, env, version, previous, status []string
	score, final, early                                   []uint8
	reason, comparison                                    []string
	evaluatedAt                                           []time.Time
	baselineFrom, baselineTo                              []time.Time
	candidateFrom, candidateTo                            []time.Time
	metricNames, metricClasses                            [][]string
	metricRatios, metricPValues                           [][]float64
	body                                                  []string
	receivedAt                                            []time.Time
}

const verdictColumns = "id, deploy_id, service, env, version, previous_version, status, score, final, early, " +
	"reason, comparison, evaluated_at, baseline_from, baseline_to, candidate_from, candidate_to, " +
	"metric_names, metric_classes, metric_ratios, metric_p_values, body, received_at"

// add appends one verdict; body is its JSON as published.
func (r *verdictRows) add(v *schema.Verdict, receivedAt time.Time, body []byte) {
	r.id = append(r.id, v.ID)
	r.deployID = append(r.deployID, v.DeployID)
	r.service = append(r.service, v.Service)
	r.env = append(r.env, v.Env)
	r.version = append(r.version, v.Version)
	r.previous = append(r.previous, v.PreviousVersion)
	r.status = append(r.status, string(v.Status))
	r.score = append(r.score, uint8(v.Score)) // validated: 0-100
	r.final = append(r.final, boolUInt8(v.Final))
	r.early = append(r.early, boolUInt8(v.Early))
	r.reason = append(r.reason, v.Reason)
	r.comparison = append(r.comparison, string(v.Comparison))
	r.evaluatedAt = append(r.evaluatedAt, v.EvaluatedAt.Time)
	r.baselineFrom = append(r.baselineFrom, orEpoch(v.Baseline.From))
	r.baselineTo = append(r.baselineTo, orEpoch(v.Baseline.To))
	r.candidateFrom = append(r.candidateFrom, orEpoch(v.Candidate.From))
	r.candidateTo = append(r.candidateTo, orEpoch(v.Candidate.To))
	names, classes := make([]string, len(v.Metrics)), make([]string, len(v.Metrics))
	ratios, pValues := make([]float64, len(v.Metrics)), make([]float64, len(v.Metrics))
	for i, m := range v.Metrics {
		names[i], classes[i], ratios[i], pValues[i] = m.Name, string(m.Class), m.Ratio, m.PValue
	}
	r.metricNames = append(r.metricNames, names)
	r.metricClasses = append(r.metricClasses, classes)
	r.metricRatios = append(r.metricRatios, ratios)
	r.metricPValues = append(r.metricPValues, pValues)
	r.body = append(r.body, string(body))
	r.receivedAt = append(r.receivedAt, receivedAt)
}

func (r *verdictRows) len() int { return len(r.id) }

func (r *verdictRows) columns() []any {
	return []any{r.id, r.deployID, r.service, r.env, r.version, r.previous, r.status, r.score, r.final, r.early,
		r.reason, r.comparison, r.evaluatedAt, r.baselineFrom, r.baselineTo, r.candidateFrom, r.candidateTo,
		r.metricNames, r.metricClasses, r.metricRatios, r.metricPValues, r.body, r.receivedAt}
}

func boolUInt8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// orEpoch is t, or the epoch for a missing time: DateTime has no null
// outside Nullable, and the epoch reads as "none".
func orEpoch(t schema.Time) time.Time {
	if t.Time.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return t.Time
}

// deliveryRows are rows of `webhook_deliveries`: one per delivery attempt.
type deliveryRows struct {
	id, webhookID, alertEventID, alertID, alertStatus, rule []string
	service, env, receiver, url, format                     []string
	round, attempt                                          []uint32
	statusCode                                              []uint16
	errText                                                 []string
	durationMs                                              []uint64
	outcome                                                 []string
	final                                                   []uint8
	at, nextAttemptAt, receivedAt                           []time.Time
}

const deliveryColumns = "id, webhook_id, alert_event_id, alert_id, alert_status, rule, service, env, receiver, url, format, " +
	"round, attempt, status_code, error, duration_ms, outcome, final, at, next_attempt_at, received_at"

func (r *deliveryRows) add(d *schema.Delivery, receivedAt time.Time) {
	r.id = append(r.id, d.ID)
	r.webhookID = append(r.webhookID, d.WebhookID)
	r.alertEventID = append(r.alertEventID, d.AlertEventID)
	r.alertID = append(r.alertID, d.AlertID)
	r.alertStatus = append(r.alertStatus, string(d.AlertStatus))
	r.rule = append(r.rule, d.Rule)
	r.service = append(r.service, d.Service)
	r.env = append(r.env, d.Env)
	r.receiver = append(r.receiver, d.Receiver)
	r.url = append(r.url, d.URL)
	r.format = append(r.format, d.Format)
	r.round = append(r.round, uint32(d.Round))       // validated: >= 1
	r.attempt = append(r.attempt, uint32(d.Attempt)) // validated: >= 1
	r.statusCode = append(r.statusCode, uint16(d.StatusCode))
	r.errText = append(r.errText, d.Error)
	r.durationMs = append(r.durationMs, uint64(d.DurationMs))
	r.outcome = append(r.outcome, string(d.Outcome))
	r.final = append(r.final, boolUInt8(d.Final))
	r.at = append(r.at, d.At.Time)
	r.nextAttemptAt = append(r.nextAttemptAt, orEpoch(d.NextAttemptAt))
	r.receivedAt = append(r.receivedAt, receivedAt)
}

func (r *deliveryRows) len() int { return len(r.id) }

func (r *deliveryRows) columns() []any {
	return []any{r.id, r.webhookID, r.alertEventID, r.alertID, r.alertStatus, r.rule, r.service, r.env, r.receiver, r.url, r.format,
		r.round, r.attempt, r.statusCode, r.errText, r.durationMs, r.outcome, r.final, r.at, r.nextAttemptAt, r.receivedAt}
}
