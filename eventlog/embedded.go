package eventlog

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedOptions configure the nats-server that runs inside deploywatch.
type EmbeddedOptions struct {
	// Host and Port to listen on for other NATS clients; Port -1 picks a free one.
	Host string
	Port int
	// StoreDir holds JetStream's files.
	StoreDir string
	// Token, when set, is required from clients.
	Token string
	// MaxPayload bounds one message; 0 means 8 MiB.
	MaxPayload int32
	Logger     *slog.Logger
}

// StartEmbedded starts an in-process nats-server with JetStream enabled and
// waits until it accepts connections.
func StartEmbedded(opts EmbeddedOptions) (*server.Server, error) {
	if opts.MaxPayload == 0 {
		opts.MaxPayload = 8 << 20
	}
	sopts := &server.Options{
		ServerName:            "deploywatch",
		Host:                  opts.Host,
		Port:                  opts.Port,
		JetStream:             true,
		StoreDir:              opts.StoreDir,
		MaxPayload:            opts.MaxPayload,
		Authorization:         opts.Token,
		NoSigs:                true,
		DisableShortFirstPing: true,
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("cannot configure the embedded NATS server: %w", err)
	}
	if opts.Logger != nil {
		srv.SetLoggerV2(&natsLogger{log: opts.Logger}, false, false, false)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded NATS server did not accept connections on %s:%d within 15s: is the port free?", opts.Host, opts.Port)
	}
	return srv, nil
}

// natsLogger hands nats-server's log lines to slog.
type natsLogger struct{ log *slog.Logger }

func (l *natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Tracef(format string, v ...any)  {}
