// Package processors holds deploywatch's JetStream consumers. The ClickHouse
// sink projects the event log into ClickHouse tables: it writes columnar
// batches and acknowledges messages only after ClickHouse accepted them.
package processors
