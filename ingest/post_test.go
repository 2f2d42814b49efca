package ingest_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

// largeDeployJSON is a valid deploy of checkout of about 4 MB: the 1,000
// commits of a monorepo release, each a squash merge with a long message.
func largeDeployJSON(finished time.Time) []byte {
	var msg strings.Builder
	msg.WriteString("checkout: move payment capture to the async PSP client (#4471)\n\n")
	for i := 0; msg.Len() < 3900; i++ {
		fmt.Fprintf(&msg, "* retry capture %d times on 502/503 from the PSP with jittered backoff; log the PSP request id\n", i+2)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `{"type":"deploy","id":"checkout-release-2026.48","service":"checkout","env":"prod","version":"v2.15.0",`+
		`"previous_version":"v2.14.3","status":"succeeded","started_at":%q,"finished_at":%q,"commits":[`,
		rfc3339(finished.Add(-11*time.Minute)), rfc3339(finished))
	for i := range 1000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sha":"%040x","time":%q,"author":"Ana Souza","message":%q}`,
			0x9f2c1e7b4a+i, rfc3339(finished.Add(-time.Duration(i+20)*time.Minute)), msg.String())
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// A valid event too large for one event log message can never be
// published: it is a 413 naming the event, its size, the limit and the
// field to shorten, and nothing of the request is stored. Before, it was a
// 503, and a sender that retries as told retried for ever.
func TestPostEventTooLargeForTheEventLog(t *testing.T) {
	// A NATS with its default max_payload, as an external one has; the
	// API's default message limit (960 KiB) fits it.
	h := start(t, setup{maxPayload: 1 << 20})
	now := time.Now().Add(-time.Minute)
	large := largeDeployJSON(now)
	if len(large) < 4_000_000 {
		t.Fatalf("the deploy is %d bytes, want about 4 MB", len(large))
	}
	small := string(deployJSON("argo-checkout-4413", "checkout", "succeeded", now))
	before := h.counts()
	f := func(path string, body []byte) {
		t.Helper()
		r := h.postJSON(path, body)
		wantCode(t, r, http.StatusRequestEntityTooLarge)
		var e errorBody
		r.json(t, &e)
		for _, want := range []string{"nothing from this request was stored", "deploy event checkout-release-2026.48:succeeded", "limit of 983040 bytes", "commits"} {
			if !strings.Contains(e.Error, want) {
				t.Errorf("POST %s: the answer %q does not say %q", path, e.Error, want)
			}
		}
		if after := h.counts(); !mapsEqual(after, before) {
			t.Fatalf("POST %s: stream message counts went from %v to %v: nothing of a refused request may be stored", path, before, after)
		}
	}
	f("/api/v1/events", large)
	f("/api/v1/events", []byte("["+small+",\n"+string(large)+"]"))
	f("/api/v1/deploys", large)

	// Sent again the same way it is the same answer, and the valid deploy
	// alone is stored.
	f("/api/v1/events", large)
	wantCode(t, h.postJSON("/api/v1/events", []byte(small)), http.StatusAccepted)
	if msgs := h.stored(schema.ChangesStream); len(msgs) != 1 || msgs[0].Header.Get("Nats-Msg-Id") != "argo-checkout-4413:succeeded" {
		t.Fatalf("the event log holds %d changes, want the small deploy alone", len(msgs))
	}
}
