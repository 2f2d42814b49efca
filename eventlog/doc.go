// Package eventlog is deploywatch's event log on NATS JetStream: it runs the
// embedded nats-server, connects to an external one, creates the streams, and
// publishes events with their ids as Nats-Msg-Id so that JetStream drops
// duplicates.
package eventlog
