package report

import "testing"

func TestDuration(t *testing.T) {
	f := func(seconds float64, want string) {
		t.Helper()
		if got := duration(seconds); got != want {
			t.Errorf("duration(%v) = %q, want %q", seconds, got, want)
		}
	}
	f(0, "0s")
	f(35.4, "35s")
	f(59.6, "1m")
	f(257, "4m 17s")
	f(600, "10m")
	f(2520, "42m")
	f(3599, "1h")
	f(11400, "3h 10m")
	f(86399, "1d")
	f(93600, "1d 2h")
	f(7*86400, "7d")
}

func TestDelta(t *testing.T) {
	f := func(k key, cur, ref float64, want string) {
		t.Helper()
		if got := k.compareTo(cur, true, ref, "was ").Label(); got != want {
			t.Errorf("%s %v against %v = %q, want %q", k.ID, cur, ref, got, want)
		}
	}
	frequency, lead, cfr := keys[0], keys[1], keys[2]
	f(frequency, 12, 9, "▲ +3 (was 9), better")
	f(frequency, 2, 9, "▼ −7 (was 9), worse")
	f(frequency, 9, 9, "= same (was 9)")
	f(lead, 11400, 15180, "▼ −25% (was 4h 13m), better")
	f(lead, 600, 0, "▲ +10m (was 0s), worse")
	f(cfr, 2.0/12, 1.0/9, "▲ +5.6 pts (was 11.1%), worse")
	f(cfr, 0, 0.2, "▼ −20 pts (was 20%), better")
	if got := frequency.compareTo(3, false, 9, "was ").Label(); got != "–" {
		t.Errorf("an unmeasured week against 9 = %q, want –", got)
	}
}
