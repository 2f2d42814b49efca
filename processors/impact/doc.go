// Package impact decides how a deploy affected a service: it keeps the recent
// samples of every service in event time, picks the comparison for each deploy
// (canary against baseline, or before against after), judges every metric with
// a test made for it and turns the evidence into a verdict a person can read.
//
// It knows nothing of NATS or ClickHouse: the processors package feeds it
// events and publishes what it returns, so the same code runs live, in replay
// and in the scenario suite.
package impact
