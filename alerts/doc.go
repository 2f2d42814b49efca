// Package alerts holds the rules defined beforehand (rules.go: a YAML file,
// conditions in expr-lang over the verdict), the engine that judges every
// verdict with them and publishes alerts and rollback signals to the event
// log (engine.go), and their delivery (webhooks, the rollback agent). It
// depends on schema only; cmd wires it to NATS and ClickHouse.
package alerts
