// Package store reads deploywatch's projections back out of ClickHouse for the
// API: deploys' folded state and their latest verdicts (DORA rollups later). Values
// reach ClickHouse only through the driver's parameter binding.
package store
