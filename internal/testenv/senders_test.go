package testenv

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// fatalRecorder is a testing.TB whose Fatalf records the message and stops
// the goroutine, as the real one does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// A missing sender fails the test (CI must not pass without it) and says how to
// install it; it never skips.
func TestMissingSenderFailsWithTheInstallInstruction(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	done := make(chan string, 1)
	go func() {
		defer func() { done <- rec.msg }()
		findSender(rec, "prometheus-not-installed-here")
	}()
	msg := <-done
	if !strings.Contains(msg, "prometheus-not-installed-here is not installed") || !strings.Contains(msg, "make setup") ||
		!strings.Contains(msg, "apt-get install prometheus prometheus-alertmanager") {
		t.Fatalf("findSender of a missing binary: %q, want a failure naming make setup and apt-get install", msg)
	}
	if got := findSender(t, "prometheus"); !strings.HasSuffix(got, "/prometheus") {
		t.Fatalf("findSender(prometheus) = %q", got)
	}
}
