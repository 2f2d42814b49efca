package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/ingest"
)

func TestRemoteWriteFlags(t *testing.T) {
	var f remoteWriteFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse([]string{
		"--remote-write-service-labels", "app_kubernetes_io_name, job",
		"--remote-write-version-label", "app_kubernetes_io_version",
		"--remote-write-default-env", "staging",
		"--remote-write-max-series", "50000",
		"--remote-write-request-counters", "http_server_requests_seconds_count",
		"--remote-write-latency-histograms", "http_server_requests_seconds_bucket",
		"--remote-write-error-status", "5..|429",
		"--remote-write-finish-delay", "7s",
	}); err != nil {
		t.Fatal(err)
	}
	if f.finishDelay != 7*time.Second {
		t.Errorf("finish delay %s, want 7s", f.finishDelay)
	}
	// serve registers the same flags.
	serveFlags := serveCommand(io.Discard).FlagSet
	fs.VisitAll(func(fl *flag.Flag) {
		if serveFlags.Lookup(fl.Name) == nil {
			t.Errorf("serve has no --%s", fl.Name)
		}
	})
	got, err := f.config()
	if err != nil {
		t.Fatal(err)
	}
	want := ingest.RemoteWriteConfig{
		RequestCounters: []string{"http_server_requests_seconds_count"}, LatencyHistograms: []string{"http_server_requests_seconds_bucket"},
		ServiceLabels: []string{"app_kubernetes_io_name", "job"}, VersionLabel: "app_kubernetes_io_version",
		ErrorStatus: "5..|429", DefaultEnv: "staging", MaxSeries: 50000,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("config:\n got %+v\nwant %+v", got, want)
	}

	// Unset flags leave ingest's defaults.
	if got, err := (&remoteWriteFlags{}).config(); err != nil || !reflect.DeepEqual(got, ingest.RemoteWriteConfig{}) {
		t.Fatalf("no flags: %+v, %v; want the zero config (ingest's defaults)", got, err)
	}

	// Every problem at once, by flag; serve refuses to start with them.
	bad := remoteWriteFlags{errorStatus: "5..(", latencyHistograms: "http_request_duration_seconds", maxSeries: -1, maxInflight: -2, finishDelay: -time.Second}
	_, err = bad.config()
	for _, wantMsg := range []string{"--remote-write-error-status", "--remote-write-latency-histograms", "--remote-write-max-series", "--remote-write-max-inflight", "--remote-write-finish-delay"} {
		if err == nil || !strings.Contains(err.Error(), wantMsg) {
			t.Errorf("invalid flags: %v, want it to name %s", err, wantMsg)
		}
	}
	c := serveConfig{dataDir: t.TempDir(), remoteWrite: bad}
	if err := serve(context.Background(), c, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "--remote-write-error-status") {
		t.Fatalf("serve with invalid remote_write flags: %v, want it to refuse to start", err)
	}
}
