//go:build unix

package main

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
)

// TestAlertRulesReloadOnSIGHUP: serve rereads --rules on SIGHUP. The new
// rules judge the next verdicts, the alert already firing does not fire
// again; a file that does not validate leaves the rules in use.
func TestAlertRulesReloadOnSIGHUP(t *testing.T) {
	natsSrv := testenv.NATS(t)
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(rules, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const first = `rules:
  - name: bad-anywhere
    condition: verdict.status == "bad"
`
	write(first)
	p := startServe(t, testenv.ClickHouse(t), func(c *serveConfig) {
		c.alerts.enabled = true
		c.alerts.rules = rules
		c.natsURL = natsSrv.ClientURL()
	})
	js := natsJetStream(t, natsSrv)
	hup := func(counter, want string) {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 10*time.Second, func() (bool, string) {
			got := metricSample(t, p, counter)
			return got == want, counter + " = " + got + ", want " + want
		})
	}
	at := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Second)
	publishSignal(t, js, badVerdict("d1", "search", "staging", at))
	firingAlerts(t, js, 1)

	write(first + `  - name: trial
    condition: verdict.score < 50
    actions: [rollback, notify]
    dry_run: true
`)
	hup("deploywatch_alerts_rule_reloads_total", "1")
	publishSignal(t, js, badVerdict("d1", "search", "staging", at.Add(10*time.Second)))
	firingAlerts(t, js, 2)

	write("rules:\n  - name: broken\n    condition: verdict.nope\n")
	hup("deploywatch_alerts_rule_reload_errors_total", "1")
	publishSignal(t, js, badVerdict("d2", "search", "staging", at.Add(20*time.Second)))
	got := firingAlerts(t, js, 4)
	slices.Sort(got)
	want := []string{"bad-anywhere d1", "bad-anywhere d2", "trial d1", "trial d2"}
	if !slices.Equal(got, want) {
		t.Errorf("firing alerts %v, want %v", got, want)
	}
	for _, ev := range signalsOn(t, js, "deploywatch.signals.alert.") {
		if a := ev.(*schema.Alert); a.Rule == "trial" && !a.DryRun {
			t.Errorf("the trial rule's alert is not a dry run: %+v", a)
		}
	}
	if evs := signalsOn(t, js, "deploywatch.signals.rollback."); len(evs) != 0 {
		t.Errorf("%d rollback signals from rules that do not roll back or are dry runs", len(evs))
	}
}
