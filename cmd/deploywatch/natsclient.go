package main

import (
	"flag"
	"fmt"
	"log/slog"

	"github.com/deploywatch/deploywatch/eventlog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsClientFlags are the flags of a command that connects to deploywatch's
// NATS as a client (replay, rollback-agent).
type natsClientFlags struct {
	url, user, password, token, creds string
}

func (f *natsClientFlags) register(fs *flag.FlagSet, urlHelp string) {
	fs.StringVar(&f.url, "nats-url", "nats://127.0.0.1:4222", urlHelp)
	fs.StringVar(&f.user, "nats-user", "", "user for --nats-url")
	fs.StringVar(&f.password, "nats-password", "", "password for --nats-user")
	fs.StringVar(&f.token, "nats-token", "", "token for --nats-url (serve's --nats-token)")
	fs.StringVar(&f.creds, "nats-creds", "", "credentials file for --nats-url")
}

func (f natsClientFlags) options(name string, log *slog.Logger) eventlog.ConnectOptions {
	return eventlog.ConnectOptions{
		URL: f.url, Name: name, User: f.user, Password: f.password,
		Token: f.token, CredsFile: f.creds, Logger: log,
	}
}

// connectJetStream connects to NATS and opens JetStream on the connection;
// the caller closes the connection.
func connectJetStream(o eventlog.ConnectOptions) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := eventlog.Connect(o)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("cannot open JetStream: %w", err)
	}
	return nc, js, nil
}
