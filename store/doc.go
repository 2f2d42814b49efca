// Package store reads deploywatch's projections back out of ClickHouse for the
// API: deploys' folded state today, verdicts and DORA rollups later. Values
// reach ClickHouse only through the driver's parameter binding.
package store
