package schema

import "strings"

// The event log: JetStream streams and the subjects events are published on.
// Subjects carry the event type and the service, so a consumer can filter on
// either: deploywatch.changes.deploy.checkout, deploywatch.metrics.checkout.
const (
	// ChangesStream keeps deploys and incidents, for a long time.
	ChangesStream = "DEPLOYWATCH_CHANGES"
	// MetricsStream keeps metric batches, within size and age limits.
	MetricsStream = "DEPLOYWATCH_METRICS"
	// SignalsStream keeps derived facts: verdicts, alerts, rollback signals.
	SignalsStream = "DEPLOYWATCH_SIGNALS"
	// DeadLetterStream keeps messages that could never be processed, with the reason.
	DeadLetterStream = "DEPLOYWATCH_DEADLETTER"

	ChangesSubjects    = "deploywatch.changes.>"
	MetricsSubjects    = "deploywatch.metrics.>"
	SignalsSubjects    = "deploywatch.signals.>"
	DeadLetterSubjects = "deploywatch.deadletter.>"

	// DeadLetterReasonHeader carries why a message was dead-lettered.
	DeadLetterReasonHeader = "Deploywatch-Dead-Letter-Reason"
	// DeadLetterSubjectHeader carries the subject the message came from.
	DeadLetterSubjectHeader = "Deploywatch-Original-Subject"
)

// Subject is the subject an event is published on.
func Subject(ev Event) string {
	token := SubjectToken(ev.EventService())
	switch ev.EventType() {
	case TypeMetrics:
		return "deploywatch.metrics." + token
	case TypeVerdict:
		return "deploywatch.signals.verdict." + token
	case TypeAlert:
		return "deploywatch.signals.alert." + token
	case TypeRollback:
		return RollbackSubject(ev.EventService())
	case TypeSilence:
		return "deploywatch.signals.silence." + token
	case TypeAck:
		return "deploywatch.signals.ack." + token
	case TypeDelivery:
		return "deploywatch.signals.delivery." + token
	default:
		return "deploywatch.changes." + string(ev.EventType()) + "." + token
	}
}

// DeadLetterSubject is where undecodable messages from stream go.
func DeadLetterSubject(stream string) string {
	return "deploywatch.deadletter." + strings.ToLower(stream)
}

// SubjectToken turns a service name into one subject token: '.' separates
// tokens in NATS, so it becomes '_'.
func SubjectToken(service string) string {
	if service == "" {
		return "_"
	}
	return strings.ReplaceAll(service, ".", "_")
}

// Message is one event as the event log stores it: the subject, the
// deduplication id (Nats-Msg-Id) and the JSON body.
type Message struct {
	Subject string
	ID      string
	Data    []byte
}

// RollbackSubject is where rollback signals for a service are published.
func RollbackSubject(service string) string {
	return "deploywatch.signals.rollback." + SubjectToken(service)
}
