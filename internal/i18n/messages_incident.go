package i18n

// incidentMessages: incident summaries (server/incident), stored as a
// message ID and arguments and shown in the reader's language. Every one
// takes only %s verbs: the arguments are already formatted (times in the
// reader's zone, durations, text from the terminal made one line).
var incidentMessages = []Message{
	{"incident.summary.noncompliant", "Non-compliant since %s", "%s から非準拠"},
	{"incident.summary.agent-silent", "No report since %s", "%s 以降、報告がありません"},
	{"incident.summary.enroll-guessing", "%[1]s or more enrolments refused for their token within %[2]s (from %[3]s)",
		"%[2]s 以内に登録トークンの拒否が %[1]s 回以上（送信元 %[3]s）"},
	{"incident.summary.usb-blocked", "%[1]s or more blocked writes to external storage media within %[2]s (last: %[3]s %[4]s)",
		"%[2]s 以内に外部記憶媒体への書込み阻止が %[1]s 回以上（最後: %[3]s %[4]s）"},
	{"incident.summary.mfa-lockout", "User %s locked out of multi-factor authentication", "利用者 %s の多要素認証がロックされました"},
	{"incident.summary.events-dropped", "%[1]s events could not be recorded (%[2]s)", "証跡イベント %[1]s 件を記録できませんでした（%[2]s）"},
	{"incident.summary.spool-damaged", "Spool damaged: about %[1]s events lost (%[2]s)", "スプール破損: 推定 %[1]s 件のイベントを失いました（%[2]s）"},
	{"incident.summary.tier-reachable", "This terminal can reach another tier: %s", "別の層（ネットワーク）に到達できます: %s"},
	{"incident.summary.media-writable", "External storage %[1]s (%[2]s) still writable after re-applying (%[3]s rounds): %[4]s",
		"外部記憶媒体 %[1]s（%[2]s）が再適用後も書込み可能（%[3]s 回連続）: %[4]s"},
	{"incident.summary.policy-drift", "%[1]s: enforcement changed on the terminal and was re-applied (%[2]s)",
		"%[1]s: 端末上で設定が変更され、再適用しました（%[2]s）"},
	{"incident.summary.policy-drift-not-reapplied", "%[1]s: enforcement changed on the terminal and was NOT re-applied (%[2]s)",
		"%[1]s: 端末上で設定が変更され、再適用できていません（%[2]s）"},
}

// IncidentSummary formats an incident summary stored as a message ID and
// formatted arguments. ok is false — and the caller shows the stored text
// instead — unless id is an "incident.summary.*" message of the catalog
// that takes exactly len(args) arguments.
func (p *Printer) IncidentSummary(id ID, args []string) (s string, ok bool) {
	return p.withArgs("incident.summary.", id, args)
}
