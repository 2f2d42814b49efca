package schema

import (
	"strings"
	"testing"
)

func TestDoraBands(t *testing.T) {
	p := func(v float64) *float64 { return &v }
	f := func(name, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	f("14 deploys", DeployFrequencyBand(14, 30), BandElite)
	f("7 deploys", DeployFrequencyBand(7, 7), BandElite)
	f("6 deploys", DeployFrequencyBand(6, 6), BandHigh)
	f("1 deploy", DeployFrequencyBand(1, 1), BandHigh)
	f("none, one in the month", DeployFrequencyBand(0, 1), BandMedium)
	f("none in the month", DeployFrequencyBand(0, 0), BandLow)

	f("lead null", LeadTimeBand(nil), "")
	f("lead 0", LeadTimeBand(p(0)), BandElite)
	f("lead 1 day − 1 s", LeadTimeBand(p(86399)), BandElite)
	f("lead 1 day", LeadTimeBand(p(86400)), BandHigh)
	f("lead 1 week", LeadTimeBand(p(7*86400)), BandMedium)
	f("lead 29.9 days", LeadTimeBand(p(29.9*86400)), BandMedium)
	f("lead 30 days", LeadTimeBand(p(30*86400)), BandLow)

	f("cfr null", ChangeFailureRateBand(nil), "")
	f("cfr 0", ChangeFailureRateBand(p(0)), BandElite)
	f("cfr 5%", ChangeFailureRateBand(p(0.05)), BandElite)
	f("cfr 1/10", ChangeFailureRateBand(p(1.0/10)), BandHigh)
	f("cfr 2/15", ChangeFailureRateBand(p(2.0/15)), BandMedium)
	f("cfr 15%", ChangeFailureRateBand(p(0.15)), BandMedium)
	f("cfr 1/6", ChangeFailureRateBand(p(1.0/6)), BandLow)

	f("restore null", TimeToRestoreBand(nil), "")
	f("restore 59 min", TimeToRestoreBand(p(59*60)), BandElite)
	f("restore 1 h", TimeToRestoreBand(p(3600)), BandHigh)
	f("restore 1 day", TimeToRestoreBand(p(86400)), BandMedium)
	f("restore 1 week", TimeToRestoreBand(p(7*86400)), BandLow)
}

func TestDoraFilterValidate(t *testing.T) {
	f := func(filter DoraFilter, fields ...string) {
		t.Helper()
		err := filter.Validate()
		var got []string
		if err != nil {
			for _, fe := range err.(*ValidationError).Fields {
				got = append(got, fe.Field)
			}
		}
		if strings.Join(got, ",") != strings.Join(fields, ",") {
			t.Errorf("%+v: fields %q (%v), want %q", filter, got, err, fields)
		}
	}
	f(DoraFilter{})
	f(DoraFilter{Weeks: 104, Service: "checkout", Env: "prod-eu", Team: "payments & risk"})
	f(DoraFilter{Weeks: 1})
	f(DoraFilter{Weeks: 105}, "weeks")
	f(DoraFilter{Weeks: -1}, "weeks")
	f(DoraFilter{Service: "check out"}, "service")
	f(DoraFilter{Env: "x' OR '1'='1"}, "env")
	f(DoraFilter{Weeks: 200, Service: "-a", Env: "/", Team: strings.Repeat("t", 1025)}, "weeks", "service", "env", "team")
}
