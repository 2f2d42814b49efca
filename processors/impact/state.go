package impact

import (
	"slices"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

// State is what must survive a restart of one analysis: the deploy and how
// far its evaluation got. The samples come back from History.
type State struct {
	Deploy     schema.Deploy `json:"deploy"`
	Next       time.Time     `json:"next,omitzero"`
	RolledBack time.Time     `json:"rolled_back,omitzero"`
	Done       bool          `json:"done,omitempty"`
	// Bad analyses are kept after they are done, so that a rollback reopens
	// them to watch the recovery.
	Bad        bool `json:"bad,omitempty"`
	Recovering bool `json:"recovering,omitempty"`
	Recovered  bool `json:"recovered,omitempty"`
}

// Forget reports whether a saved state is of no more use.
func (st State) Forget() bool { return st.Done && (!st.Bad || st.Recovered) }

func (an *analysis) state() State {
	return State{Deploy: an.deploy, Next: an.next, RolledBack: an.rolledBack, Done: an.done,
		Bad: an.bad, Recovering: an.recovering, Recovered: an.recovered}
}

// Changed returns the state of every analysis that changed since the last
// call, finished ones included (with Done set), so they can be saved.
func (a *Analyzer) Changed() []State {
	var out []State
	for _, an := range a.recent {
		if an.dirty {
			out = append(out, an.state())
			an.dirty = false
		}
	}
	return out
}

// Restore brings back an analysis saved before a restart.
func (a *Analyzer) Restore(st State) {
	if st.Forget() || st.Deploy.ID == "" || a.byID[st.Deploy.ID] != nil {
		return
	}
	a.Deploy(&st.Deploy)
	an := a.byID[st.Deploy.ID]
	if an == nil {
		return
	}
	an.next, an.rolledBack, an.dirty = st.Next, st.RolledBack, false
	an.bad, an.recovering, an.recovered = st.Bad, st.Recovering, st.Recovered
	if st.Done { // bad, waiting for its rollback
		an.done = true
		s := a.seriesOf(an.deploy.Service, an.deploy.Env)
		s.open = slices.DeleteFunc(s.open, func(o *analysis) bool { return o == an })
	}
}

// Need is the span of samples the open analyses of one series need back
// after a restart.
type Need struct {
	Service, Env string
	From         time.Time
}

// Needs lists, per series with open analyses, where its samples must start.
func (a *Analyzer) Needs() []Need {
	var out []Need
	for k, s := range a.series {
		if len(s.open) == 0 {
			continue
		}
		from := s.open[0].start()
		for _, an := range s.open {
			from = earliest(from, an.start())
		}
		p := a.cfg.Policies.For(k.service)
		out = append(out, Need{Service: k.service, Env: k.env, From: from.Add(-p.BeforeWindow)})
	}
	slices.SortFunc(out, func(x, y Need) int { return seriesKey{x.Service, x.Env}.less(seriesKey{y.Service, y.Env}) })
	return out
}

// Load adds samples read back from History, without the lateness check.
func (a *Analyzer) Load(service, env string, pts []Point) {
	if !a.cfg.Shard.Owns(service) {
		return
	}
	s := a.seriesOf(service, env)
	for _, p := range pts {
		a.add(s, p)
	}
}
