package processors

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestSinkProjectsDeliveryAttempts: delivery events land in
// webhook_deliveries, one row per attempt however often they arrive, and in
// the raw events table.
func TestSinkProjectsDeliveryAttempts(t *testing.T) {
	e := newEnv(t)
	at := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	attempt := func(n int, outcome schema.DeliveryOutcome, code int) *schema.Delivery {
		d := &schema.Delivery{
			ID: fmt.Sprintf("msg_0123456789abcdef0123456789abcdef:17:1:%d", n), Type: schema.TypeDelivery,
			WebhookID: "msg_0123456789abcdef0123456789abcdef", AlertEventID: "gha-checkout-1:alert:bad-deploy:1772461500:firing",
			AlertID: "gha-checkout-1:alert:bad-deploy:1772461500", AlertStatus: schema.AlertFiring, Rule: "bad-deploy",
			Service: "checkout", Env: "production", Receiver: "pager", URL: "https://pager.example.com/hook", Format: "alertmanager",
			Round: 1, Attempt: n, StatusCode: code, DurationMs: 12, At: schema.At(at.Add(time.Duration(n) * time.Second)),
			Outcome: outcome, Final: outcome == schema.DeliveryDelivered,
		}
		if outcome == schema.DeliveryRetrying {
			d.Error = "answered 503 Service Unavailable"
			d.NextAttemptAt = schema.At(d.At.Time.Add(time.Second))
		}
		return d
	}
	ctx := context.Background()
	for _, d := range []*schema.Delivery{attempt(1, schema.DeliveryRetrying, 503), attempt(2, schema.DeliveryDelivered, 200), attempt(2, schema.DeliveryDelivered, 200)} {
		data, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		// The repeat gets another message id: both copies reach the sink.
		msgID := d.ID + fmt.Sprint(time.Now().UnixNano())
		if _, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: schema.Subject(d), Data: data}, jetstream.WithMsgID(msgID)); err != nil {
			t.Fatal(err)
		}
	}
	runSink(t, e, SinkConfig{FlushInterval: 100 * time.Millisecond})
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		// The typed table is written first, the raw events last.
		n, raw := e.count(t, "SELECT count() FROM webhook_deliveries"), e.count(t, "SELECT count() FROM events WHERE type = 'delivery'")
		return n == 3 && raw == 3, fmt.Sprintf("%d of 3 rows, %d of 3 raw events", n, raw)
	})
	if n := e.count(t, "SELECT count() FROM webhook_deliveries FINAL"); n != 2 {
		t.Errorf("%d rows with FINAL, want 2 (one per attempt)", n)
	}
	if n := e.count(t, "SELECT count() FROM events FINAL WHERE type = 'delivery' AND env = 'production'"); n != 2 {
		t.Errorf("%d delivery events in events, want 2", n)
	}
	var (
		outcome, errText string
		code             uint16
		final            uint8
		next             time.Time
	)
	if err := e.ch.QueryRow(ctx, `SELECT outcome, status_code, error, final, next_attempt_at FROM webhook_deliveries FINAL
		WHERE webhook_id = ? ORDER BY attempt LIMIT 1`, "msg_0123456789abcdef0123456789abcdef").Scan(&outcome, &code, &errText, &final, &next); err != nil {
		t.Fatal(err)
	}
	if outcome != "retrying" || code != 503 || errText == "" || final != 0 || !next.Equal(at.Add(2*time.Second)) {
		t.Errorf("first attempt: %s %d %q final=%d next=%s", outcome, code, errText, final, next)
	}
}
