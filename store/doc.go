// Package store reads deploywatch's projections back out of ClickHouse for the
// API: deploys' folded state, their latest verdicts, incidents, alerts, and
// DORA's four keys per week (dora.go). Values reach ClickHouse only through
// the driver's parameter binding.
package store
