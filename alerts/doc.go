// Package alerts will hold the rules defined beforehand, their evaluation over
// verdicts, the rollback signals and their delivery (issue 4). It depends on
// schema only.
package alerts
