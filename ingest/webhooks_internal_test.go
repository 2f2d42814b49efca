package ingest

import "testing"

func TestMatchWorkflow(t *testing.T) {
	f := func(pattern, name string, want bool) {
		t.Helper()
		if got := matchWorkflow(pattern, name); got != want {
			t.Errorf("matchWorkflow(%q, %q) = %v, want %v", pattern, name, got, want)
		}
	}
	f("Deploy*", "Deploy / production", true) // path.Match would say no
	f("Deploy*", "Deploy", true)
	f("Deploy*", "Build and deploy", false)
	f("*deploy*", "Build and deploy", true)
	f("Deploy ?", "Deploy 1", true)
	f("Deploy ?", "Deploy 12", false)
	f("Deploy[", "Deploy[", true)
	f("a.c", "abc", false) // regular expression characters are themselves
	f("*", "", true)
}
