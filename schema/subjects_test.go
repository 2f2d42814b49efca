package schema

import (
	"strings"
	"testing"
)

func TestSubject(t *testing.T) {
	f := func(ev Event, want, filter string) {
		t.Helper()
		got := Subject(ev)
		if got != want {
			t.Fatalf("Subject(%s of %q) = %q, want %q", ev.EventType(), ev.EventService(), got, want)
		}
		// The subject is in its stream and has one token per level.
		if !strings.HasPrefix(got, strings.TrimSuffix(filter, ">")) {
			t.Fatalf("%q is not in %q", got, filter)
		}
		for _, token := range strings.Split(got, ".") {
			if token == "" || strings.ContainsAny(token, "*> \t") {
				t.Fatalf("%q has a bad token %q", got, token)
			}
		}
	}
	f(&Deploy{Service: "checkout"}, "deploywatch.changes.deploy.checkout", ChangesSubjects)
	f(&Incident{Service: "checkout"}, "deploywatch.changes.incident.checkout", ChangesSubjects)
	f(&MetricsBatch{Service: "checkout"}, "deploywatch.metrics.checkout", MetricsSubjects)
	f(&Deploy{Service: "payments.api.v2"}, "deploywatch.changes.deploy.payments_api_v2", ChangesSubjects)
	f(&MetricsBatch{Service: "payments.api"}, "deploywatch.metrics.payments_api", MetricsSubjects)
	f(&Incident{}, "deploywatch.changes.incident._", ChangesSubjects)
	f(&Push{Service: "payments.api"}, "deploywatch.changes.push.payments_api", ChangesSubjects)
	f(&Verdict{Service: "checkout"}, "deploywatch.signals.verdict.checkout", SignalsSubjects)
	f(&Alert{Service: "payments.api"}, "deploywatch.signals.alert.payments_api", SignalsSubjects)
	f(&RollbackSignal{Service: "checkout"}, "deploywatch.signals.rollback.checkout", SignalsSubjects)
	f(&Silence{Service: "checkout"}, "deploywatch.signals.silence.checkout", SignalsSubjects)
	f(&Silence{Rule: "bad-deploy"}, "deploywatch.signals.silence._", SignalsSubjects)
	f(&Acknowledgement{Service: "checkout"}, "deploywatch.signals.ack.checkout", SignalsSubjects)
}

func TestSubjectToken(t *testing.T) {
	f := func(service, want string) {
		t.Helper()
		if got := SubjectToken(service); got != want {
			t.Fatalf("SubjectToken(%q) = %q, want %q", service, got, want)
		}
	}
	f("checkout", "checkout")
	f("payments.api", "payments_api")
	f("a.b.c.", "a_b_c_")
	f("web-storefront_2", "web-storefront_2")
	f("", "_")
}

func TestDeadLetterSubject(t *testing.T) {
	for stream, want := range map[string]string{
		ChangesStream: "deploywatch.deadletter.deploywatch_changes",
		MetricsStream: "deploywatch.deadletter.deploywatch_metrics",
	} {
		got := DeadLetterSubject(stream)
		if got != want {
			t.Fatalf("DeadLetterSubject(%q) = %q, want %q", stream, got, want)
		}
		if !strings.HasPrefix(got, strings.TrimSuffix(DeadLetterSubjects, ">")) {
			t.Fatalf("%q is not in %q", got, DeadLetterSubjects)
		}
	}
}
