package store

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/deploywatch/deploywatch/schema"
)

// Querier is the part of a ClickHouse connection the store needs.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
}

// Deploys reads deploys from the `deploys` view.
type Deploys struct {
	ch Querier
}

// NewDeploys reads through ch.
func NewDeploys(ch Querier) *Deploys { return &Deploys{ch: ch} }

const deploySelect = `SELECT deploy_id, service, env, version, previous_version, status,
	started_at, finished_at, rolled_back_at, updated_at, author, strategy, url,
	label_keys, label_values, commit_shas, commit_times, commit_authors, commit_messages
FROM deploys`

// ListDeploys returns the newest deploys matching f.
func (d *Deploys) ListDeploys(ctx context.Context, f schema.DeployFilter) ([]schema.DeployState, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	rows, err := d.ch.Query(ctx, deploySelect+`
WHERE (? = '' OR service = ?) AND (? = '' OR env = ?)
ORDER BY updated_at DESC, deploy_id
LIMIT ?`, f.Service, f.Service, f.Env, f.Env, limit)
	if err != nil {
		return nil, fmt.Errorf("cannot list deploys: %w", err)
	}
	return scanDeploys(rows)
}

// GetDeploy returns one deploy, or schema.ErrNotFound.
func (d *Deploys) GetDeploy(ctx context.Context, id string) (schema.DeployState, error) {
	rows, err := d.ch.Query(ctx, deploySelect+`
WHERE deploy_id = ?
LIMIT 1`, id)
	if err != nil {
		return schema.DeployState{}, fmt.Errorf("cannot read deploy %s: %w", id, err)
	}
	found, err := scanDeploys(rows)
	if err != nil {
		return schema.DeployState{}, err
	}
	if len(found) == 0 {
		return schema.DeployState{}, schema.ErrNotFound
	}
	return found[0], nil
}

func scanDeploys(rows driver.Rows) ([]schema.DeployState, error) {
	defer rows.Close()
	var out []schema.DeployState
	for rows.Next() {
		var (
			s                                   schema.DeployState
			status, strategy                    string
			startedAt, finishedAt, rolledBackAt *time.Time
			labelKeys, labelValues              []string
			shas, authors, messages             []string
			commitTimes                         []time.Time
		)
		if err := rows.Scan(&s.ID, &s.Service, &s.Env, &s.Version, &s.PreviousVersion, &status,
			&startedAt, &finishedAt, &rolledBackAt, &s.UpdatedAt, &s.Author, &strategy, &s.URL,
			&labelKeys, &labelValues, &shas, &commitTimes, &authors, &messages); err != nil {
			return nil, fmt.Errorf("cannot read a deploy row: %w", err)
		}
		s.Status, s.Strategy = schema.DeployStatus(status), schema.Strategy(strategy)
		if s.Strategy == "" {
			s.Strategy = schema.StrategyRolling // what a deploy that names none is
		}
		s.StartedAt, s.FinishedAt, s.RolledBackAt = utc(startedAt), utc(finishedAt), utc(rolledBackAt)
		s.UpdatedAt = s.UpdatedAt.UTC()
		if s.StartedAt != nil && s.FinishedAt != nil {
			d := s.FinishedAt.Sub(*s.StartedAt).Seconds()
			s.DurationS = &d
		}
		s.Labels = make(map[string]string, len(labelKeys))
		for i, k := range labelKeys {
			if i < len(labelValues) {
				s.Labels[k] = labelValues[i]
			}
		}
		s.Commits = make([]schema.Commit, len(shas))
		for i := range shas {
			c := schema.Commit{SHA: shas[i]}
			if i < len(commitTimes) && commitTimes[i].Unix() > 0 {
				c.Time = schema.At(commitTimes[i])
			}
			if i < len(authors) {
				c.Author = authors[i]
			}
			if i < len(messages) {
				c.Message = messages[i]
			}
			s.Commits[i] = c
		}
		s.Verdict = nil
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read deploys: %w", err)
	}
	return out, nil
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.UTC()
	return &v
}
