package mfa

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mamori-dev/mamori/internal/policy"
	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// Temporary codes for privileged users (issue 21). A temporary code
// replaces a user's second factor once; for root or an administrator of a
// terminal it is the key to that terminal, so it needs more than the
// helpdesk's word:
//
//   - the officer role (IssueMFATempCode refuses the helpdesk);
//   - one terminal: the code is bound to a device, the server sends it to
//     that device only, and the agent refuses a code bound to another
//     device should one arrive;
//   - at most MaxPrivilegedTempCodeTTL.
//
// Who is privileged (PrivilegedReason): the names root and Administrator
// (any case) and whatever has uid 0 — the agent reports uid-0 names —
// the members of the administrators' groups the agents report
// (DeviceFacts.privileged_users: sudo, wheel, admin on Linux), and the
// names in the login-mfa setting privileged_users of the base policy or
// any group. The reported facts are a terminal's word; the fixed names
// and the policy list hold even when a terminal reports nothing (Windows
// terminals report no group members yet: list their administrators in
// the policy).

// MaxPrivilegedTempCodeTTL is the longest a privileged user's code lives.
const MaxPrivilegedTempCodeTTL = time.Hour

// privilegedNames are privileged on every terminal, compared without case.
var privilegedNames = []string{"root", "administrator"}

// PrivilegedReason says why user is privileged ("" when not): a fixed
// name, the policy's privileged_users, or the terminals that report the
// user as an administrator (facts: device ID → its privileged_users).
func PrivilegedReason(user string, p *mamoriv1.Policy, facts map[string][]string) string {
	if slices.Contains(privilegedNames, strings.ToLower(user)) {
		return "name " + user
	}
	lists := [][]string{}
	if s, err := policy.LoginMFASettings(p); err == nil {
		lists = append(lists, s.PrivilegedUsers)
	}
	for _, g := range p.GetGroups() {
		v := g.GetControls()[policy.ControlLoginMFA].GetSettings()[policy.SettingMFAPrivilegedUsers]
		for _, u := range strings.Split(v, ",") {
			lists = append(lists, []string{strings.TrimSpace(u)})
		}
	}
	for _, l := range lists {
		if slices.Contains(l, user) {
			return "policy privileged_users"
		}
	}
	var on []string
	for dev, us := range facts {
		if slices.ContainsFunc(us, func(u string) bool { return strings.EqualFold(u, user) }) {
			on = append(on, dev)
		}
	}
	if len(on) > 0 {
		slices.Sort(on)
		if len(on) > 3 {
			return fmt.Sprintf("administrator on %s and %d more", strings.Join(on[:3], ", "), len(on)-3)
		}
		return "administrator on " + strings.Join(on, ", ")
	}
	return ""
}
