package store

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/deploywatch/deploywatch/schema"
)

// Incidents reads incidents from `incident_changes`, with the deploys they
// are linked to from the `deploys` view.
type Incidents struct {
	ch Querier
}

// NewIncidents reads through ch.
func NewIncidents(ch Querier) *Incidents { return &Incidents{ch: ch} }

// incidentFold folds each incident's changes into one row. The table keeps
// one row per (incident, status) once merged, and equal copies of a
// redelivered change until then; min, max and argMax give the same answer
// either way, so it needs no FINAL.
//
// The fold takes the title, source and deploy id of the change that carries
// one, preferring the opened change (a resolve often names only the id).
// Aliases differ from the column names: ClickHouse makes an alias visible in
// the whole SELECT, so `argMax(title, ...) AS title` would change what
// `title` means elsewhere in it. if(..., time, NULL) keeps the time NULL when
// there is no such change (minIf would give 1970 on 18.16).
const incidentFold = `SELECT
	incident_id,
	any(service)                                             AS i_service,
	any(env)                                                 AS i_env,
	argMax(title, (title != '', status = 'opened'))          AS i_title,
	argMax(source, (source != '', status = 'opened'))        AS i_source,
	argMax(deploy_id, (deploy_id != '', status = 'opened'))  AS i_deploy_id,
	min(if(status = 'opened', time, NULL))                   AS opened_at,
	max(if(status = 'resolved', time, NULL))                 AS resolved_at
FROM incident_changes`

// listIncidents filters the rows before folding by service, env and time
// (an opened change before since cannot belong to an incident opened after
// it; a resolve after since of an older incident is left without its opened
// change and dropped by HAVING), then by the folded opened_at and status.
const listIncidents = incidentFold + `
WHERE (? = '' OR service = ?) AND (? = '' OR env = ?) AND time >= ?
GROUP BY incident_id
HAVING opened_at >= ?
	AND (? = '' OR (? = 'open' AND resolved_at IS NULL) OR (? = 'resolved' AND resolved_at IS NOT NULL))
ORDER BY opened_at DESC, incident_id
LIMIT ?`

const getIncident = incidentFold + `
WHERE incident_id = ?
GROUP BY incident_id`

// linkedDeploys reads the times of the deploys incidents are linked to. On
// 18.16 the view folds every deploy before this filter; newer servers push
// the filter down into it.
const linkedDeploys = `SELECT deploy_id, started_at, finished_at, rolled_back_at
FROM deploys
WHERE deploy_id IN ?`

// ListIncidents returns the incidents matching f, newest opened first.
func (s *Incidents) ListIncidents(ctx context.Context, f schema.IncidentFilter) ([]schema.IncidentState, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	since := f.Since.UTC()
	if f.Since.IsZero() {
		since = time.Unix(0, 0).UTC()
	}
	rows, err := s.ch.Query(ctx, listIncidents, f.Service, f.Service, f.Env, f.Env, since, since,
		f.Status, f.Status, f.Status, limit)
	if err != nil {
		return nil, fmt.Errorf("cannot list incidents: %w", err)
	}
	incidents, err := scanIncidents(rows)
	if err != nil {
		return nil, err
	}
	if err := s.addDeployDurations(ctx, incidents); err != nil {
		return nil, err
	}
	return incidents, nil
}

// GetIncident returns one incident, or schema.ErrNotFound.
func (s *Incidents) GetIncident(ctx context.Context, id string) (schema.IncidentState, error) {
	rows, err := s.ch.Query(ctx, getIncident, id)
	if err != nil {
		return schema.IncidentState{}, fmt.Errorf("cannot read incident %s: %w", id, err)
	}
	found, err := scanIncidents(rows)
	if err != nil {
		return schema.IncidentState{}, err
	}
	if len(found) == 0 {
		return schema.IncidentState{}, schema.ErrNotFound
	}
	if err := s.addDeployDurations(ctx, found); err != nil {
		return schema.IncidentState{}, err
	}
	return found[0], nil
}

func scanIncidents(rows driver.Rows) ([]schema.IncidentState, error) {
	defer rows.Close()
	var out []schema.IncidentState
	for rows.Next() {
		var (
			in                   schema.IncidentState
			openedAt, resolvedAt *time.Time
		)
		if err := rows.Scan(&in.ID, &in.Service, &in.Env, &in.Title, &in.Source, &in.DeployID, &openedAt, &resolvedAt); err != nil {
			return nil, fmt.Errorf("cannot read an incident row: %w", err)
		}
		in.OpenedAt, in.ResolvedAt = utc(openedAt), utc(resolvedAt)
		incidentDurations(&in, deployTimes{})
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read incidents: %w", err)
	}
	return out, nil
}

// addDeployDurations reads the deploys the incidents are linked to and sets
// the durations that need them.
func (s *Incidents) addDeployDurations(ctx context.Context, incidents []schema.IncidentState) error {
	// `IN ?` needs at least one value; 18.16 takes a tuple, not an array, after IN.
	ids := make([]any, 0, len(incidents))
	seen := make(map[string]bool, len(incidents))
	for _, in := range incidents {
		if in.DeployID != "" && !seen[in.DeployID] {
			seen[in.DeployID] = true
			ids = append(ids, in.DeployID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	rows, err := s.ch.Query(ctx, linkedDeploys, clickhouse.GroupSet{Value: ids})
	if err != nil {
		return fmt.Errorf("cannot read the %d deploys linked to incidents: %w", len(ids), err)
	}
	defer rows.Close()
	deploys := make(map[string]deployTimes, len(ids))
	for rows.Next() {
		var (
			id string
			d  deployTimes
		)
		if err := rows.Scan(&id, &d.startedAt, &d.finishedAt, &d.rolledBackAt); err != nil {
			return fmt.Errorf("cannot read a linked deploy row: %w", err)
		}
		d.found = true
		deploys[id] = d
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot read the deploys linked to incidents: %w", err)
	}
	for i := range incidents {
		if d, ok := deploys[incidents[i].DeployID]; ok {
			incidentDurations(&incidents[i], d)
		}
	}
	return nil
}

// deployTimes is what the durations need of a linked deploy.
type deployTimes struct {
	found                               bool
	startedAt, finishedAt, rolledBackAt *time.Time
}

// incidentDurations sets in's status and durations from its times and those
// of its linked deploy (d.found false: none). A duration that would be
// negative means the times do not fit together (an incident linked to a
// deploy that started after it opened, a rollback before the incident): it
// is left null rather than reported as a number that skews the averages.
func incidentDurations(in *schema.IncidentState, d deployTimes) {
	in.Status = schema.IncidentStateOpen
	if in.ResolvedAt != nil {
		in.Status = schema.IncidentStateResolved
	}
	in.MTTRS = seconds(in.OpenedAt, in.ResolvedAt)
	in.TimeToRecoverS = in.MTTRS
	in.TimeToDetectS, in.TimeToRollbackS = nil, nil
	if !d.found || in.OpenedAt == nil {
		return
	}
	// The change reached users when the deploy finished; an incident opened
	// while it was still rolling out (a canary) counts from its start.
	live := d.finishedAt
	if live == nil || live.After(*in.OpenedAt) {
		live = d.startedAt
	}
	in.TimeToDetectS = seconds(live, in.OpenedAt)
	in.TimeToRollbackS = seconds(in.OpenedAt, d.rolledBackAt)
}

// seconds is to − from in seconds; nil when either is unknown or to is
// before from.
func seconds(from, to *time.Time) *float64 {
	if from == nil || to == nil || to.Before(*from) {
		return nil
	}
	s := to.Sub(*from).Seconds()
	return &s
}
