package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/deploywatch/deploywatch/schema"
)

// Alerts reads the alert engine's alerts from `alert_events`, with their
// acknowledgements from `alert_acks`, and the silences from `silences`.
type Alerts struct {
	ch Querier
}

// NewAlerts reads through ch.
func NewAlerts(ch Querier) *Alerts { return &Alerts{ch: ch} }

// alertFold folds each alert's events into its latest one: resolved wins
// over firing (status_rank), then the newest time. It is the latest_alerts
// view's rule over alert_events filtered first (18.16 would fold the whole
// table before filtering the view). Copies of a redelivered event are equal,
// so it needs no FINAL. Aliases differ from column names: ClickHouse makes
// an alias visible in the whole SELECT.
const alertFold = `SELECT
	alert_id,
	argMax(body, (status_rank, time))   AS a_body,
	argMax(status, (status_rank, time)) AS a_status,
	max(time)                           AS a_updated
FROM alert_events
WHERE (? = '' OR alert_id = ?) AND (? = '' OR service = ?) AND (? = '' OR env = ?)
GROUP BY alert_id
HAVING ? = '' OR a_status = ?
ORDER BY a_updated DESC, alert_id
LIMIT ?`

// ListAlerts returns the alerts f selects, each in its latest state, the
// most recently changed first, with their acknowledgements.
func (a *Alerts) ListAlerts(ctx context.Context, f schema.AlertFilter) ([]schema.AlertState, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	status := string(f.Status)
	rows, err := a.ch.Query(ctx, alertFold, f.AlertID, f.AlertID, f.Service, f.Service, f.Env, f.Env, status, status, limit)
	if err != nil {
		return nil, fmt.Errorf("cannot list alerts: %w", err)
	}
	defer rows.Close()
	var out []schema.AlertState
	for rows.Next() {
		var id, body, st string
		var updated time.Time
		if err := rows.Scan(&id, &body, &st, &updated); err != nil {
			return nil, fmt.Errorf("cannot read an alert row: %w", err)
		}
		var s schema.AlertState
		if err := json.Unmarshal([]byte(body), &s.Alert); err != nil {
			return nil, fmt.Errorf("cannot decode the stored alert %s: %w", id, err)
		}
		s.UpdatedAt = updated.UTC()
		s.Acks = []schema.Acknowledgement{}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read alerts: %w", err)
	}
	if err := a.addAcks(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

// GetAlert returns one alert in its latest state, or schema.ErrNotFound.
func (a *Alerts) GetAlert(ctx context.Context, alertID string) (schema.AlertState, error) {
	if alertID == "" {
		return schema.AlertState{}, schema.ErrNotFound
	}
	found, err := a.ListAlerts(ctx, schema.AlertFilter{AlertID: alertID, Limit: 1})
	if err != nil {
		return schema.AlertState{}, err
	}
	if len(found) == 0 {
		return schema.AlertState{}, schema.ErrNotFound
	}
	return found[0], nil
}

// addAcks fills in the acknowledgements of the alerts, oldest first.
func (a *Alerts) addAcks(ctx context.Context, alerts []schema.AlertState) error {
	if len(alerts) == 0 {
		return nil
	}
	index := make(map[string]int, len(alerts))
	ids := make([]any, 0, len(alerts))
	for i, s := range alerts {
		index[s.AlertID] = i
		ids = append(ids, s.AlertID)
	}
	// 18.16 takes a tuple, not an array, after IN.
	rows, err := a.ch.Query(ctx, `SELECT alert_id, body FROM alert_acks FINAL WHERE alert_id IN ? ORDER BY at, id`, clickhouse.GroupSet{Value: ids})
	if err != nil {
		return fmt.Errorf("cannot read the acknowledgements of %d alerts: %w", len(ids), err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, body string
		if err := rows.Scan(&id, &body); err != nil {
			return fmt.Errorf("cannot read an acknowledgement row: %w", err)
		}
		var ack schema.Acknowledgement
		if err := json.Unmarshal([]byte(body), &ack); err != nil {
			return fmt.Errorf("cannot decode a stored acknowledgement of alert %s: %w", id, err)
		}
		if i, ok := index[id]; ok {
			alerts[i].Acks = append(alerts[i].Acks, ack)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot read acknowledgements: %w", err)
	}
	return nil
}

// ActiveSilences returns the silences that have not ended at t, those
// ending first first.
func (a *Alerts) ActiveSilences(ctx context.Context, t time.Time) ([]schema.Silence, error) {
	rows, err := a.ch.Query(ctx, `SELECT body FROM silences FINAL WHERE ends_at > ? ORDER BY ends_at, id LIMIT 1000`, t.UTC())
	if err != nil {
		return nil, fmt.Errorf("cannot list silences: %w", err)
	}
	defer rows.Close()
	out := []schema.Silence{}
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, fmt.Errorf("cannot read a silence row: %w", err)
		}
		var s schema.Silence
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			return nil, fmt.Errorf("cannot decode a stored silence: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read silences: %w", err)
	}
	return out, nil
}
