package i18n

// consoleListMessages: the fleet page's first screen, the device list
// (端末一覧), the device page's answer and the audit log page (issue #19),
// and the names of controls, modes and roles the console shows. The
// vocabulary follows what municipal staff read in asset-management and
// device-control products (docs/console.md, glossary).
var consoleListMessages = []Message{
	{"console.nav.overview", "Overview", "準拠状況"},
	{"console.nav.devices", "Devices", "端末一覧"},
	{"console.nav.audit", "Audit log", "監査ログ"},

	// Controls (internal/policy names) and modes.
	{"console.control.agent", "Agent self-check", "エージェント自己診断"},
	{"console.control.media", "Removable media control", "外部記憶媒体制御"},
	{"console.control.login-mfa", "Multi-factor login", "多要素認証ログイン"},
	{"console.control.isolation", "Network isolation", "ネットワーク分離"},
	{"console.mode.enforce", "Enforce", "強制"},
	{"console.mode.monitor", "Monitor only", "監視のみ"},
	{"console.mode.off", "Off", "無効"},
	{"console.mode.unspecified", "Not set", "未設定"},

	// Fleet page, first screen.
	{"console.fleet.attention", "Terminals needing a person", "対応が必要な端末"},
	{"console.fleet.attention-help", "Non-compliant terminals first (longest first), then offline ones (silent longest first).", "非準拠の端末（期間の長い順）、次にオフラインの端末（報告が途絶えてからの長い順）です。"},
	{"console.fleet.attention-none", "No terminal needs a person now.", "現在、対応が必要な端末はありません。"},
	{"console.fleet.attention-more", "%d more: see the device list.", "ほか %d 台: 端末一覧で確認してください。"},
	{"console.fleet.all-noncompliant", "All non-compliant terminals", "非準拠の端末をすべて表示"},
	{"console.fleet.all-offline", "All offline terminals", "オフラインの端末をすべて表示"},
	{"console.col.since-when", "Since", "発生日時"},
	{"console.list.offline-reason", "No report since %s", "%s 以降、報告がありません"},

	// Device list.
	{"console.list.title", "Devices", "端末一覧"},
	{"console.list.any", "(all)", "（すべて）"},
	{"console.list.control", "Failing control", "失敗している制御"},
	{"console.list.sort", "Order", "並び順"},
	{"console.list.desc", "Descending", "降順"},
	{"console.list.sort.hostname", "Host name", "ホスト名"},
	{"console.list.sort.group", "Department, host name", "所属・ホスト名"},
	{"console.list.sort.last_seen", "Last report", "最終報告"},
	{"console.list.sort.failing_since", "Non-compliant since", "非準拠になった日時"},
	{"console.list.filter", "Show", "表示"},
	{"console.list.clear", "Clear filters", "条件をクリア"},
	{"console.list.csv", "Download CSV", "CSV をダウンロード"},
	{"console.list.range", "%d–%d of %d terminals", "全 %[3]d 台中 %[1]d〜%[2]d 台目"},
	{"console.list.none", "No terminal matches.", "条件に合う端末はありません。"},
	{"console.list.prev", "Previous page", "前のページ"},
	{"console.list.next", "Next page", "次のページ"},
	{"console.list.os", "OS", "OS"},
}
