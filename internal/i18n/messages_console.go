package i18n

// consoleMessages are the web console's texts (server/web, IDs "console."),
// `mamorictl audit verify` ("ctl.audit.", "ctl.help.audit-verify",
// "ctl.summary.audit-verify") and the console options of mamori-server
// ("server.console.").
var consoleMessages = []Message{
	// mamorictl audit verify.
	{"ctl.summary.audit-verify", "recompute the audit log's hash chain", "監査ログのハッシュチェーンを再計算して検証"},
	{"ctl.help.audit-verify", "Usage: mamorictl audit verify\n\nReads the whole audit log (role officer) and recomputes its hash chain here, record by record. Names every record whose content, link or sequence number does not match. Exit 0: intact; exit 1: broken or the server refused.", "使い方: mamorictl audit verify\n\n監査ログ全体を読み込み（officer 権限が必要）、ハッシュチェーンを手元で 1 件ずつ再計算します。内容・前レコードとのつながり・連番が一致しないレコードをすべて示します。終了コード 0: 改ざんなし、1: チェーンの破損またはサーバーが拒否。"},
	{"ctl.audit.ok", "audit chain intact: %d records, last hash %s", "監査チェーンは正常です: %d 件、最後のハッシュ %s"},
	{"ctl.audit.gap", "seq %d: records after seq %d are missing (deleted?): %s", "連番 %d: 連番 %d の後のレコードが欠けています（削除された可能性）: %s"},
	{"ctl.audit.link", "seq %d: its prev_hash does not match the hash of seq %d (stored %s, expected %s): %s", "連番 %d: prev_hash が連番 %d のハッシュと一致しません（記録値 %s、期待値 %s）: %s"},
	{"ctl.audit.hash", "seq %d: content changed: stored hash %s, recomputed %s: %s", "連番 %d: 内容が変更されています。記録されたハッシュ %s、再計算 %s: %s"},
	{"ctl.audit.broken", "audit chain broken: %d problem(s) in %d records, first at seq %d", "監査チェーンが壊れています: %d 件の問題（全 %d 件中）、最初は連番 %d"},

	// mamori-server: console options.
	{"server.console.listening", "console listening on https://%s", "コンソールは https://%s で待ち受けています"},
	{"server.console.login-set", "console sign-in set for %s: login %s; TOTP secret (shown once, add it to an authenticator app): %s", "%s のコンソールのサインインを設定しました。ログイン名 %s、TOTP シークレット（この一度だけ表示されます。認証アプリに登録してください）: %s"},
	{"server.console.totp-url", "otpauth URL (shown once): %s", "otpauth URL（この一度だけ表示されます）: %s"},
	{"server.console.password-file", "cannot read --password-file: %v", "--password-file を読めません: %v"},

	// Web console (server/web).
	{"console.nav.fleet", "Fleet", "端末一覧"},
	{"console.nav.search", "Search", "検索"},
	{"console.nav.logout", "Sign out", "サインアウト"},
	{"console.none", "None.", "ありません。"},

	{"console.login.title", "Sign in", "サインイン"},
	{"console.login.login", "Login name", "ログイン名"},
	{"console.login.password", "Password", "パスワード"},
	{"console.login.totp", "6-digit code from your authenticator app", "認証アプリの 6 桁のコード"},
	{"console.login.submit", "Sign in", "サインイン"},
	{"console.login.expired", "Your session ended. Please sign in again.", "セッションが終了しました。もう一度サインインしてください。"},
	{"console.login.failed", "Sign-in failed: check the login name, password and code. Repeated failures lock the login for a while.", "サインインできませんでした。ログイン名、パスワード、コードを確認してください。失敗が続くと、しばらくサインインできなくなります。"},
	{"console.login.locked", "Too many failed sign-ins: this login is locked for a while. Try again later or ask an administrator.", "サインインの失敗が続いたため、このログインはしばらくロックされています。時間をおいて試すか、管理者に連絡してください。"},

	{"console.err.title", "Error", "エラー"},
	{"console.err.internal", "Something went wrong on the server. The server log has the details.", "サーバーでエラーが発生しました。詳細はサーバーのログを確認してください。"},
	{"console.err.signed-out", "You are not signed in (or your session ended): sign in and try again.", "サインインしていないか、セッションが終了しています。サインインしてやり直してください。"},
	{"console.err.forbidden", "Your role may not do this. Ask an officer or administrator.", "あなたの権限ではこの操作はできません。情報セキュリティ責任者か管理者に依頼してください。"},
	{"console.err.csrf", "The form expired or did not come from this console. Reload the page and try again.", "フォームの有効期限が切れたか、このコンソールから送信されたものではありません。ページを再読み込みしてやり直してください。"},
	{"console.err.bad-form", "The request could not be read.", "要求を読み取れませんでした。"},
	{"console.err.no-device", "No such device.", "該当する端末はありません。"},
	{"console.err.reason", "A reason (at most 512 bytes) is required: it goes into the audit log.", "理由（512 バイト以内）が必要です。監査ログに記録されます。"},

	{"console.state.compliant", "Compliant", "準拠"},
	{"console.state.noncompliant", "Non-compliant", "非準拠"},
	{"console.state.offline", "Offline", "オフライン"},
	{"console.state.never_reported", "Never reported", "未報告"},
	{"console.state.revoked", "Revoked", "失効"},
	{"console.state.unspecified", "Unknown", "不明"},
	{"console.cstate.enforced", "Enforced", "適用中"},
	{"console.cstate.monitoring", "Monitoring", "監視のみ"},
	{"console.cstate.degraded", "Degraded", "一部機能低下"},
	{"console.cstate.failed", "Failed", "失敗"},
	{"console.cstate.not_applicable", "Not applicable", "対象外"},
	{"console.cstate.unspecified", "Unknown", "不明"},

	{"console.fleet.title", "Fleet compliance", "端末の準拠状況"},
	{"console.fleet.total", "%d devices in all; policy version %d", "全 %d 台、ポリシーのバージョン %d"},
	{"console.fleet.noncompliant", "Non-compliant devices (longest failing first)", "非準拠の端末（非準拠の期間が長い順）"},
	{"console.fleet.more", "More non-compliant devices exist than shown here: use mamorictl devices --noncompliant for the full list.", "ここに表示しきれない非準拠の端末があります。全件は mamorictl devices --noncompliant で確認できます。"},
	{"console.fleet.none", "No device is non-compliant.", "非準拠の端末はありません。"},

	{"console.col.hostname", "Hostname", "ホスト名"},
	{"console.col.reasons", "Why", "理由"},
	{"console.col.failing-since", "Failing since", "非準拠になった日時"},
	{"console.col.last-seen", "Last report", "最終報告"},
	{"console.col.state", "State", "状態"},
	{"console.col.device-id", "Device ID", "端末 ID"},
	{"console.col.agent", "Agent version", "エージェントのバージョン"},
	{"console.col.key", "Device key", "端末の鍵"},
	{"console.col.enrolled", "Enrolled", "登録日時"},
	{"console.col.policy", "Policy version in force", "適用中のポリシーのバージョン"},
	{"console.col.revoked", "Revoked", "失効日時"},
	{"console.col.control", "Control", "制御"},
	{"console.col.mode", "Mode", "モード"},
	{"console.col.since", "In this state since", "この状態になった日時"},
	{"console.col.evidence", "Evidence", "根拠"},
	{"console.col.time", "Time", "日時"},
	{"console.col.change", "Change", "変化"},
	{"console.col.detail", "Detail", "詳細"},
	{"console.col.kind", "Event", "イベント"},
	{"console.col.attributes", "Attributes", "属性"},

	{"console.search.title", "Find a device", "端末の検索"},
	{"console.search.label", "Hostname (or its beginning)", "ホスト名（前方一致）"},
	{"console.search.submit", "Search", "検索"},
	{"console.search.results", "%d found", "%d 件見つかりました"},

	{"console.device.failing-since", "Non-compliant since %s", "%s から非準拠"},
	{"console.device.facts", "Device", "端末情報"},
	{"console.device.attested", "attested in the TPM", "TPM 内の鍵として証明済み"},
	{"console.device.controls", "Controls", "制御の状態"},
	{"console.device.history", "Changes of control state", "制御の状態の変化"},
	{"console.device.events", "Recent events", "最近のイベント"},
	{"console.device.actions", "Actions", "操作"},
	{"console.device.revoke-reason", "Reason for revoking (goes into the audit log)", "失効させる理由（監査ログに記録されます）"},
	{"console.device.revoke", "Revoke this device", "この端末を失効させる"},
	// Non-compliance reasons (server/compliance), shown in the reader's
	// language when the console recognises the stored English text.
	{"console.reason.control", "%[1]s: %[2]s (%[3]s)", "%[1]s: %[2]s（%[3]s）"},
	// Between the problems of one control's detail.
	{"console.detail.sep", "; ", "；"},
	{"console.reason.control-bare", "%[1]s: %[2]s", "%[1]s: %[2]s"},
	{"console.reason.not-reported", "%s: not reported", "%s: 報告がありません"},
	{"console.reason.tpm-key", "agent: the device key is not attested in a TPM (policy require_tpm_key)", "agent: 端末鍵が TPM 内にあることが証明されていません（ポリシー require_tpm_key）"},
}
