// Package ingest is deploywatch's HTTP API: it takes deploys, incidents and
// metric batches, validates them, and answers 2xx only after the event log
// acknowledged every message; it also serves the read routes, health checks
// and /metrics.
package ingest
