package testenv

import (
	"testing"

	"github.com/deploywatch/deploywatch/eventlog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// NATS starts an embedded nats-server with JetStream on a free port, its files in
// a temp dir, shut down when the test ends.
func NATS(t testing.TB) *server.Server {
	t.Helper()
	srv, err := eventlog.StartEmbedded(eventlog.EmbeddedOptions{Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("cannot start embedded NATS: %v", err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// NATSConn connects to srv, closed when the test ends.
func NATSConn(t testing.TB, srv *server.Server) *nats.Conn {
	t.Helper()
	nc, err := eventlog.Connect(eventlog.ConnectOptions{URL: srv.ClientURL(), Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
