package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/deploywatch/deploywatch/schema"
)

// Verdicts reads the impact analysis' verdicts from `deploy_verdicts`.
type Verdicts struct {
	ch Querier
}

// NewVerdicts reads through ch.
func NewVerdicts(ch Querier) *Verdicts { return &Verdicts{ch: ch} }

// latestVerdicts folds each deploy's verdicts into its latest one: a final
// verdict wins over interim ones, then the newest evaluated_at, as the
// latest_verdicts view folds them, over deploy_verdicts filtered by
// deploy_id (18.16 would aggregate the whole table before filtering the
// view). Copies of a redelivered verdict are equal, so it needs no FINAL.
// Unlike the view, it leaves out the recovery verdicts after a rollback:
// they judge the service, not the deploy, and a bad deploy stays bad once
// its rollback recovered the service.
const latestVerdicts = `SELECT deploy_id, argMax(body, (final, evaluated_at)) AS latest_body
FROM deploy_verdicts
WHERE deploy_id IN ? AND comparison != 'recovery_vs_baseline'
GROUP BY deploy_id`

// Latest returns the deploy's latest verdict, or schema.ErrNotFound when the
// impact analysis has not evaluated it yet.
func (v *Verdicts) Latest(ctx context.Context, deployID string) (*schema.Verdict, error) {
	found, err := v.LatestFor(ctx, []string{deployID})
	if err != nil {
		return nil, err
	}
	verdict, ok := found[deployID]
	if !ok {
		return nil, schema.ErrNotFound
	}
	return verdict, nil
}

// LatestFor returns the latest verdict of each of the deploys that has one,
// by deploy id.
func (v *Verdicts) LatestFor(ctx context.Context, deployIDs []string) (map[string]*schema.Verdict, error) {
	out := make(map[string]*schema.Verdict, len(deployIDs))
	// `IN ?` needs at least one value; 18.16 takes a tuple, not an array, after IN.
	ids := make([]any, 0, len(deployIDs))
	for _, id := range deployIDs {
		if id != "" { // verdicts of regressions without a deploy have none
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := v.ch.Query(ctx, latestVerdicts, clickhouse.GroupSet{Value: ids})
	if err != nil {
		return nil, fmt.Errorf("cannot read the verdicts of %d deploys: %w", len(ids), err)
	}
	defer rows.Close()
	for rows.Next() {
		var deployID, body string
		if err := rows.Scan(&deployID, &body); err != nil {
			return nil, fmt.Errorf("cannot read a verdict row: %w", err)
		}
		var verdict schema.Verdict
		if err := json.Unmarshal([]byte(body), &verdict); err != nil {
			return nil, fmt.Errorf("cannot decode the stored verdict of deploy %s: %w", deployID, err)
		}
		out[deployID] = &verdict
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read verdicts: %w", err)
	}
	return out, nil
}
