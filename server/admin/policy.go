package admin

import (
	"context"
	"strconv"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
	"github.com/mamori-dev/mamori/server/store"
)

// PolicyStore is what setting the policy needs.
type PolicyStore interface {
	SetPolicy(ctx context.Context, c store.PolicyChange, expectedVersion int64) (*mamoriv1.Policy, error)
}

// SetPolicy stores p as the version after expectedVersion, the one the
// operator edited, so two officers cannot overwrite each other unseen;
// audited policy.set with the new version and the reason. Refusals:
// ErrInvalid (field "policy": the document; "reason"), ErrConflict (the
// policy changed since expectedVersion).
func (s *Service) SetPolicy(ctx context.Context, op Operator, p *mamoriv1.Policy, expectedVersion int64, reason string) (*mamoriv1.Policy, error) {
	const action = "policy.set"
	if err := policy.ValidateDocument(p); err != nil {
		return nil, &Error{Action: action, Kind: ErrInvalid, Field: "policy", Msg: "policy: " + err.Error(), Cause: err}
	}
	if err := checkReason(action, reason); err != nil {
		return nil, err
	}
	var saved *mamoriv1.Policy
	err := s.audited(ctx, op, action, strconv.FormatInt(expectedVersion+1, 10), reason, func(ctx context.Context) error {
		var err error
		saved, err = s.st.SetPolicy(ctx, store.PolicyChange{
			Policy: policy.Clone(p), Actor: op.ID, Reason: reason, At: s.now(),
		}, expectedVersion)
		return err
	})
	s.changed(PolicyChanged)
	if err != nil {
		return nil, storeRefusal(action, "", err)
	}
	return saved, nil
}
