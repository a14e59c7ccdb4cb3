package admin

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/server/store"
)

// IncidentStore is what handling an incident needs.
type IncidentStore interface {
	GetIncident(ctx context.Context, id int64) (store.Incident, error)
	TransitionIncident(ctx context.Context, id int64, to, by, note string, at time.Time) (store.Incident, error)
}

// TransitionIncident acknowledges (to store.IncidentAcknowledged) or
// closes (store.IncidentClosed, a note required) an incident; audited
// incident.acknowledge or incident.close, naming the incident's rule and
// terminal. Refusals: ErrInvalid (field "note"), ErrNotFound, ErrConflict
// (the incident is not in a state that allows it).
func (s *Service) TransitionIncident(ctx context.Context, op Operator, id int64, to, note string) (store.Incident, error) {
	action := "incident.acknowledge"
	if to == store.IncidentClosed {
		action = "incident.close"
	}
	if (to == store.IncidentClosed && strings.TrimSpace(note) == "") || CheckString(action, "note", note, MaxReasonLength) != nil {
		return store.Incident{}, invalid(action, "note", "give a note (required to close, at most %d bytes)", MaxReasonLength)
	}
	// The record names the incident's rule and terminal, which never
	// change: they are read first, so the record commits with the move.
	in, err := s.st.GetIncident(ctx, id)
	if err != nil {
		return store.Incident{}, storeRefusal(action, "", err)
	}
	err = s.audited(ctx, op, action, strconv.FormatInt(in.ID, 10), in.Rule+" "+in.DeviceID+": "+note, func(ctx context.Context) error {
		var err error
		in, err = s.st.TransitionIncident(ctx, in.ID, to, op.ID, note, s.now())
		return err
	})
	if err != nil {
		return store.Incident{}, storeRefusal(action, "", err)
	}
	return in, nil
}
