package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestNATSPublisherDeployReachesAPI publishes to serve's embedded NATS as a
// service that speaks NATS would (README: "Publishing straight to NATS"): a
// deploy on its inbox subject shows up in GET /api/v1/deploys, and an invalid
// one lands in the dead-letter stream with the reason and nowhere else.
func TestNATSPublisherDeployReachesAPI(t *testing.T) {
	const token = "nats-publisher-token"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := ln.Addr().String()
	ln.Close()
	p := startServe(t, testenv.ClickHouse(t), func(c *serveConfig) {
		c.natsListen, c.natsToken = natsAddr, token
	})

	nc, err := nats.Connect("nats://"+natsAddr, nats.Token(token), nats.Name("search-api deployer"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	finished := time.Now().UTC().Add(-20 * time.Minute).Truncate(time.Second)
	deploy := fmt.Appendf(nil, `{"type":"deploy","id":"search-api-2026-11-22.3","service":"search-api","env":"production",`+
		`"version":"v3.8.1","previous_version":"v3.8.0","status":"succeeded","started_at":%q,"finished_at":%q,"strategy":"rolling"}`,
		finished.Add(-3*time.Minute).Format(time.RFC3339), finished.Format(time.RFC3339))
	ctx := context.Background()
	ack, err := js.Publish(ctx, "deploywatch.in.deploy.search-api", deploy, jetstream.WithMsgID("search-api-2026-11-22.3"))
	if err != nil {
		t.Fatalf("cannot publish the deploy: %v", err)
	}
	if ack.Stream != schema.InboxStream {
		t.Fatalf("the deploy was acknowledged by %s, want %s", ack.Stream, schema.InboxStream)
	}
	bad := []byte(strings.Replace(string(deploy), `"version":"v3.8.1"`, `"version":""`, 1))
	if _, err := js.Publish(ctx, "deploywatch.in.deploy.search-api", bad, jetstream.WithMsgID("search-api-bad")); err != nil {
		t.Fatalf("cannot publish the bad deploy: %v", err)
	}

	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		var answer struct {
			Deploys []schema.DeployState `json:"deploys"`
		}
		code := p.getJSON(t, "/api/v1/deploys?service=search-api", &answer)
		ok := code == 200 && len(answer.Deploys) == 1 && answer.Deploys[0].ID == "search-api-2026-11-22.3" &&
			answer.Deploys[0].Version == "v3.8.1" && answer.Deploys[0].Status == schema.DeploySucceeded
		return ok, fmt.Sprintf("GET /api/v1/deploys answered %d with %+v", code, answer.Deploys)
	})

	dl, err := js.Stream(ctx, schema.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		m, err := dl.GetLastMsgForSubject(ctx, schema.DeadLetterSubject(schema.InboxStream))
		if err != nil {
			return false, "no dead letter yet: " + err.Error()
		}
		reason := m.Header.Get(schema.DeadLetterReasonHeader)
		return strings.Contains(reason, "version:") && m.Header.Get(schema.DeadLetterMsgIDHeader) == "search-api-bad",
			"dead letter with reason " + reason
	})
	if n := p.count(t, "SELECT count() FROM deploy_changes WHERE service = ?", "search-api"); n != 1 {
		t.Fatalf("deploy_changes holds %d rows of search-api, want 1 (the valid deploy only)", n)
	}
}
