package schema

import "strings"

// IncidentStatus is a step of an incident's life.
type IncidentStatus string

const (
	IncidentOpened   IncidentStatus = "opened"
	IncidentResolved IncidentStatus = "resolved"
)

// Incident is an incident opened or resolved; all changes of one incident share its ID.
type Incident struct {
	ID       string         `json:"id"`
	Type     Type           `json:"type"`
	Service  string         `json:"service"`
	Env      string         `json:"env"`
	Status   IncidentStatus `json:"status"`
	Time     Time           `json:"time"`
	Title    string         `json:"title,omitempty"`
	Source   string         `json:"source,omitempty"`
	DeployID string         `json:"deploy_id,omitempty"`
}

func (in *Incident) EventType() Type      { return TypeIncident }
func (in *Incident) EventID() string      { return in.ID + ":" + string(in.Status) }
func (in *Incident) EventTime() Time      { return in.Time }
func (in *Incident) EventService() string { return in.Service }

// Normalize fills in the type and, for an opened incident without one, an id
// derived from what identifies it, so that a re-sent request gets the same id.
func (in *Incident) Normalize() {
	in.Type = TypeIncident
	in.Service = strings.TrimSpace(in.Service)
	in.Env = strings.TrimSpace(in.Env)
	if in.ID == "" && in.Status == IncidentOpened && !in.Time.Time.IsZero() {
		in.ID = derivedID("incident", in.Service, in.Env, in.Source, in.Title, in.Time.Time.UTC().Format("2006-01-02T15:04:05.999999999Z"))
	}
}

// Validate reports every problem of the incident at once.
func (in *Incident) Validate() error {
	var p problems
	in.validate(&p, "")
	return p.err()
}

func (in *Incident) validate(p *problems, prefix string) {
	checkID(p, join(prefix, "id"), in.ID)
	checkName(p, join(prefix, "service"), in.Service, true)
	checkName(p, join(prefix, "env"), in.Env, true)
	switch in.Status {
	case IncidentOpened:
	case IncidentResolved:
		if in.ID == "" {
			p.add(join(prefix, "id"), "is required to resolve an incident: send the id returned when it was opened")
		}
	case "":
		p.add(join(prefix, "status"), "is required: opened or resolved")
	default:
		p.addf(join(prefix, "status"), "must be opened or resolved; got %q", in.Status)
	}
	in.Time.check(p, join(prefix, "time"), true)
	checkText(p, join(prefix, "title"), in.Title, 1024)
	checkText(p, join(prefix, "source"), in.Source, 256)
	checkID(p, join(prefix, "deploy_id"), in.DeployID)
}

// DeployIncidentID is the id of the incident a bad deploy caused: one per
// deploy, whichever of its bad verdict or firing alerts opened it first.
func DeployIncidentID(deployID string) string {
	return derivedID("incident", "deploy", deployID)
}
