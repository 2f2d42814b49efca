package schema

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestDeliveryDecodesAsASignal(t *testing.T) {
	at := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	d := &Delivery{
		ID: "msg_0123:17:1:2", Type: TypeDelivery, WebhookID: "msg_0123", AlertEventID: "d:alert:r:1:firing",
		AlertID: "d:alert:r:1", AlertStatus: AlertFiring, Rule: "r", Service: "checkout", Env: "production",
		Receiver: "pager", URL: "https://pager.example.com/hook", Format: "alertmanager", Round: 1, Attempt: 2,
		StatusCode: 503, Error: "answered 503", DurationMs: 40, At: At(at), Outcome: DeliveryRetrying,
		NextAttemptAt: At(at.Add(2 * time.Hour)), // a Retry-After may lie further ahead than event times may
	}
	data, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := DecodeSignal(data)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := ev.(*Delivery)
	if !ok || got.ID != d.ID || got.Attempt != 2 || got.Outcome != DeliveryRetrying || !got.At.Time.Equal(at) {
		t.Fatalf("decoded %#v", ev)
	}
	if Subject(got) != "deploywatch.signals.delivery.checkout" {
		t.Errorf("subject %s", Subject(got))
	}

	f := func(body string, fields ...string) {
		t.Helper()
		_, err := DecodeSignal([]byte(body))
		if err == nil {
			t.Fatalf("%s: want an error", body)
		}
		for _, field := range fields {
			if !strings.Contains(err.Error(), field) {
				t.Errorf("the error does not name %s: %v", field, err)
			}
		}
	}
	f(`{"type":"delivery"}`, "id", "webhook_id", "alert_event_id", "service", "receiver", "round", "attempt", "outcome", "at")
	f(`{"type":"delivery","id":"x","webhook_id":"w","alert_event_id":"a","service":"checkout","receiver":"r","round":1,
		"attempt":1,"outcome":"lost","at":"2026-03-02T14:00:00Z","status_code":1000}`, "outcome", "status_code")
}
