package alerts

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
)

// testSecret is a Standard Webhooks secret: whsec_ and base64 of the key.
const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// verifySignature checks a request the way the Standard Webhooks spec tells
// receivers to, written here from the spec rather than with Sign: the key is
// the base64 after "whsec_", the signed content id.timestamp.body, the header
// a space-separated list of "v1,<base64 HMAC-SHA256>", the timestamp recent.
func verifySignature(secret string, h http.Header, body []byte) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("missing headers: id %q, timestamp %q, signature %q", id, ts, sigs)
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q is not Unix seconds", ts)
	}
	if age := time.Since(time.Unix(secs, 0)); age > 5*time.Minute || age < -5*time.Minute {
		return fmt.Errorf("webhook-timestamp %s is %s away from now", ts, age)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, s := range strings.Fields(sigs) {
		version, sig, _ := strings.Cut(s, ",")
		if version == "v1" && hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return fmt.Errorf("no valid v1 signature in %q", sigs)
}

// TestSignMatchesTheSpecVector: the Standard Webhooks libraries' test vector.
func TestSignMatchesTheSpecVector(t *testing.T) {
	key, err := SecretKey(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	got := Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	if raw, _ := SecretKey("plain text secret"); string(raw) != "plain text secret" {
		t.Fatalf("a secret without whsec_ is its own bytes; got %q", raw)
	}
}

// TestDeliveryRetriesUntilTheReceiverTakesIt: a receiver that fails three
// times and then succeeds receives one logical delivery: four requests with
// the same webhook-id, each validly signed; a second receiver that takes the
// alert at once gets it once; every attempt is recorded, and the alert is
// acked only then.
func TestDeliveryRetriesUntilTheReceiverTakesIt(t *testing.T) {
	e := newNATSEnv(t)
	flaky := newTestReceiver(t, func(n int, _ http.ResponseWriter) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	steady := newTestReceiver(t, nil)
	rs := receiversFile(t, fmt.Sprintf(`
receivers:
  - name: on-call
    url: %s
    secret: env:ONCALL_SECRET
  - name: audit
    url: %s
`, flaky.url(), steady.url()), map[string]string{"ONCALL_SECRET": testSecret})
	rs.Retry = fastRetry()
	runDelivery(t, e, DeliveryConfig{Receivers: rs})
	a := testAlert("checkout", "gha-checkout-8123456789-1", schema.AlertFiring)
	e.publish(t, a, a.ID)

	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		ok, status := e.settled(t, "DEPLOYWATCH_SIGNALS", "webhook-delivery")
		return ok && len(flaky.requests()) == 4, fmt.Sprintf("%d requests to on-call; %s", len(flaky.requests()), status)
	})
	reqs := flaky.requests()
	wantID := WebhookID(a.ID, "on-call")
	for i, r := range reqs {
		if got := r.header.Get("webhook-id"); got != wantID {
			t.Errorf("request %d: webhook-id %q, want %q on every attempt", i+1, got, wantID)
		}
		if err := verifySignature(testSecret, r.header, r.body); err != nil {
			t.Errorf("request %d: %v", i+1, err)
		}
		if !bytes.Equal(r.body, reqs[0].body) {
			t.Errorf("request %d: the body changed between attempts", i+1)
		}
		var got schema.Alert
		if err := json.Unmarshal(r.body, &got); err != nil || got.ID != a.ID || got.Summary != a.Summary {
			t.Errorf("request %d: the body is not the alert event: %v %s", i+1, err, r.body)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("request %d: Content-Type %q", i+1, ct)
		}
	}
	audit := steady.requests()
	if len(audit) != 1 {
		t.Fatalf("the audit receiver got %d requests, want 1", len(audit))
	}
	if audit[0].header.Get("webhook-signature") != "" {
		t.Errorf("a receiver without a secret got a signature")
	}
	if got := audit[0].header.Get("webhook-id"); got != WebhookID(a.ID, "audit") || got == wantID {
		t.Errorf("the audit receiver's webhook-id is %q: want its own", got)
	}

	// Every attempt is recorded.
	var onCall []schema.Delivery
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		onCall = onCall[:0]
		for _, d := range e.deliveries(t) {
			if d.Receiver == "on-call" {
				onCall = append(onCall, d)
			}
		}
		return len(onCall) == 4, fmt.Sprintf("%d delivery events for on-call", len(onCall))
	})
	for i, d := range onCall {
		wantOutcome, wantCode, wantFinal := schema.DeliveryRetrying, 500, false
		if i == 3 {
			wantOutcome, wantCode, wantFinal = schema.DeliveryDelivered, 204, true
		}
		if d.Attempt != i+1 || d.Outcome != wantOutcome || d.StatusCode != wantCode || d.Final != wantFinal ||
			d.WebhookID != wantID || d.AlertEventID != a.ID || d.AlertID != a.AlertID || d.Round != 1 ||
			d.URL != flaky.url() || d.Service != "checkout" || d.Env != "production" {
			t.Errorf("delivery event %d: %+v", i+1, d)
		}
		if wantOutcome == schema.DeliveryRetrying && (d.NextAttemptAt.IsZero() || !strings.Contains(d.Error, "500")) {
			t.Errorf("delivery event %d: a retry says when and why: %+v", i+1, d)
		}
	}
}

// TestDeliveryDoesNotRetryA400: a receiver that answers 400 would answer it
// again; it gets one request, the refusal is recorded, the alert acked.
func TestDeliveryDoesNotRetryA400(t *testing.T) {
	e := newNATSEnv(t)
	picky := newTestReceiver(t, func(int, http.ResponseWriter) int { return http.StatusBadRequest })
	rs := receiversFile(t, fmt.Sprintf("receivers:\n  - name: picky\n    url: %s\n    secret: %s\n", picky.url(), testSecret), nil)
	rs.Retry = fastRetry()
	runDelivery(t, e, DeliveryConfig{Receivers: rs})
	a := testAlert("checkout", "gha-checkout-8123456789-2", schema.AlertFiring)
	e.publish(t, a, a.ID)

	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		ok, status := e.settled(t, "DEPLOYWATCH_SIGNALS", "webhook-delivery")
		return ok && len(e.deliveries(t)) == 1, status
	})
	if n := len(picky.requests()); n != 1 {
		t.Fatalf("the receiver got %d requests, want 1 (no retry after a 400)", n)
	}
	d := e.deliveries(t)[0]
	if d.Outcome != schema.DeliveryRejected || !d.Final || d.StatusCode != 400 || !strings.Contains(d.Error, "400") {
		t.Fatalf("delivery event: %+v, want rejected, final, 400", d)
	}
}

// TestDeliveryHonoursRetryAfter: a 429 with Retry-After: 1 is tried again no
// sooner than a second later.
func TestDeliveryHonoursRetryAfter(t *testing.T) {
	e := newNATSEnv(t)
	busy := newTestReceiver(t, func(n int, w http.ResponseWriter) int {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	rs := receiversFile(t, fmt.Sprintf("receivers:\n  - name: busy\n    url: %s\n", busy.url()), nil)
	rs.Retry = fastRetry()
	runDelivery(t, e, DeliveryConfig{Receivers: rs})
	a := testAlert("checkout", "gha-checkout-8123456789-3", schema.AlertFiring)
	e.publish(t, a, a.ID)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		ok, status := e.settled(t, "DEPLOYWATCH_SIGNALS", "webhook-delivery")
		return ok && len(busy.requests()) == 2, status
	})
	reqs := busy.requests()
	if gap := reqs[1].at.Sub(reqs[0].at); gap < 900*time.Millisecond {
		t.Fatalf("the second attempt came %s after a 429 with Retry-After: 1", gap)
	}
}

// TestDeliveryToAReceiverThatIsDownLosesNothing: the receiver's port is
// closed through several rounds of retries (JetStream hands the alert out
// again after each) and a restart of the delivery; when it comes back it
// gets the alert, once.
func TestDeliveryToAReceiverThatIsDownLosesNothing(t *testing.T) {
	e := newNATSEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // down: connections are refused
	rs := receiversFile(t, fmt.Sprintf("receivers:\n  - name: pager\n    url: http://%s/hook\n    secret: %s\n", addr, testSecret), nil)
	rs.Retry = fastRetry()
	rs.Retry.MaxElapsedTime = 300 * time.Millisecond
	stop := runDelivery(t, e, DeliveryConfig{Receivers: rs})
	a := testAlert("checkout", "gha-checkout-8123456789-4", schema.AlertFiring)
	e.publish(t, a, a.ID)

	postponed := func() int {
		n := 0
		for _, d := range e.deliveries(t) {
			if d.Outcome == schema.DeliveryPostponed {
				n++
			}
			if d.Outcome == schema.DeliveryDelivered || d.Outcome == schema.DeliveryRejected {
				t.Fatalf("a final outcome while the receiver is down: %+v", d)
			}
		}
		return n
	}
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		n := postponed()
		return n >= 3, fmt.Sprintf("%d rounds postponed", n)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	roundsBefore := postponed()

	// The receiver comes back at the same address, and so does the delivery.
	back := newTestReceiverOn(t, addr)
	runDelivery(t, e, DeliveryConfig{Receivers: rs})
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		ok, status := e.settled(t, "DEPLOYWATCH_SIGNALS", "webhook-delivery")
		return ok && len(back.requests()) == 1, fmt.Sprintf("%d requests; %s", len(back.requests()), status)
	})
	r := back.requests()[0]
	if err := verifySignature(testSecret, r.header, r.body); err != nil {
		t.Fatal(err)
	}
	if got := r.header.Get("webhook-id"); got != WebhookID(a.ID, "pager") {
		t.Fatalf("webhook-id %q after the outage, want the one of every earlier attempt", got)
	}
	var final []schema.Delivery
	for _, d := range e.deliveries(t) {
		if d.Final {
			final = append(final, d)
		}
	}
	if len(final) != 1 || final[0].Outcome != schema.DeliveryDelivered || final[0].Round <= roundsBefore {
		t.Fatalf("final delivery events %+v: want one delivered, in a round after the %d postponed ones", final, roundsBefore)
	}
	if !strings.Contains(e.deliveries(t)[0].Error, "no answer") {
		t.Errorf("a refused connection is recorded as %q", e.deliveries(t)[0].Error)
	}
}

// newTestReceiverOn starts a receiver on addr, where an earlier one was.
func newTestReceiverOn(t *testing.T, addr string) *testReceiver {
	t.Helper()
	var ln net.Listener
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err == nil, fmt.Sprint(err)
	})
	r := &testReceiver{}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	r.srv.Listener.Close()
	r.srv.Listener = ln
	r.srv.Start()
	t.Cleanup(r.srv.Close)
	return r
}

// amWebhook is Alertmanager's webhook body as its documentation gives it
// (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config).
type amWebhook struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []struct {
		Status       string            `json:"status"`
		Labels       map[string]string `json:"labels"`
		Annotations  map[string]string `json:"annotations"`
		StartsAt     string            `json:"startsAt"`
		EndsAt       string            `json:"endsAt"`
		GeneratorURL string            `json:"generatorURL"`
		Fingerprint  string            `json:"fingerprint"`
	} `json:"alerts"`
}

// slackWebhook is a Slack incoming-webhook message with Block Kit blocks.
type slackWebhook struct {
	Text   string `json:"text"`
	Blocks []struct {
		Type string `json:"type"`
		Text *struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"text"`
		Fields []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"fields"`
		Elements []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"elements"`
	} `json:"blocks"`
}

func decodeStrict(t *testing.T, body []byte, into any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Fatalf("the body does not decode into %T: %v\n%s", into, err, body)
	}
}

// TestDeliveryFormats: an Alertmanager receiver and a Slack receiver get the
// firing and then the resolved alert in the shapes they document.
func TestDeliveryFormats(t *testing.T) {
	e := newNATSEnv(t)
	am := newTestReceiver(t, nil)
	slack := newTestReceiver(t, nil)
	rs := receiversFile(t, fmt.Sprintf(`
external_url: https://deploywatch.example.com
receivers:
  - name: alertmanager-bridge
    url: %s
    format: alertmanager
    headers:
      Authorization: env:BRIDGE_AUTH
  - name: slack-deploys
    url: env:SLACK_URL
    format: slack
`, am.url()), map[string]string{"BRIDGE_AUTH": "Bearer s3cret", "SLACK_URL": slack.url() + "?token=T0KEN"})
	rs.Retry = fastRetry()
	runDelivery(t, e, DeliveryConfig{Receivers: rs})
	firing := testAlert("checkout", "gha-checkout-8123456789-5", schema.AlertFiring)
	resolved := testAlert("checkout", "gha-checkout-8123456789-5", schema.AlertResolved)
	e.publish(t, firing, firing.ID)
	e.publish(t, resolved, resolved.ID)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		ok, status := e.settled(t, "DEPLOYWATCH_SIGNALS", "webhook-delivery")
		return ok && len(am.requests()) == 2 && len(slack.requests()) == 2, status
	})

	// Alertmanager.
	var fps []string
	for i, want := range []*schema.Alert{firing, resolved} {
		r := am.requests()[i]
		if got := r.header.Get("Authorization"); got != "Bearer s3cret" {
			t.Errorf("Authorization %q, want the header from the environment", got)
		}
		var m amWebhook
		decodeStrict(t, r.body, &m)
		if m.Version != "4" || m.Status != string(want.Status) || m.Receiver != "alertmanager-bridge" ||
			m.ExternalURL != "https://deploywatch.example.com" || len(m.Alerts) != 1 || m.TruncatedAlerts != 0 {
			t.Fatalf("alertmanager body %d: %+v", i, m)
		}
		if m.GroupKey != `{}:{alertname="bad-deploy-in-production", env="production", service="checkout"}` {
			t.Errorf("groupKey %s", m.GroupKey)
		}
		al := m.Alerts[0]
		if al.Status != string(want.Status) || al.Labels["alertname"] != want.Rule || al.Labels["severity"] != "critical" ||
			al.Labels["service"] != "checkout" || al.Labels["env"] != "production" || al.Labels["team"] != "payments" ||
			al.Labels["deploy_id"] != want.DeployID || al.Annotations["summary"] != want.Summary ||
			al.GeneratorURL != "https://deploywatch.example.com/api/v1/deploys/"+want.DeployID {
			t.Errorf("alertmanager alert %d: %+v", i, al)
		}
		if starts, err := time.Parse(time.RFC3339Nano, al.StartsAt); err != nil || !starts.Equal(want.StartsAt.Time) {
			t.Errorf("startsAt %q, want %s", al.StartsAt, want.StartsAt.Time)
		}
		wantEnds := "0001-01-01T00:00:00Z" // what Alertmanager sends for a firing alert
		if want.Status == schema.AlertResolved {
			wantEnds = want.EndsAt.Time.Format(time.RFC3339Nano)
		}
		if al.EndsAt != wantEnds {
			t.Errorf("endsAt %q, want %q", al.EndsAt, wantEnds)
		}
		if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(al.Fingerprint) {
			t.Errorf("fingerprint %q is not 16 hex digits", al.Fingerprint)
		}
		fps = append(fps, al.Fingerprint)
	}
	if fps[0] != fps[1] {
		t.Errorf("the firing and the resolved alert have different fingerprints %v: Alertmanager receivers match them by it", fps)
	}

	// Slack.
	for i, word := range []string{"[FIRING]", "[RESOLVED]"} {
		r := slack.requests()[i]
		var m slackWebhook
		decodeStrict(t, r.body, &m)
		if !strings.Contains(m.Text, word) || !strings.Contains(m.Text, "checkout") || len(m.Blocks) < 2 {
			t.Fatalf("slack message %d: %+v", i, m)
		}
		head := m.Blocks[0]
		if head.Type != "section" || head.Text == nil || head.Text.Type != "mrkdwn" ||
			!strings.Contains(head.Text.Text, "&amp; &lt;rising&gt;") || strings.Contains(head.Text.Text, "<rising>") {
			t.Errorf("slack message %d: the first block shows the summary escaped for mrkdwn: %+v", i, head.Text)
		}
		last := m.Blocks[len(m.Blocks)-1]
		if last.Type != "context" || len(last.Elements) != 1 ||
			!strings.Contains(last.Elements[0].Text, "<https://deploywatch.example.com/api/v1/deploys/gha-checkout-8123456789-5|") {
			t.Errorf("slack message %d: the context block links to the deploy: %+v", i, last)
		}
	}
	// A URL from the environment is recorded by its origin only.
	for _, d := range e.deliveries(t) {
		if d.Receiver == "slack-deploys" && (strings.Contains(d.URL, "T0KEN") || strings.Contains(d.URL, "/hooks")) {
			t.Errorf("a delivery event shows the secret URL: %s", d.URL)
		}
	}
}

// TestDeliverySkipsDryRunAndSilencedAlertsAndMatches: dry-run and silenced
// alerts are recorded by the engine but sent nowhere; a receiver with a
// match gets only the alerts it matches.
func TestDeliverySkipsDryRunAndSilencedAlertsAndMatches(t *testing.T) {
	e := newNATSEnv(t)
	all := newTestReceiver(t, nil)
	payments := newTestReceiver(t, nil)
	rs := receiversFile(t, fmt.Sprintf(`
receivers:
  - name: all
    url: %s
  - name: payments-critical
    url: %s
    match:
      service: payments
      severity: [critical]
`, all.url(), payments.url()), nil)
	rs.Retry = fastRetry()
	runDelivery(t, e, DeliveryConfig{Receivers: rs})
	dry := testAlert("checkout", "d-dry", schema.AlertFiring)
	dry.DryRun = true
	silenced := testAlert("checkout", "d-silenced", schema.AlertFiring)
	silenced.Silenced, silenced.SilenceID = true, "s-1"
	checkout := testAlert("checkout", "d-checkout", schema.AlertFiring)
	pay := testAlert("payments", "d-payments", schema.AlertFiring)
	for _, a := range []*schema.Alert{dry, silenced, checkout, pay} {
		e.publish(t, a, a.ID)
	}
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		ok, status := e.settled(t, "DEPLOYWATCH_SIGNALS", "webhook-delivery")
		return ok && len(all.requests()) == 2 && len(payments.requests()) == 1, status
	})
	var got []string
	for _, r := range all.requests() {
		var a schema.Alert
		_ = json.Unmarshal(r.body, &a)
		got = append(got, a.DeployID)
	}
	slices.Sort(got) // two alerts: no order between them
	if strings.Join(got, ",") != "d-checkout,d-payments" {
		t.Errorf("the catch-all receiver got %v, want the two alerts that are neither dry run nor silenced", got)
	}
	if n := len(e.deliveries(t)); n != 3 {
		t.Errorf("%d delivery events, want 3", n)
	}
}

// TestParseReceivers: defaults, references to the environment, and every
// problem of a file named at once by receiver and key.
func TestParseReceivers(t *testing.T) {
	env := map[string]string{"HOOK_SECRET": testSecret, "SLACK_URL": "https://hooks.slack.com/services/T0/B0/XYZ"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	rs, err := ParseReceivers([]byte(`
retry:
  max_elapsed_time: 1h
receivers:
  - name: ops
    url: https://user:pw@ops.example.com/hook?key=abc
    secret: env:HOOK_SECRET
    match: {env: production}
  - name: slack
    url: env:SLACK_URL
    format: slack
    timeout: 3s
`), lookup)
	if err != nil {
		t.Fatal(err)
	}
	ops, slack := rs.Receivers[0], rs.Receivers[1]
	want := DefaultRetry()
	want.MaxElapsedTime = time.Hour
	if rs.Retry != want {
		t.Errorf("retry %+v, want the defaults with max_elapsed_time 1h", rs.Retry)
	}
	if ops.Format != FormatDeploywatch || ops.Timeout != defaultReceiverTimeout || len(ops.key) != 24 ||
		ops.recordURL != "https://ops.example.com/hook?…" || len(ops.Match.Env) != 1 {
		t.Errorf("ops: format %s, timeout %s, key %d bytes, recorded url %s, match %+v", ops.Format, ops.Timeout, len(ops.key), ops.recordURL, ops.Match)
	}
	if slack.url != env["SLACK_URL"] || slack.recordURL != "https://hooks.slack.com/…" || slack.Timeout != 3*time.Second {
		t.Errorf("slack: url %s recorded as %s, timeout %s", slack.url, slack.recordURL, slack.Timeout)
	}

	f := func(yaml string, wantProblems ...string) {
		t.Helper()
		_, err := ParseReceivers([]byte(yaml), lookup)
		if err == nil {
			t.Fatalf("%s: want an error", yaml)
		}
		for _, p := range wantProblems {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("the error does not say %q:\n%v", p, err)
			}
		}
		if strings.Contains(err.Error(), "XYZ") || strings.Contains(err.Error(), "MfKQ9r8") {
			t.Errorf("the error shows a secret:\n%v", err)
		}
	}
	f(``, "receivers: none given")
	f(`receivers: [{name: a, url: https://a.example.com, fromat: slack}]`, "fromat")
	f(`
retry: {jitter: 1.5, multiplier: 0.5}
receivers:
  - {name: a, url: "ftp://a.example.com", format: teams}
  - {name: a, url: "env:NOPE", secret: "whsec_!!!"}
  - {url: "https://c.example.com", secret: "env:SLACK_URL_MISSING", headers: {webhook-id: x}}
  - {name: d, url: "env:SLACK_URL", timeout: -1s}
`,
		"retry.jitter", "retry.multiplier",
		`receiver "a": url must be an http:// or https:// URL; got "ftp://a.example.com"`,
		`receiver "a": format must be deploywatch, alertmanager or slack; got "teams"`,
		`receiver "a": the name is used twice`,
		`receiver "a": url: the environment variable NOPE is not set`,
		`receiver "a": secret: a "whsec_" secret must be followed by standard base64`,
		"receivers[2]: name is required",
		"receivers[2]: secret: the environment variable SLACK_URL_MISSING is not set",
		"receivers[2]: headers.webhook-id: is set by deploywatch itself",
		`receiver "d": timeout must be more than 0`)
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 2, 14, 0, 0, 0, time.UTC)
	f := func(v string, want time.Duration) {
		t.Helper()
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", v, got, want)
		}
	}
	f("", 0)
	f("7", 7*time.Second)
	f("-3", 0)
	f("Mon, 02 Mar 2026 14:00:30 GMT", 30*time.Second)
	f("999999", time.Hour)
	f("soon", 0)
}

func TestWebhookIDIsStablePerAlertEventAndReceiver(t *testing.T) {
	a, b := WebhookID("d:alert:r:1:firing", "ops"), WebhookID("d:alert:r:1:firing", "ops")
	if a != b || !strings.HasPrefix(a, "msg_") {
		t.Fatalf("WebhookID: %s, %s", a, b)
	}
	for _, other := range []string{WebhookID("d:alert:r:1:resolved", "ops"), WebhookID("d:alert:r:1:firing", "slack")} {
		if other == a {
			t.Fatalf("WebhookID is the same for another event or receiver: %s", a)
		}
	}
}
