package i18n

// agentMessages are mamori-agent's texts (agent/cli, agent/cmd). IDs start
// with "agent.".
var agentMessages = []Message{
	{"agent.usage", `mamori-agent — keeps this terminal's security controls in force and reports them.

Usage:
  mamori-agent <command> [flags]

Commands:
  run         run in the foreground (Ctrl-C stops)
  enroll      enrol this terminal: --server HOST:PORT --token TOKEN --ca-fingerprint SHA256
  install     install the system service
  uninstall   remove the system service
  start       start the system service
  stop        stop the system service
  status      show the service and enrolment state
  media list  show removable devices and what the policy does to each
  mfa pin-enroll USER  give USER a PIN bound to this terminal's TPM (asks twice; root)
  mfa pin-remove USER  remove USER's PIN (back to TOTP codes)
  isolation-boot  put the last isolation ruleset back in place (at boot, before the network)
  credprov-remove  Windows: unregister the credential provider and filter (the MSI runs it on uninstall)
  version     print the version

Flags:
  --config PATH      config file (default %[1]s)
  --state-dir DIR    state directory (default %[2]s)

Enrolment values may also come from MAMORI_SERVER, MAMORI_TOKEN and
MAMORI_CA_FINGERPRINT or the config file; flags win over the environment,
the environment over the file.
`, `mamori-agent — この端末のセキュリティ対策を維持し、その状態を報告します。

使い方:
  mamori-agent <コマンド> [フラグ]

コマンド:
  run         フォアグラウンドで実行します (Ctrl-C で停止)
  enroll      この端末を登録します: --server ホスト:ポート --token トークン --ca-fingerprint SHA256
  install     システムサービスとして登録します
  uninstall   システムサービスを削除します
  start       サービスを開始します
  stop        サービスを停止します
  status      サービスと登録の状態を表示します
  media list  リムーバブルデバイスと、ポリシーによる扱いを表示します
  mfa pin-enroll ユーザー  この端末の TPM に結び付いた PIN を設定します (2 回入力、root)
  mfa pin-remove ユーザー  PIN を削除します (確認コードに戻ります)
  isolation-boot  最後に適用した分離ルールセットを戻します (起動時、ネットワークより前)
  credprov-remove  Windows: 資格情報プロバイダーとフィルターの登録を解除します (MSI がアンインストール時に実行)
  version     バージョンを表示します

フラグ:
  --config パス        設定ファイル (既定値 %[1]s)
  --state-dir ディレクトリ  状態ディレクトリ (既定値 %[2]s)

登録に使う値は環境変数 MAMORI_SERVER、MAMORI_TOKEN、MAMORI_CA_FINGERPRINT
または設定ファイルでも指定できます。優先順位はフラグ、環境変数、設定ファイルの順です。
`},
	{"agent.err.unknown-command", "unknown command %q: run mamori-agent help", "不明なコマンドです: %q (mamori-agent help を実行してください)"},
	{"agent.err.flags", "%v: run mamori-agent help", "フラグが正しくありません: %v (mamori-agent help を実行してください)"},
	{"agent.err.config", "configuration problem: %v", "設定に問題があります: %v"},
	{"agent.isolation-boot.done", "isolation: %d rules in force from the last policy (IP forwarding switched off: %t)", "分離: 前回のポリシーのルール %d 件を適用しました (IP フォワーディングの無効化: %t)"},
	{"agent.isolation-boot.none", "isolation: no ruleset saved (monitor mode or not enrolled); nothing to do", "分離: 保存されたルールセットはありません (監視モードまたは未登録)。何もしません"},
	{"agent.err.isolation-boot", "%v (nothing changed; mamori-agent puts its ruleset in place when it starts)", "%v (何も変更していません。mamori-agent が起動時にルールセットを適用します)"},
	{"agent.err.start", "mamori-agent could not start: %v", "mamori-agent を開始できませんでした: %v"},
	{"agent.enrolled", "enrolled: device %s at %s (policy version %d)", "登録しました: 端末 ID %s、サーバー %s (ポリシー版 %d)"},
	{"agent.err.enroll", "enrolment failed: %v", "登録できませんでした: %v"},
	{"agent.status", "service: %s", "サービス: %s"},
	{"agent.status.running", "running", "実行中"},
	{"agent.status.stopped", "stopped", "停止中"},
	{"agent.status.unknown", "unknown", "不明"},
	{"agent.status.not-installed", "not installed (run: mamori-agent install)", "未登録です (mamori-agent install を実行してください)"},
	{"agent.service.done", "%s: done", "%s: 完了しました"},
	{"agent.err.service", "%s failed: %v (run as root/Administrator)", "%s に失敗しました: %v (root または管理者として実行してください)"},
	{"agent.err.run", "the agent stopped with an error: %v", "エージェントがエラーで停止しました: %v"},
	{"agent.status.device", "enrolled as device %s, servers %s", "登録済み: 端末 ID %s、サーバー %s"},
	{"agent.status.not-enrolled", "not enrolled (%v)", "未登録です (%v)"},
	{"agent.mfa.pin-prompt", "New PIN for %s: ", "%s の新しい PIN: "},
	{"agent.mfa.pin-again", "PIN again: ", "もう一度 PIN: "},
	{"agent.mfa.pin-mismatch", "the two PINs differ; nothing changed", "2 回の PIN が一致しません。変更していません"},
	{"agent.mfa.pin-enrolled", "PIN key for %s created in this terminal's TPM; %s logs in with the PIN from now on", "%s の PIN 鍵をこの端末の TPM に作成しました。以後 %s は PIN でログインします"},
	{"agent.mfa.pin-removed", "PIN of %s removed; %s logs in with a verification code again", "%s の PIN を削除しました。%s は確認コードでログインします"},
	{"agent.err.mfa", "%v", "%v"},
	{"agent.status.cert", "certificate valid until %s; renewed automatically from %s", "証明書の有効期限: %s (%s 以降に自動で更新します)"},
	{"agent.status.cert-renew-due", "certificate valid until %s; renewal is due (the running agent renews it at its next report)", "証明書の有効期限: %s (更新時期です。実行中のエージェントが次回の報告時に更新します)"},
	{"agent.status.cert-expired", "CERTIFICATE EXPIRED at %s: the server refuses this terminal. Ask the helpdesk for a new enrolment token and run: mamori-agent enroll --token TOKEN", "証明書の有効期限が切れています (%s): サーバーはこの端末を受け付けません。ヘルプデスクに新しい登録トークンを依頼し、mamori-agent enroll --token TOKEN を実行してください"},
}
