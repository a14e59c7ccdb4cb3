package i18n

// eventKindMessages name the kinds of event agents send, for the console
// ("event.kind." + kind). A kind without a message is shown as it is.
var eventKindMessages = []Message{
	// media
	{"event.kind.usb_blocked", "USB device blocked", "USB デバイスの使用を禁止"},
	{"event.kind.set_read_only", "made read-only", "読み取り専用に設定"},
	{"event.kind.remounted_read_only", "remounted read-only", "読み取り専用で再マウント"},
	{"event.kind.would_block", "would be restricted (monitor mode)", "制限対象 (監視モード)"},
	{"event.kind.allowed", "allow-listed device usable", "許可リストのデバイスを使用可"},
	{"event.kind.media_exception_used", "exception (例外措置) used", "例外措置を使用"},
	{"event.kind.enforcement_failed", "enforcement failed: the device may be writable", "制御に失敗 (書き込み可能の可能性)"},
	{"event.kind.writes_cut", "busy read-write mount cut off (device offline, re-plugged read-only)", "書込み中のマウントを切断 (デバイスをオフラインにし読み取り専用で再接続)"},
	{"event.kind.reapplied", "found not as the policy demands and re-applied", "ポリシーと異なる状態を検出し再適用"},
	{"event.kind.still_writable", "still writable after re-applying", "再適用後も書き込み可能"},
	{"event.kind.media_file_written", "file written to removable media under an exception", "例外措置のもとで外部記憶媒体に書き込まれたファイル"},
	{"event.kind.media_file_events_dropped", "records of files written under an exception lost", "例外措置中のファイル書込み記録が欠落"},
	// login-mfa
	{"event.kind.mfa_success", "second factor accepted", "多要素認証に成功"},
	{"event.kind.mfa_failure", "second factor refused", "多要素認証に失敗"},
	{"event.kind.mfa_lockout", "locked out after failures", "失敗が続きロックアウト"},
	{"event.kind.mfa_recovery_used", "recovery code used", "リカバリーコードを使用"},
	{"event.kind.mfa_temp_code_used", "temporary code used", "一時コードを使用"},
	{"event.kind.mfa_grace_login", "login in the grace period, without a second factor", "猶予期間中の多要素なしログイン"},
	{"event.kind.mfa_unlocked", "lock-out cleared by the helpdesk", "ヘルプデスクがロックアウトを解除"},
	{"event.kind.login_mfa_drift", "credential provider registration changed (re-applied)", "資格情報プロバイダーの登録が変更されました (再適用)"},
	{"event.kind.mfa_would_refuse", "login that would be refused (monitor mode)", "拒否対象のログイン (監視モード)"},
	{"event.kind.mfa_pin_enrolled", "PIN key enrolled on this terminal", "この端末で PIN キーを登録"},
	{"event.kind.mfa_pin_removed", "PIN key removed from this terminal", "この端末から PIN キーを削除"},
	// isolation
	{"event.kind.finding", "isolation finding", "分離の検出事項"},
	{"event.kind.finding_cleared", "isolation finding cleared", "分離の検出事項が解消"},
	{"event.kind.ruleset_applied", "firewall rules applied", "ファイアウォール規則を適用"},
	{"event.kind.ruleset_reapplied", "firewall rules re-applied after a change", "変更されたファイアウォール規則を再適用"},
	{"event.kind.ruleset_removed", "firewall rules removed", "ファイアウォール規則を削除"},
	{"event.kind.forwarding_disabled", "IP forwarding switched off", "IP フォワーディングを無効化"},
	{"event.kind.sessions_cut", "connections to other tiers cut", "別の層への接続を切断"},
	// agent
	{"event.kind.state_changed", "control state changed", "制御の状態が変化"},
	{"event.kind.policy_applied", "policy applied", "ポリシーを適用"},
	{"event.kind.policy_rejected", "policy refused", "ポリシーを拒否"},
	{"event.kind.report_refused", "the server refused this terminal's report", "サーバーが報告を拒否"},
	{"event.kind.events_dropped", "events dropped (spool or disk full)", "イベントを破棄 (スプールまたはディスク満杯)"},
	{"event.kind.spool_damaged", "event spool damaged", "イベントスプールの破損"},
}
