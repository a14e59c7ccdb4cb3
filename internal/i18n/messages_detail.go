package i18n

// detailMessages are the one-line details agent controls report
// (ControlStatus.detail_id and detail_args). IDs start with "detail.".
//
// The agent sends every argument as text (numbers converted with strconv),
// so every verb here is %s: an argument from a terminal can then never
// break the formatting on the server, whatever it holds. TestDetailMessages
// checks this. Arguments that are error texts stay English: they come from
// the operating system and libraries.
var detailMessages = []Message{
	// More than one problem at once: the count and the English sentences.
	{"detail.problems", "%[1]s problems: %[2]s", "%[1]s 件の問題: %[2]s"},

	// agent/control: what the Set reports when a control itself fails.
	{"detail.control.status-error", "status: %s", "状態を取得できません: %s"},
	{"detail.control.status-nothing", "status: control returned nothing", "状態を取得できません: 対策が何も返しませんでした"},
	{"detail.control.apply-error", "apply: %s", "ポリシーを適用できません: %s"},
	{"detail.control.no-state", "control reported no state", "対策が状態を報告しませんでした"},

	// agent/selfcheck.
	{"detail.agent.running", "agent running, policy v%s in force", "エージェント稼働中、ポリシー v%s を適用中"},
	{"detail.agent.no-policy", "no policy loaded: the agent has not received a policy from the server yet", "ポリシーが読み込まれていません: エージェントはまだサーバーからポリシーを受け取っていません"},
	{"detail.agent.clock-skew", "clock is %[1]s off the server (allowed %[2]s): check NTP/time sync on this terminal", "時計がサーバーと %[1]s ずれています (許容 %[2]s): この端末の NTP／時刻同期を確認してください"},
	{"detail.agent.tpm-required", "policy requires the device key in a TPM, but it is in a file (no usable TPM 2.0): enable the TPM in firmware, then enrol again", "ポリシーは端末鍵を TPM に置くよう求めていますが、鍵はファイルにあります (使える TPM 2.0 がありません): ファームウェアで TPM を有効にしてから登録し直してください"},
	{"detail.agent.setting-error", "%s", "エージェントの設定に問題があります: %s"},
	{"detail.agent.spool-dropped", "%s events could not be recorded on this terminal (spool or disk full) and are not yet reported: free space under the agent's state directory", "この端末で %s 件のイベントを記録できず (スプールまたはディスク満杯)、まだ報告されていません: エージェントの状態ディレクトリの空き容量を確保してください"},
	{"detail.agent.spool-dropped-reported", "events could not be recorded on this terminal since the last report (spool or disk full, last at %s); their count is in an events_dropped event", "前回の報告以降、この端末でイベントを記録できませんでした (スプールまたはディスク満杯、最後は %s); 件数は events_dropped イベントにあります"},
	{"detail.agent.spool-disk-full", "the disk under the agent's event spool is full (%s bytes free): new evidence is being refused; free space", "エージェントのイベントスプールのディスクが満杯です (空き %s バイト): 新しい証跡を記録できません。空き容量を確保してください"},
	{"detail.agent.spool-stale", "the oldest event not yet delivered to the server is %[1]s old (allowed %[2]s): the server's evidence is behind this terminal; check its connection to the server", "サーバーへ未送信の最も古いイベントが %[1]s 前のものです (許容 %[2]s): サーバーの証跡がこの端末より遅れています。サーバーとの接続を確認してください"},

	// agent/media on Linux.
	{"detail.media.unsupported-platform", "removable-media control is not implemented on this platform yet", "この OS ではリムーバブルメディアの制御にまだ対応していません"},
	{"detail.media.not-started", "not started: no policy applied yet", "未開始: まだポリシーが適用されていません"},
	{"detail.media.listener-down", "uevent listener not running", "デバイスの接続を監視する uevent リスナーが動いていません"},
	{"detail.media.listener-error", "%s", "uevent リスナーのエラー: %s"},
	{"detail.media.device-problem", "%s", "デバイスがポリシーどおりになっていません: %s"},
	{"detail.media.invalid-settings", "invalid settings, defaults enforced: %s", "設定が不正なため既定値を適用しています: %s"},
	{"detail.media.monitoring", "monitoring %[1]s removable devices, %[2]s would be restricted", "リムーバブルデバイス %[1]s 台を監視中、うち %[2]s 台は制限対象です"},
	{"detail.media.enforced", "%s removable devices, all as the policy demands", "リムーバブルデバイス %s 台、すべてポリシーどおりです"},
	{"detail.media.udev-ok", "udev rule in place", "udev ルールは正常です"},
	{"detail.media.udev-missing", "udev rule %s missing: removable media are writable while the agent is not running; reinstall the mamori package", "udev ルール %s がありません: エージェントが止まっている間はリムーバブルメディアに書き込めます。mamori パッケージを再インストールしてください"},
	{"detail.media.udev-unreadable", "udev rule %[1]s unreadable: %[2]s", "udev ルール %[1]s を読めません: %[2]s"},
	{"detail.media.udev-modified", "udev rule %[1]s modified (sha256 %[2]s…): reinstall the mamori package", "udev ルール %[1]s が変更されています (sha256 %[2]s…): mamori パッケージを再インストールしてください"},
	{"detail.media.udev-masked", "udev rule masked by %s: remove that file", "udev ルールが %s で無効化されています: そのファイルを削除してください"},

	// agent/media on Windows (registry policy).
	{"detail.media.registry-none", "no registry on this platform", "この OS にはレジストリがありません"},
	{"detail.media.registry-read-error", "cannot read the policy back: %s", "適用したポリシーを読み戻せません: %s"},
	{"detail.media.registry-monitor", "monitor mode: %s registry values would change", "監視モード: レジストリ値 %s 件が変更対象です"},
	{"detail.media.registry-drift", "registry policy drifted (re-applied next round): %s", "レジストリのポリシーが変更されています (次回に再適用します): %s"},
	{"detail.media.registry-apply-error", "%s", "レジストリにポリシーを適用できません: %s"},
	{"detail.media.registry-invalid-settings", "invalid media settings, defaults enforced: %s", "メディア設定が不正なため既定値を適用しています: %s"},
	{"detail.media.registry-allow-readonly", "in force; allow-listed devices are read-only too on Windows", "適用中。Windows では許可リストのデバイスも読み取り専用になります"},
	{"detail.media.registry-enforced", "removable-storage policy in force", "リムーバブルストレージのポリシーを適用中"},

	// agent/loginmfa.
	{"detail.loginmfa.windows", "no credential provider wired into this agent: Windows logins are not covered by mamori", "このエージェントには資格情報プロバイダーが組み込まれていません: Windows のログインは mamori の対象外です"},
	{"detail.loginmfa.not-named", "the policy does not name login-mfa", "ポリシーに login-mfa の指定がありません"},
	{"detail.loginmfa.monitor", "monitor mode: PAM left alone; %s login(s) by users without an enrolled second factor since the agent started", "監視モード: PAM は変更していません。エージェント起動後、第 2 要素未登録のユーザーによるログインが %s 回ありました"},
	{"detail.loginmfa.monitor-error", "%[1]s; monitor mode: PAM left alone; %[2]s login(s) by users without an enrolled second factor since the agent started", "%[1]s。監視モード: PAM は変更していません。エージェント起動後、第 2 要素未登録のユーザーによるログインが %[2]s 回ありました"},
	{"detail.loginmfa.error", "%s", "ログイン MFA の設定・適用エラー: %s"},
	{"detail.loginmfa.uncovered", "not covered: %s", "MFA が掛かっていないサービス: %s"},
	{"detail.loginmfa.uncovered-manual", "not covered: %s — this system has neither pam-auth-update nor authselect (or pam_config=manual): add `auth required pam_mamori.so` after the password module by hand (docs/mfa.md)", "MFA が掛かっていないサービス: %s — このシステムには pam-auth-update も authselect もありません (または pam_config=manual): パスワードモジュールの後に `auth required pam_mamori.so` を手で追加してください (docs/mfa.md)"},
	{"detail.loginmfa.broken", "PAM configuration errors, every login to these services fails: %s", "PAM 設定に誤りがあり、次のサービスへのログインはすべて失敗します: %s"},
	{"detail.loginmfa.module-problem", "%s", "pam_mamori.so の問題: %s"},
	{"detail.loginmfa.no-module-sha", "no expected SHA-256 for pam_mamori.so (set module_sha256, or reinstall the package that records it)", "pam_mamori.so の期待 SHA-256 がありません (module_sha256 を設定するか、それを記録するパッケージを再インストールしてください)"},
	{"detail.loginmfa.verifier-down", "the agent's MFA verifier or its local socket is not running: every login through pam_mamori.so is refused", "エージェントの MFA 検証機能またはそのローカルソケットが動いていません: pam_mamori.so を通るログインはすべて拒否されます"},
	{"detail.loginmfa.sshd-bypass", "sshd lets these logins in without the second factor (public-key, GSSAPI or host-based authentication never runs the PAM stack): %s — the agent's drop-in could not close it; fix the sshd configuration (AuthenticationMethods publickey,keyboard-interactive keyboard-interactive, also in Match blocks)", "sshd は次のログインを第 2 要素なしで通します (公開鍵・GSSAPI・ホストベース認証は PAM スタックを通りません): %s — エージェントのドロップインでは塞げませんでした。sshd の設定を修正してください (Match ブロック内も含めて AuthenticationMethods publickey,keyboard-interactive keyboard-interactive)"},
	{"detail.loginmfa.sshd-bypass-manual", "sshd lets these logins in without the second factor (public-key, GSSAPI or host-based authentication never runs the PAM stack): %s — pam_config=manual: set AuthenticationMethods publickey,keyboard-interactive keyboard-interactive and KbdInteractiveAuthentication yes by hand (docs/mfa.md)", "sshd は次のログインを第 2 要素なしで通します (公開鍵・GSSAPI・ホストベース認証は PAM スタックを通りません): %s — pam_config=manual のため、AuthenticationMethods publickey,keyboard-interactive keyboard-interactive と KbdInteractiveAuthentication yes を手で設定してください (docs/mfa.md)"},
	{"detail.loginmfa.sshd-unknown", "cannot read sshd's effective configuration, so a public-key bypass cannot be ruled out: %s", "sshd の実効設定を読めないため、公開鍵による迂回がないことを確認できません: %s"},
	{"detail.loginmfa.no-users", "no users enrolled on this terminal (no MFA bundle yet)", "この端末に登録済みのユーザーがいません (MFA バンドルがまだありません)"},
	{"detail.loginmfa.grace", "%[1]s user(s) logged in without a second factor under the policy's grace period (not yet enrolled): %[2]s", "ポリシーの猶予期間により、第 2 要素なしでログインしたユーザーが %[1]s 人います (未登録): %[2]s"},
	{"detail.loginmfa.cp-enforced", "mamori's credential provider and filter are registered and verified: logon and unlock need a second factor", "mamori の資格情報プロバイダーとフィルターを登録・検証済み: サインインとロック解除に第 2 要素が必要です"},
	{"detail.loginmfa.cp-monitor", "monitor mode: mamori's credential provider is not registered; Windows logins are unchanged", "監視モード: mamori の資格情報プロバイダーは登録していません。Windows のサインインは変更していません"},
	{"detail.loginmfa.cp-monitor-logons", "monitor mode: mamori's credential provider is not registered; %s logon(s) through the logon screen by users without an enrolled second factor since the agent started (Security log, event 4624)", "監視モード: mamori の資格情報プロバイダーは登録していません。エージェント起動後、第 2 要素未登録のユーザーによるサインイン画面からのサインインが %s 回ありました (セキュリティログ イベント 4624)"},
	{"detail.loginmfa.cp-problem", "%s", "資格情報プロバイダーの問題: %s"},
	{"detail.loginmfa.enforced", "every named service needs pam_mamori.so; module verified", "指定したすべてのサービスで pam_mamori.so が必要です。モジュールを検証済み"},

	// agent/isolation.
	{"detail.isolation.not-named", "the policy does not name the isolation control", "ポリシーにネットワーク分離の指定がありません"},
	{"detail.isolation.settings", "settings: %s", "設定の誤り: %s"},
	{"detail.isolation.monitoring-clean", "monitoring: no findings (%[1]s of %[2]s canaries unreachable)", "監視中: 問題なし (カナリア %[2]s 件中 %[1]s 件に到達不能)"},
	{"detail.isolation.monitoring-findings", "monitoring, %[1]s finding(s): %[2]s", "監視中、検出 %[1]s 件: %[2]s"},
	{"detail.isolation.enforced", "ruleset in force, unchanged (%[1]s rules, %[2]s packets dropped); %[3]s of %[4]s canaries unreachable", "ルールセットを適用中、変更なし (ルール %[1]s 件、破棄したパケット %[2]s 個)。カナリア %[4]s 件中 %[3]s 件に到達不能"},
	{"detail.isolation.canary-reachable", "this terminal can reach %[1]s, a canary in another tier (%[2]s)", "この端末は別のネットワーク層のカナリア %[1]s に到達できます (%[2]s)"},
	{"detail.isolation.canary-refused", "canary %[1]s refused the connection (%[2]s): packets to the other tier get out and something answers", "カナリア %[1]s が接続を拒否しました (%[2]s): 別の層へのパケットが外に出て、何かが応答しています"},
	{"detail.isolation.canary-error", "canary %[1]s could not be checked: %[2]s", "カナリア %[1]s を確認できませんでした: %[2]s"},
	{"detail.isolation.no-canaries", "no canaries in the policy: nothing proves this terminal cannot reach other tiers (set canaries)", "ポリシーにカナリアがありません: この端末が別の層に届かないことを確かめる手段がありません (canaries を設定してください)"},
	{"detail.isolation.dns", "forbidden name %[1]s resolves (to %[2]s, answered by %[3]s): names outside the tier can be looked up", "禁止した名前 %[1]s が解決できます (%[2]s、応答元 %[3]s): 層の外の名前を引けます"},
	{"detail.isolation.ruleset-error", "cannot read table inet %[1]s: %[2]s", "テーブル inet %[1]s を読めません: %[2]s"},
	{"detail.isolation.ruleset-differs", "table inet %[1]s differs from the policy (%[2]s): mamori re-applies it next round", "テーブル inet %[1]s がポリシーと異なります (%[2]s): 次回 mamori が再適用します"},
	{"detail.isolation.ruleset-repaired", "table inet %[1]s was altered outside mamori (%[2]s) and has been re-applied", "テーブル inet %[1]s が mamori 以外から変更されたため (%[2]s)、再適用しました"},
	{"detail.isolation.routes-error", "cannot read the routing table: %s", "ルーティングテーブルを読めません: %s"},
	{"detail.isolation.route-no-gateway", "default route %[1]s has no gateway: everything else leaves through %[2]s", "デフォルトルート %[1]s にゲートウェイがありません: それ以外の通信はすべて %[2]s から出ます"},
	{"detail.isolation.route-gateway-outside", "default route %s: the gateway is outside the allowed networks", "デフォルトルート %s: ゲートウェイが許可されたネットワークの外にあります"},
	{"detail.isolation.route-not-allowed", "route %s leads to a network that is not allowed", "ルート %s は許可されていないネットワークへ向かいます"},
	{"detail.isolation.routes-more", "more routes outside the allowed networks (evidence lists them)", "許可されたネットワーク外へのルートがほかにもあります (証跡に一覧があります)"},
	{"detail.isolation.interfaces-error", "cannot list network interfaces: %s", "ネットワークインターフェースを一覧できません: %s"},
	{"detail.isolation.interface-not-allowed", "interface %s is not in allowed_interfaces (a USB tethering or Wi-Fi adapter?)", "インターフェース %s は allowed_interfaces にありません (USB テザリングか Wi-Fi アダプター?)"},
	{"detail.isolation.interface-new", "interface %s appeared after the first observation (no_new_interfaces)", "インターフェース %s が最初の観測の後に現れました (no_new_interfaces)"},
	{"detail.isolation.forwarding", "IP forwarding is on (%s): traffic of other machines (a VM, a container) can be routed through this terminal to other tiers (set allow_forwarding if intended)", "IP フォワーディングが有効です (%s): ほかの機器 (VM、コンテナー) の通信がこの端末を経由して別の層へ転送され得ます (意図したものなら allow_forwarding を設定してください)"},
	{"detail.isolation.forwarding-error", "cannot read IP forwarding: %s", "IP フォワーディングの設定を読めません: %s"},
	{"detail.isolation.network-not-separating", "the network itself does not stop canary %[1]s (%[2]s past mamori's table): only this terminal's table separates the tiers (require_network_separation)", "ネットワーク自体はカナリア %[1]s を遮断していません (mamori のテーブルを通さずに %[2]s): 層を分けているのはこの端末のテーブルだけです (require_network_separation)"},
}
