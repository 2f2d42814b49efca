package alerts

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The embedded nats-server, the NATS connections, the HTTP receivers and
	// the agents' commands are all stopped in t.Cleanup or before the test
	// returns; whatever is still running afterwards leaked.
	goleak.VerifyTestMain(m)
}
