// Package schema holds deploywatch's data contracts: the event types that senders
// post and that travel through the event log, their validation and JSON encoding,
// the JetStream subjects they are published on, and (in schema/chschema) the
// ClickHouse tables they are projected into.
//
// schema imports nothing else of deploywatch's.
package schema
